package roles

import (
	"context"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/roles/logic"
)

// logicService serves the REST API (and, unless admin_addr says otherwise,
// the admin endpoints) on logic.http_addr.
type logicService struct {
	cfg   *Config
	log   *zap.Logger
	logic *logic.Logic
	admin http.Handler

	ln        net.Listener
	srv       *http.Server
	runCancel context.CancelFunc
	errs      chan error
}

func (s *logicService) Name() string { return "logic" }

func (s *logicService) Start(ctx context.Context) error {
	var err error
	if s.ln, err = listen(ctx, "logic.http_addr", s.cfg.Logic.HTTPAddr); err != nil {
		return err
	}
	h := s.logic.Handler()
	if s.admin != nil {
		h = withAdmin{admin: s.admin, api: h}
	}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(s.log),
	}
	s.errs = make(chan error, 2)
	rctx, cancel := context.WithCancel(context.Background())
	s.runCancel = cancel
	go func() { s.errs <- s.logic.Run(rctx) }()
	go func() { s.errs <- wrapServe("http", s.srv.Serve(s.ln)) }()
	s.log.Info("logic listening", zap.String("http", s.ln.Addr().String()))
	return nil
}

func (s *logicService) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.errs:
		return err
	}
}

func (s *logicService) Stop(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.runCancel()
	return err
}

// withAdmin sends the admin paths to admin and everything else to api. It
// stands in for a ServeMux, whose pattern matching would be paid by every
// REST request.
type withAdmin struct{ admin, api http.Handler }

func (h withAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/metrics" || p == "/healthz" || p == "/readyz" || strings.HasPrefix(p, "/debug/pprof/"):
		h.admin.ServeHTTP(w, r)
	default:
		h.api.ServeHTTP(w, r)
	}
}
