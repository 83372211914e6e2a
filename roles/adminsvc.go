package roles

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
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
	// bound is ln's address once listening: Addrs may read it while the
	// other services still start (a /readyz to ask what they wait for).
	bound atomic.Pointer[string]
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
	addr := s.ln.Addr().String()
	s.bound.Store(&addr)
	s.srv = plainHTTPServer(s.handler, s.log)
	s.errs = make(chan error, 1)
	go func() { s.errs <- wrapServe("admin", s.srv.Serve(s.ln)) }()
	return nil
}

// plainHTTPServer is a net/http server for the admin endpoints and the
// other plain requests a role answers, with every wait for the client
// bounded: without an idle timeout one request would hold a connection
// open for ever. No WriteTimeout: it would cut /debug/pprof/profile short.
func plainHTTPServer(h http.Handler, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(log),
	}
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
