package roles

import (
	"context"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// adminService serves the admin endpoints on node.admin_addr.
type adminService struct {
	addr    string
	handler http.Handler
	log     *zap.Logger
	ln      net.Listener
	srv     *http.Server
	errs    chan error
}

func (s *adminService) Name() string { return "admin" }

func (s *adminService) Start(ctx context.Context) error {
	var err error
	if s.ln, err = listen(ctx, "node.admin_addr", s.addr); err != nil {
		return err
	}
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(s.log)}
	s.errs = make(chan error, 1)
	go func() { s.errs <- wrapServe("admin", s.srv.Serve(s.ln)) }()
	return nil
}

func (s *adminService) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.errs:
		return err
	}
}

func (s *adminService) Stop(ctx context.Context) error { return s.srv.Shutdown(ctx) }
