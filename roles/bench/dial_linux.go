//go:build linux

package bench

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// launch starts client i's handshake without a goroutine: the socket and
// its connect here, the rest on a read loop as the socket's events come
// (see step). Go's dialer, a goroutine per handshake and the hand-over of
// the socket to a loop were most of the bench's CPU per connect, which made
// the bench, not the server, the limit of a connect storm.
func (p *pool) launch(i int) {
	c := p.newConn(i)
	if err := p.dial(c); err != nil {
		if c.timer != nil {
			c.timer.Stop()
		}
		c.closeFD()
		p.handshakeFailed(c, err)
	}
}

// dial opens c's non-blocking socket, starts its connect and registers it
// with a read loop, which goes on once the socket is writable.
func (p *pool) dial(c *conn) error {
	sa, family := sockaddr(p.tgts[c.idx%len(p.tgts)].addr)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	c.fd = fd
	if len(p.locals) > 0 {
		// The port is picked at connect time from the whole 4-tuple, so
		// every source IP gives its own ~28k ports per destination.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		lsa, _ := sockaddr(p.locals[c.idx%len(p.locals)])
		if err := unix.Bind(fd, lsa); err != nil {
			return fmt.Errorf("bind: %w", err)
		}
	}
	// As Go's dialer: small writes (Auth, heartbeats) go out at once.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	// Best effort: without it the receive time is taken after the read.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		return fmt.Errorf("dial: %w", err)
	}
	c.auth = authFrame(authBody(&p.cfg, c.idx), c.ws)
	c.hs = hsConnecting
	// Set before register: from then on the loop may finish (and stop it).
	c.timer = time.AfterFunc(p.cfg.Timeout, c.expire)
	return p.register(c)
}

// sockaddr converts a resolved address for the socket calls.
func sockaddr(a *net.TCPAddr) (unix.Sockaddr, int) {
	if ip4 := a.IP.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: a.Port}
		copy(sa.Addr[:], ip4)
		return sa, unix.AF_INET
	}
	sa := &unix.SockaddrInet6{Port: a.Port}
	copy(sa.Addr[:], a.IP.To16())
	return sa, unix.AF_INET6
}

// expire ends a handshake that outlived --timeout: the socket is shut down
// and its read loop, woken by that, fails the handshake as a timeout.
func (c *conn) expire() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.fd >= 0 && !c.est.Load() {
		c.expired.Store(true)
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
}

// connected is called by the read loop once the connecting socket turned
// writable: on success it sends the first message of the handshake.
func (c *conn) connected() error {
	if e, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
		if err == nil {
			err = unix.Errno(e)
		}
		return fmt.Errorf("dial: %w", err)
	}
	if !c.ws {
		c.hs = hsAuthing
		return c.sendAuth()
	}
	req, key := upgradeRequest(&c.p.tgts[c.idx%len(c.p.tgts)])
	c.hs, c.wsKey = hsUpgrading, key
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.send([]byte(req), c.p.cfg.Timeout); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	return nil
}

func (c *conn) sendAuth() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	err := c.send(c.auth, c.p.cfg.Timeout)
	c.auth = nil
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}

var headEnd = []byte("\r\n\r\n")

// step handles what a read of a connection in its handshake brought: the
// upgrade response's head (then Auth goes out), then frames until the
// AuthReply, which completes the handshake.
func (c *conn) step(now int64) error {
	if c.hs == hsUpgrading {
		end := bytes.Index(c.buf[c.r:c.w], headEnd)
		if end < 0 {
			if c.w-c.r > readBufSize {
				return errors.New("upgrade: response headers over 4 KiB")
			}
			return nil // the rest of the head comes with a later read
		}
		if err := c.checkUpgrade(c.buf[c.r:c.r+end+2], c.wsKey, c.r+end+4); err != nil {
			return err
		}
		c.hs, c.wsKey = hsAuthing, ""
		if err := c.sendAuth(); err != nil {
			return err
		}
	}
	if err := c.process(now); err != nil {
		return err
	}
	if !c.authed {
		return nil
	}
	c.wmu.Lock()
	expired := c.expired.Load()
	if !expired {
		c.est.Store(true) // under wmu: expire no longer shuts it
	}
	c.wmu.Unlock()
	if expired {
		return os.ErrDeadlineExceeded
	}
	c.timer.Stop()
	c.hs = hsNone
	c.p.established(c)
	return nil
}
