package tcp

import (
	"errors"
	"syscall"

	"github.com/imcloud/imcloud/transport"
)

var _ transport.TryWriter = (*Conn)(nil)

// TryWrite implements transport.TryWriter with one non-blocking write(2).
// Like Write, it is called by the one goroutine that owns the write side.
func (c *Conn) TryWrite(o transport.Out) ([]byte, error) {
	if c.raw == nil {
		// Not a socket with a descriptor (a pipe in tests): write later.
		return o.Data, nil
	}
	c.tw.data = o.Data
	err := c.raw.Write(c.tw.fn)
	n, werr := c.tw.n, c.tw.err
	c.tw = tryWrite{fn: c.tw.fn}
	if err != nil {
		return nil, err
	}
	if werr != nil {
		if errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR) {
			return o.Data, nil
		}
		return nil, werr
	}
	if n < len(o.Data) {
		return o.Data[n:], nil
	}
	return nil, nil
}

// tryWrite holds a TryWrite's argument and results, so the function handed
// to RawConn.Write is bound once and a write allocates nothing.
type tryWrite struct {
	fn   func(fd uintptr) bool
	data []byte
	n    int
	err  error
}

func (c *Conn) writeOnce(fd uintptr) bool {
	c.tw.n, c.tw.err = syscall.Write(int(fd), c.tw.data)
	return true // never wait: what does not fit goes to the writer
}
