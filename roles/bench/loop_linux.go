//go:build linux

package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loopBufSize is the read buffer a read loop shares among its connections.
const loopBufSize = 64 << 10

// pollEvery is the pause of a read loop after a round that did not fill its
// event array: deliveries that trickle in (a server writing one connection
// after another) are then read many per round instead of one wakeup each,
// which is what keeps the bench's CPU per delivery low. Latency is not
// shifted by it: the receive time of a read is the kernel's arrival
// timestamp of its last segment (SO_TIMESTAMPNS), so the pause only
// overstates deliveries that share a read with a later segment of the same
// connection, by at most the pause (pollEvery, up to pollIdleMax after an
// idle spell).
const pollEvery = time.Millisecond

// pollIdleMax is the longest pause of an idle loop (nothing read in the
// last rounds): it bounds the wakeups of a bench holding idle connections.
const pollIdleMax = 8 * time.Millisecond

// loop is an epoll read loop. After its handshake a connection's socket is
// registered (edge-triggered) with one loop, which reads each ready socket
// into its shared buffer until a short read (TCP has then handed over all it
// had) and parses the frames in place: one recvmsg per server write at
// most, no goroutine per connection and no buffer per idle connection. The
// loop polls epoll without blocking and sleeps pollEvery between rounds
// (longer when idle), so it never blocks a thread and idle it costs about a
// hundred cheap wakeups a second.
type loop struct {
	p      *pool
	epfd   int
	buf    []byte
	events [256]unix.EpollEvent
	stop   atomic.Bool
	done   chan struct{}

	// recvmsg arguments, reused: no allocation per read.
	msg unix.Msghdr
	iov unix.Iovec
	oob [8]uint64 // control messages (the timestamp), 8-byte aligned
}

// startLoops starts one loop per GOMAXPROCS.
func (p *pool) startLoops() error {
	for range max(1, runtime.GOMAXPROCS(0)) {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return fmt.Errorf("epoll: %w", err)
		}
		l := &loop{p: p, epfd: epfd, buf: make([]byte, loopBufSize), done: make(chan struct{})}
		p.loops = append(p.loops, l)
		go l.run()
	}
	return nil
}

// stopLoops ends the loops and waits for them; it returns once no loop
// touches a connection any more.
func (p *pool) stopLoops() {
	for _, l := range p.loops {
		l.stop.Store(true)
	}
	for _, l := range p.loops {
		<-l.done
		_ = unix.Close(l.epfd)
	}
	p.loops = nil
}

func (l *loop) run() {
	defer close(l.done)
	pause := pollEvery
	for !l.stop.Load() {
		n, err := unix.EpollWait(l.epfd, l.events[:], 0)
		if err != nil && err != unix.EINTR {
			l.p.noteError("epoll_wait: " + err.Error())
			return
		}
		for i := range max(n, 0) {
			if c := l.p.conns[l.events[i].Fd].Load(); c != nil {
				l.handle(c, l.events[i].Events)
			}
		}
		switch {
		case n == len(l.events):
			continue
		case n > 0:
			pause = pollEvery
		default:
			// Idle: back off, up to pollIdleMax. Reads stay timestamped by
			// the kernel, so the first delivery after a quiet spell is
			// measured exactly however late it is read.
			pause = min(2*pause, pollIdleMax)
		}
		time.Sleep(pause)
	}
}

