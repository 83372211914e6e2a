package tcp

import (
	"errors"
	"syscall"

	"github.com/imcloud/imcloud/transport"
)

var _ transport.TryWriter = (*Conn)(nil)

// TryWrite implements transport.TryWriter with one non-blocking write(2).
func (c *Conn) TryWrite(o transport.Out) ([]byte, error) {
	if c.raw == nil {
		// Not a socket with a descriptor (a pipe in tests): write later.
		return o.Data, nil
	}
	var n int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), o.Data)
		return true // never wait: what does not fit goes to the writer
	})
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
