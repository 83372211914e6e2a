package roles

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"

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
