package roles

import (
	"context"
	"errors"
	"net"
	"net/http"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// adminService serves the admin endpoints on node.admin_addr.
type adminService struct {
	addr string
	// implicit: addr is the job's default, not configured. If it is taken
	// (a second job on the machine), a free port on the same host serves
	// instead of the process failing for want of its metrics endpoint.
	implicit bool
	handler  http.Handler
	log      *zap.Logger
	ln       net.Listener
	srv      *http.Server
	errs     chan error
}

func (s *adminService) Name() string { return "admin" }

func (s *adminService) Start(ctx context.Context) error {
	var err error
	s.ln, err = listen(ctx, "node.admin_addr", s.addr)
	if err != nil && s.implicit && errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(s.addr)
		if s.ln, err = listen(ctx, "node.admin_addr", net.JoinHostPort(host, "0")); err == nil {
			s.log.Warn("default admin address in use, serving admin on a free port instead; set node.admin_addr to choose one",
				zap.String("default", s.addr), zap.String("addr", s.ln.Addr().String()))
		}
	}
	if err != nil {
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

func (s *adminService) Stop(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if drainCut(s.log, "admin connections", err) {
		return s.srv.Close() // net/http's Shutdown leaves them open
	}
	return err
}
