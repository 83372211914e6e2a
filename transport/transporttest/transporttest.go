// Package transporttest holds what the transports' tests share: loopback
// connections and checks every transport.Conn implementation must pass.
// Each check uses its own connections and may run in parallel with others.
package transporttest

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/imcloud/imcloud/transport"
)

// Writer is a connection with direct writes, as the transports build one
// around a net.Conn.
type Writer interface {
	transport.TryWriter
	Close() error
}

// Loopback returns both ends of a new loopback TCP connection, the accepted
// one first; both are closed when the test ends.
func Loopback(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); a.Close() })
	return a, d
}

// TryWriteAfterClose checks that once a connection made by wrap is closed,
// TryWrite(o) fails and writes nothing, even where newer connections got
// its descriptor number: a direct write must never reach another client.
func TryWriteAfterClose(t *testing.T, wrap func(net.Conn) Writer, o transport.Out) {
	t.Helper()
	srv, _ := Loopback(t)
	c := wrap(srv)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	a, d := Loopback(t) // likely to reuse the descriptor just closed
	if rest, err := c.TryWrite(o); err == nil {
		t.Fatalf("TryWrite after Close: no error (rest %d bytes)", len(rest))
	}
	for _, end := range []net.Conn{a, d} {
		_ = end.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, _ := end.Read(make([]byte, 64)); n > 0 {
			t.Fatalf("a write after Close reached another connection: %d bytes", n)
		}
	}
}

// DiscardOnClose checks that a connection made by wrap, told to discard,
// drops at Close what the kernel still held to send: its peer, which read
// nothing until then, gets a reset before it has read all that was written.
func DiscardOnClose(t *testing.T, wrap func(net.Conn) Writer) {
	t.Helper()
	srv, peer := Loopback(t)
	c := wrap(srv)
	big := make([]byte, 64<<20) // far more than the socket buffers hold
	rest, err := c.TryWrite(transport.Out{Data: big, Raw: true})
	if err != nil {
		t.Fatal(err)
	}
	written := len(big) - len(rest)
	d, ok := c.(transport.Discarder)
	if !ok {
		t.Fatalf("%T is not a transport.Discarder", c)
	}
	d.DiscardOnClose()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, peer)
	if err == nil || n >= int64(written) {
		t.Fatalf("peer read %d of %d bytes written, then %v: want a reset before the end", n, written, err)
	}
}
