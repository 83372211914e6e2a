package http1

import (
	"bufio"
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

// rawConn is a client connection that writes raw bytes and reads answers.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(wait))
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// answer reads one response, body included.
func (c *rawConn) answer(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	for err == nil && resp.StatusCode < 200 { // 100 Continue
		resp, err = http.ReadResponse(c.br, &http.Request{Method: method})
	}
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

// closed reports whether the server closed the connection (EOF or reset
// with nothing more to read).
func (c *rawConn) closed() bool {
	c.t.Helper()
	_, err := c.br.ReadByte()
	return err != nil
}
