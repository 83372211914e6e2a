package http1

import (
	"net"
	"sync"
)

// Handoff is a net.Listener whose connections come from Give: it lets an
// http.Server serve connections that another accept loop took and started
// reading.
type Handoff struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewHandoff returns a Handoff reporting addr as its address.
func NewHandoff(addr net.Addr) *Handoff {
	return &Handoff{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Give waits until Accept takes c and reports true, or until h is closed
// and reports false (c is then the caller's to close).
func (h *Handoff) Give(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.done:
		return false
	}
}

// Accept returns the next connection given, or net.ErrClosed once h is
// closed.
func (h *Handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

// Close ends Accept and Give; it is idempotent.
func (h *Handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

// Addr is the address given to NewHandoff.
func (h *Handoff) Addr() net.Addr { return h.addr }

// PrefixConn is a connection whose first bytes were already read: Read
// returns Prefix before reading the connection.
type PrefixConn struct {
	net.Conn
	Prefix []byte
}

func (c *PrefixConn) Read(p []byte) (int, error) {
	if len(c.Prefix) > 0 {
		n := copy(p, c.Prefix)
		c.Prefix = c.Prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

var _ net.Listener = (*Handoff)(nil)