// handle is c's epoll event ev: the end of its connect, or data to read.
// Registered for EPOLLOUT too (a connect ends with the socket writable), a
// socket reports it again only in the rare case of a send buffer that had
// filled up; such an event alone is ignored.
func (l *loop) handle(c *conn, ev uint32) {
	if c.hs == hsConnecting {
		if err := c.connected(); err != nil {
			l.p.ended(c, err)
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.read(c)
	}
}

// read drains c's socket (edge-triggered: until a short read) and
// processes what came.
func (l *loop) read(c *conn) {
	for {
		if len(c.rem) > len(l.buf)/2 {
			l.buf = make([]byte, min(maxReadBuf, max(2*len(l.buf), 2*len(c.rem))))
		}
		c.takeRest(l.buf)
		space := len(c.buf) - c.w
		n, now, err := l.recv(c.fd, c.buf[c.w:])
		if err == unix.EAGAIN || err == unix.EINTR {
			c.buf = nil // rem is unchanged
			if err == unix.EINTR {
				continue
			}
			return
		}
		if n > 0 {
			c.w += n
			var perr error
			if c.hs != hsNone {
				perr = c.step(now)
			} else {
				perr = c.process(now)
			}
			if perr != nil {
				err = perr
			}
		} else if err == nil {
			err = io.EOF
		}
		if err == nil && c.r == 0 && c.w == len(c.buf) && len(c.buf) >= maxReadBuf {
			err = errors.New("frame larger than the read buffer limit")
		}
		c.keepRest()
		if err != nil {
			l.p.ended(c, err)
			return
		}
		if n < space {
			return
		}
	}
}

// recv is recvmsg(2) into b; now is the kernel's arrival time of the last
// segment read (time.Now if the socket gave none).
func (l *loop) recv(fd int, b []byte) (n int, now int64, err error) {
	l.iov.Base = &b[0]
	l.iov.SetLen(len(b))
	l.msg.Iov = &l.iov
	l.msg.SetIovlen(1)
	l.msg.Control = (*byte)(unsafe.Pointer(&l.oob[0]))
	l.msg.SetControllen(len(l.oob) * 8)
	r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&l.msg)), 0)
	if e != 0 {
		return 0, 0, e
	}
	return int(r), l.stamp(), nil
}

// stamp finds the SCM_TIMESTAMPNS control message of the last recvmsg.
func (l *loop) stamp() int64 {
	base := unsafe.Pointer(&l.oob[0])
	total := int(l.msg.Controllen)
	for off := 0; off+unix.SizeofCmsghdr <= total; {
		h := (*unix.Cmsghdr)(unsafe.Add(base, off))
		if int(h.Len) < unix.SizeofCmsghdr || off+int(h.Len) > total {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && int(h.Len) >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			return (*unix.Timespec)(unsafe.Add(base, off+unix.CmsgLen(0))).Nano()
		}
		off += unix.CmsgSpace(int(h.Len) - unix.CmsgLen(0))
	}
	return time.Now().UnixNano()
}

// register lists c in the pool and adds its socket to a loop.
func (p *pool) register(c *conn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing.Load() {
		return errors.New("bench stopping")
	}
	local := c.idx - p.lo
	l := p.loops[local%len(p.loops)]
	fd := c.fd // c is the loop's from the Store on (it may end c before EpollCtl returns)
	p.conns[local].Store(c)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(local)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.conns[local].Store(nil)
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// ended is called by a loop when c's connection is over, or its handshake
// failed.
func (p *pool) ended(c *conn, err error) {
	p.conns[c.idx-p.lo].Store(nil)
	c.closeFD() // closing the only descriptor also removes it from epoll
	if !c.est.Load() {
		c.timer.Stop()
		if c.expired.Load() {
			err = os.ErrDeadlineExceeded
		}
		p.handshakeFailed(c, err)
		return
	}
	if !p.closing.Load() {
		p.nClosed.Add(1)
		p.noteError(classify("closed during the run", err))
	}
}

// closeFD closes the socket once; writers check fd under wmu.
func (c *conn) closeFD() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.fd >= 0 {
		_ = unix.Close(c.fd)
		c.fd = -1
	}
	if c.nc != nil {
		_ = c.nc.Close()
	}
}

// send writes b whole (the caller holds wmu). The socket is non-blocking: a
// full send buffer is waited out in 1 ms steps up to timeout, after which
// the connection is shut down (the loop then sees it end).
func (c *conn) send(b []byte, timeout time.Duration) error {
	if c.fd < 0 {
		if c.nc != nil {
			_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
			_, err := c.nc.Write(b)
			return err
		}
		return net.ErrClosed
	}
	var deadline time.Time
	for len(b) > 0 {
		n, err := unix.Write(c.fd, b)
		if n > 0 {
			b = b[n:]
			continue
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(timeout)
		} else if time.Now().After(deadline) {
			_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
			return os.ErrDeadlineExceeded
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}
