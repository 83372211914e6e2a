//go:build !linux

package bench

import (
	"net"
	"time"
)

// Without epoll, every connection keeps its goroutine and reads its
// net.Conn into a 4 KiB buffer of its own.
type loop struct{}

func (p *pool) startLoops() error { return nil }
func (p *pool) stopLoops()        {}

// handoff lists c and reads until the connection ends (synchronous).
func (c *conn) handoff() (async bool, err error) {
	p := c.p
	p.mu.Lock()
	if p.closing.Load() {
		p.mu.Unlock()
		c.closeFD()
		return false, net.ErrClosed
	}
	p.conns[c.idx-p.lo].Store(c)
	p.mu.Unlock()
	_ = c.nc.SetReadDeadline(time.Time{})
	err = c.readNet(false)
	p.ended(c, err)
	return false, nil
}

func (p *pool) ended(c *conn, err error) {
	p.conns[c.idx-p.lo].Store(nil)
	c.closeFD()
	if !p.closing.Load() {
		p.nClosed.Add(1)
		p.noteError(classify("closed during the run", err))
	}
}

func (c *conn) closeFD() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.nc != nil {
		_ = c.nc.Close()
	}
}

func (c *conn) send(b []byte, timeout time.Duration) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.nc.Write(b)
	return err
}
