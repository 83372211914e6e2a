package roles

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// TestAdminAddressInUse: a configured admin address that is taken stops
// start-up with an error naming the key; the job's implicit default moves
// to a free port instead, so a second job on one machine still runs.
func TestAdminAddressInUse(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().String()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

	for _, tc := range []struct {
		name     string
		implicit bool
	}{{"configured", false}, {"implicit default", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := &adminService{addr: taken, implicit: tc.implicit, handler: ok, log: zap.NewNop()}
			err := s.Start(context.Background())
			if !tc.implicit {
				if err == nil {
					_ = s.Stop(context.Background())
					t.Fatal("started on a taken address")
				}
				if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "node.admin_addr") {
					t.Fatalf("error %q: want EADDRINUSE naming node.admin_addr", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("implicit default not moved: %v", err)
			}
			defer func() { _ = s.Stop(context.Background()) }()
			got := s.ln.Addr().String()
			if got == taken || !strings.HasPrefix(got, "127.0.0.1:") {
				t.Fatalf("serving on %s, want another port on 127.0.0.1 (taken: %s)", got, taken)
			}
			resp, err := http.Get("http://" + got + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "ok" {
				t.Fatalf("admin answered %q", body)
			}
		})
	}
}

// TestPlainHTTPServerBounded: every wait for a client of the admin and
// fallback servers ends (a request to a path other than /sub held its
// connection for ever), and none cuts a 30 s CPU profile short.
func TestPlainHTTPServerBounded(t *testing.T) {
	s := plainHTTPServer(http.NotFoundHandler(), zap.NewNop())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.IdleTimeout <= 0 {
		t.Errorf("unbounded wait: header %v, read %v, idle %v", s.ReadHeaderTimeout, s.ReadTimeout, s.IdleTimeout)
	}
	if s.WriteTimeout != 0 && s.WriteTimeout <= 30*time.Second {
		t.Errorf("WriteTimeout %v cuts /debug/pprof/profile?seconds=30 short", s.WriteTimeout)
	}
}

// TestAdminProfilerOptional: without the profiler, /debug/pprof/ is not
// served, while /metrics and the health endpoints are.
func TestAdminProfilerOptional(t *testing.T) {
	ready := func() error { return nil }
	for _, profiler := range []bool{true, false} {
		h := adminHandler(prometheus.NewRegistry(), ready, profiler)
		for path, want := range map[string]int{
			"/debug/pprof/cmdline": map[bool]int{true: http.StatusOK, false: http.StatusNotFound}[profiler],
			"/healthz":             http.StatusOK,
			"/readyz":              http.StatusOK,
			"/metrics":             http.StatusOK,
		} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != want {
				t.Errorf("profiler %v: GET %s: %d, want %d", profiler, path, rec.Code, want)
			}
		}
	}
}
