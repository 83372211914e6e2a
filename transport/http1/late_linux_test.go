package http1

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// gatedListener hands out connections whose reads a test can hold.
type gatedListener struct {
	net.Listener
	conns chan *gatedConn
}

func (l gatedListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g := &gatedConn{TCPConn: nc.(*net.TCPConn)}
	l.conns <- g
	return g, nil
}

// gatedConn holds its next Read, once held, until the channel given to hold
// is closed: the test decides when the server looks at its socket.
type gatedConn struct {
	*net.TCPConn // SyscallConn included
	gate         atomic.Pointer[chan struct{}]
}

func (g *gatedConn) hold(release chan struct{}) { g.gate.Store(&release) }

func (g *gatedConn) Read(b []byte) (int, error) {
	if ch := g.gate.Swap(nil); ch != nil {
		<-*ch
	}
	return g.TCPConn.Read(b)
}

// TestShutdownServesALateRequest: a request that reached an idle
// connection's socket just as Shutdown woke it is served, its answer
// closing the connection, not dropped unread (which resets the connection
// and leaves the client unable to tell whether it was served).
func TestShutdownServesALateRequest(t *testing.T) {
	var served atomic.Int32
	release := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := gatedListener{Listener: ln, conns: make(chan *gatedConn, 1)}
	var gc *gatedConn
	s := &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			served.Add(1)
			if r.URL.Path == "/first" {
				gc.hold(release) // the idle read after this answer waits
			}
			_, _ = w.Write([]byte("done " + r.URL.Path))
		}),
		Fallback: &http.Server{},
		Log:      zap.NewNop(),
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(gl) }()
	c := dialRaw(t, ln.Addr().String())
	gc = <-gl.conns
	c.Send("POST /first HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
	if _, body := c.Answer("POST"); body != "done /first" {
		t.Fatalf("first answer %q", body)
	}
	// The second request reaches the server's socket while its read is held.
	c.Send("POST /late HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
	waitReadable(t, gc.TCPConn)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	for deadline := time.Now().Add(wait); !s.closing.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Shutdown did not begin")
		}
	}
	close(release)
	resp, body := c.Answer("POST")
	if body != "done /late" || !resp.Close {
		t.Fatalf("late request: %q close=%v, want it served and the connection closing", body, resp.Close)
	}
	if !c.Closed() {
		t.Fatal("connection left open")
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; err != http.ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
	if n := served.Load(); n != 2 {
		t.Fatalf("served %d requests, want 2", n)
	}
}

// waitReadable waits until the kernel holds bytes to read on tc.
func waitReadable(t testing.TB, tc *net.TCPConn) {
	t.Helper()
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(time.Millisecond) {
		var n int
		_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the server's socket")
		}
	}
}
