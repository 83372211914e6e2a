package tcp

import (
	"github.com/imcloud/imcloud/transport"
)

var _ transport.TryWriter = (*Conn)(nil)

// TryWrite implements transport.TryWriter with one non-blocking send(2).
// Like Write, it is called by the one goroutine that owns the write side.
func (c *Conn) TryWrite(o transport.Out) ([]byte, error) {
	if !c.direct {
		// Not a socket with a descriptor (a pipe in tests): write later.
		return o.Data, nil
	}
	n, err := c.fd.Write(o.Data)
	if err != nil {
		return nil, err
	}
	if n < len(o.Data) {
		return o.Data[n:], nil
	}
	return nil, nil
}
