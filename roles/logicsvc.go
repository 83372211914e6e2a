package roles

import (
	"context"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/roles/logic"
	"github.com/imcloud/imcloud/transport/http1"
)

// logicService serves the REST API (and, unless admin_addr says otherwise,
// the admin endpoints) on logic.http_addr.
type logicService struct {
	cfg   *Config
	log   *zap.Logger
	logic *logic.Logic
	admin http.Handler

	ln        net.Listener
	srv       *http1.Server
	runCancel context.CancelFunc
	errs      chan error
}

func (s *logicService) Name() string { return "logic" }

func (s *logicService) Start(ctx context.Context) error {
	var err error
	if s.ln, err = listen(ctx, "logic.http_addr", s.cfg.Logic.HTTPAddr); err != nil {
		return err
	}
	api := s.logic.Handler()
	fallback := api
	var slow func(string) bool
	if s.admin != nil {
		fallback = withAdmin{admin: s.admin, api: api}
		slow = isAdminPath
	}
	// Small plain requests (nearly every push) are read by http1; the rest,
	// the admin endpoints among them, by net/http.
	s.srv = &http1.Server{
		Handler:      api,
		Slow:         slow,
		ReadTimeout:  30 * time.Second,
		IdleTimeout:  2 * time.Minute,
		WriteTimeout: 30 * time.Second,
		Log:          s.log,
		ErrorBody:    logic.ErrorBody,
		Fallback:     plainHTTPServer(fallback, s.log),
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
	err := s.srv.Shutdown(ctx) // requests being served finish; at the deadline the rest are cut
	s.runCancel()
	if drainCut(s.log, "REST connections", err) {
		return nil
	}
	return err
}

// withAdmin sends the admin paths to admin and everything else to api. It
// stands in for a ServeMux, whose pattern matching would be paid by every
// REST request.
type withAdmin struct{ admin, api http.Handler }

func (h withAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isAdminPath(r.URL.Path) {
		h.admin.ServeHTTP(w, r)
		return
	}
	h.api.ServeHTTP(w, r)
}

// isAdminPath reports whether p is served by the admin handler.
func isAdminPath(p string) bool {
	return p == "/metrics" || p == "/healthz" || p == "/readyz" || strings.HasPrefix(p, "/debug/pprof/")
}
