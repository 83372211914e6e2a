package http1

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imcloud/imcloud/transport/http1/http1test"
)

// wait bounds every functional wait of these tests.
const wait = 10 * time.Second

// echo answers what it was asked: method, path, query, Content-Type and
// body, with X-Served-By naming the server.
func echo(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Served-By", name)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s ?%s ct=%q host=%q body=%q", r.Method, r.URL.Path, r.URL.RawQuery,
			r.Header.Get("Content-Type"), r.Host, body)
	})
}

// testServer is a Server on a loopback port whose fallback is an echo.
type testServer struct {
	*Server
	addr string
	logs *observer.ObservedLogs
	done chan error
}

// startServer serves h (echo("fast") if nil) with paths under /slow/ handed
// over; adjust changes the Server before it starts.
func startServer(t testing.TB, h http.Handler, adjust func(*Server)) *testServer {
	t.Helper()
	if h == nil {
		h = echo("fast")
	}
	core, logs := observer.New(zapcore.DebugLevel)
	s := &Server{
		Handler:  h,
		Fallback: &http.Server{Handler: echo("fallback"), ReadHeaderTimeout: wait},
		Slow:     func(p string) bool { return strings.HasPrefix(p, "/slow/") },
		Log:      zap.New(core),
	}
	if adjust != nil {
		adjust(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, addr: ln.Addr().String(), logs: logs, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-ts.done
	})
	return ts
}

func dialRaw(t testing.TB, addr string) *http1test.Conn { return http1test.Dial(t, addr, wait) }
