package tcp

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport"
)

// Conn is a goim connection over plain TCP.
type Conn struct {
	c       net.Conn
	maxBody int
	hdr     [protocol.HeaderLen]byte
	bufs    net.Buffers
	once    sync.Once
	remote  string
	fd      transport.RawFD // TryWrite's direct writes; released by Close
	direct  bool            // fd has a descriptor; without one TryWrite defers all
	mode    transport.CloseMode
}

var (
	_ transport.Conn      = (*Conn)(nil)
	_ transport.Discarder = (*Conn)(nil)
)

// New wraps c; frames with bodies over maxBody are protocol errors.
func New(c net.Conn, maxBody int) *Conn {
	conn := &Conn{c: c, maxBody: maxBody, remote: c.RemoteAddr().String()}
	if tc, ok := c.(*net.TCPConn); ok {
		// Pushes are coalesced by the writer already; Nagle would only delay them.
		_ = tc.SetNoDelay(true)
	}
	conn.direct = conn.fd.Init(c)
	return conn
}

// ReadFrame implements transport.Conn.
func (c *Conn) ReadFrame(deadline time.Time) (protocol.Frame, error) {
	if err := c.c.SetReadDeadline(deadline); err != nil {
		return protocol.Frame{}, err
	}
	// The session's reader spends its life waiting for a header: it waits
	// here, with little on the stack (see cloud's runSession).
	if _, err := io.ReadFull(c.c, c.hdr[:]); err != nil {
		return protocol.Frame{}, err
	}
	f, err := protocol.ReadBody(c.c, &c.hdr, c.maxBody)
	if errors.Is(err, protocol.ErrHeaderLen) || errors.Is(err, protocol.ErrPackLen) || errors.Is(err, protocol.ErrTooLarge) {
		c.mode.Linger() // the body is left unread: see CloseMode.Linger
	}
	return f, err
}

// Write implements transport.Conn: every item, in order, in one writev.
func (c *Conn) Write(items []transport.Out, deadline time.Time) error {
	if err := c.c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	// The deadline would outlive this write and fail a later TryWrite.
	defer func() { _ = c.c.SetWriteDeadline(time.Time{}) }()
	if len(items) == 1 {
		_, err := c.c.Write(items[0].Data)
		return err
	}
	bufs := c.bufs[:0]
	for _, it := range items {
		bufs = append(bufs, it.Data)
	}
	// WriteTo consumes the slice it is given; keep our backing array.
	c.bufs = bufs[:0]
	_, err := bufs.WriteTo(c.c)
	clear(c.bufs[:cap(c.bufs)])
	return err
}

// Buffered is how many bytes of the next frames the connection holds: none,
// a TCP frame is read from the socket exactly.
func (c *Conn) Buffered() int { return 0 }

// WithFD runs fn with the socket's descriptor unless the connection is
// closed (transport.RawFD.Do).
func (c *Conn) WithFD(fn func(fd int) error) error { return c.fd.Do(fn) }

// Close implements transport.Conn.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		c.fd.Release()
		err = c.mode.Close(c.c)
	})
	return err
}

// DiscardOnClose implements transport.Discarder.
func (c *Conn) DiscardOnClose() { c.mode.Discard(c.c) }

// RemoteAddr implements transport.Conn.
func (c *Conn) RemoteAddr() string { return c.remote }

// Network implements transport.Conn.
func (c *Conn) Network() string { return "tcp" }
