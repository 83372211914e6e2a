//go:build !linux

package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// launch starts client i's handshake on a goroutine of its own: dial,
// upgrade, auth, then read until the connection ends (there is no epoll
// loop to hand it to).
func (p *pool) launch(i int) {
	p.wg.Add(1)
	go p.runConn(i)
}

func (p *pool) runConn(i int) {
	defer p.wg.Done()
	c := p.newConn(i)
	err := c.open()
	if err == nil {
		err = c.readNet(true)
	}
	if err != nil {
		if c.nc != nil {
			_ = c.nc.Close()
		}
		p.handshakeFailed(c, err)
		return
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	p.established(c)
	if _, herr := c.handoff(); herr != nil && !p.closing.Load() {
		p.nClosed.Add(1)
		p.noteError(classify("handoff", herr))
	}
}

// open dials, upgrades (WebSocket) and sends the Auth frame. The caller then
// runs readNet(true), which waits for the reply.
func (c *conn) open() error {
	p := c.p
	t := &p.tgts[c.idx%len(p.tgts)]
	d := net.Dialer{Timeout: p.cfg.Timeout, KeepAlive: -1}
	if len(p.locals) > 0 {
		d.LocalAddr = p.locals[c.idx%len(p.locals)]
	}
	nc, err := d.DialContext(p.ctx, "tcp", t.hostPort)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	c.nc = nc
	c.buf = make([]byte, readBufSize)
	_ = nc.SetDeadline(time.Now().Add(p.cfg.Timeout))
	if c.ws {
		if err := c.upgrade(t); err != nil {
			return err
		}
	}
	if _, err := nc.Write(authFrame(authBody(&p.cfg, c.idx), c.ws)); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	_ = nc.SetWriteDeadline(time.Time{})
	return nil
}

// upgrade performs the client side of the WebSocket handshake on c.nc. Bytes
// the server sent after the response stay in buf as raw WebSocket data.
func (c *conn) upgrade(t *wsTarget) error {
	req, key := upgradeRequest(t)
	if _, err := io.WriteString(c.nc, req); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	for {
		if c.w == len(c.buf) {
			return errors.New("upgrade: response headers over 4 KiB")
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		if end := bytes.Index(c.buf[:c.w], []byte("\r\n\r\n")); end >= 0 {
			return c.checkUpgrade(c.buf[:end+2], key, end+4)
		}
		if err != nil {
			return fmt.Errorf("upgrade: %w", err)
		}
	}
}
