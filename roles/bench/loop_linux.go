//go:build linux

package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// loopBufSize is the read buffer a read loop shares among its connections.
const loopBufSize = 64 << 10

// loop is an epoll read loop: after its handshake a connection's socket is
// registered (level-triggered) with one loop, which reads each ready socket
// once per wakeup into its shared buffer and parses the frames in place.
// That is one read syscall per server write, no goroutine per connection
// and no buffer per idle connection.
//
// The epoll descriptor itself sits in Go's poller (as an os.File): when no
// socket is ready the loop goroutine parks like any network read, so nothing
// blocks a thread.
type loop struct {
	p      *pool
	epfd   int
	file   *os.File
	raw    syscall.RawConn
	buf    []byte
	events [256]unix.EpollEvent
	done   chan struct{}
	got    int
}

var readBatch = time.Millisecond

// startLoops starts one loop per GOMAXPROCS.
func (p *pool) startLoops() error {
	for range max(1, runtime.GOMAXPROCS(0)) {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return fmt.Errorf("epoll: %w", err)
		}
		if err := unix.SetNonblock(epfd, true); err != nil {
			_ = unix.Close(epfd)
			return fmt.Errorf("epoll: %w", err)
		}
		f := os.NewFile(uintptr(epfd), "bench-epoll")
		raw, err := f.SyscallConn()
		if err != nil {
			_ = f.Close()
			return fmt.Errorf("epoll: %w", err)
		}
		l := &loop{p: p, epfd: epfd, file: f, raw: raw, buf: make([]byte, loopBufSize), done: make(chan struct{})}
		p.loops = append(p.loops, l)
		go l.run()
	}
	return nil
}

// stopLoops ends the loops and waits for them; it returns once no loop
// touches a connection any more.
func (p *pool) stopLoops() {
	for _, l := range p.loops {
		_ = l.file.Close()
	}
	for _, l := range p.loops {
		<-l.done
	}
}

func (l *loop) run() {
	defer close(l.done)
	for {
		if err := l.raw.Read(l.poll); err != nil {
			return // the epoll file was closed
		}
		if l.got < len(l.events) && readBatch > 0 {
			time.Sleep(readBatch)
		}
	}
}

// poll handles what is ready; false (nothing was) parks the goroutine until
// the epoll descriptor is readable.
func (l *loop) poll(fd uintptr) bool {
	n, err := unix.EpollWait(int(fd), l.events[:], 0)
	if err != nil {
		return errors.Is(err, unix.EINTR)
	}
	l.got = n
	if n == 0 {
		return false
	}
	for i := range n {
		if c := l.p.conns[l.events[i].Fd].Load(); c != nil {
			l.read(c)
		}
	}
	return true
}

// read reads c's socket once and processes what came.
func (l *loop) read(c *conn) {
	if len(c.rem) > len(l.buf)/2 {
		l.buf = make([]byte, min(maxReadBuf, max(2*len(l.buf), 2*len(c.rem))))
	}
	c.takeRest(l.buf)
	n, err := unix.Read(c.fd, c.buf[c.w:])
	if err == unix.EAGAIN || err == unix.EINTR {
		c.buf = nil // rem is unchanged
		return
	}
	if n > 0 {
		c.w += n
		if perr := c.process(time.Now().UnixNano()); perr != nil {
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
	}
}

// handoff moves an authenticated connection from its net.Conn to a read
// loop: the socket is duplicated, the net.Conn closed (which only drops Go's
// descriptor and poller registration) and the duplicate registered with
// epoll. It returns at once (async).
func (c *conn) handoff() (async bool, err error) {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return false, errors.New("not a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return false, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return false, err
	}
	if derr != nil {
		return false, fmt.Errorf("dup: %w", derr)
	}
	_ = c.nc.Close()
	c.nc = nil
	c.fd = fd
	c.keepRest()
	return true, c.p.register(c)
}

// register lists c in the pool and adds its socket to a loop.
func (p *pool) register(c *conn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing.Load() {
		c.closeFD()
		return errors.New("bench stopping")
	}
	local := c.idx - p.lo
	l := p.loops[local%len(p.loops)]
	p.conns[local].Store(c)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(local)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		p.conns[local].Store(nil)
		c.closeFD()
		return fmt.Errorf("epoll add: %w", err)
	}
	// Bytes that came with the AuthReply are processed now; what they left
	// (a partial frame) waits in rem for the next read.
	return nil
}

// ended is called by a loop when c's connection is over.
func (p *pool) ended(c *conn, err error) {
	p.conns[c.idx-p.lo].Store(nil)
	c.closeFD() // closing the only descriptor also removes it from epoll
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
