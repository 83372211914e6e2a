//go:build unix

package transport

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Init takes nc's descriptor and reports whether it has one.
func (r *RawFD) Init(nc net.Conn) bool {
	r.fd = -1
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	_ = raw.Control(func(fd uintptr) { r.fd = int(fd) })
	return r.fd >= 0
}

// Write writes what the socket takes of b at once and returns how much that
// was; a full socket is a short count with no error.
func (r *RawFD) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return 0, ErrNoFD
	}
	n, err := write(r.fd, b)
	return wrote(n, err)
}

// Writev is Write for several buffers in one system call (sendmsg(2) on
// Linux); at most IOV_MAX of them are taken, the caller sends the rest
// later.
func (r *RawFD) Writev(bufs [][]byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return 0, ErrNoFD
	}
	n, err := writev(r.fd, bufs[:min(len(bufs), MaxIovecs)])
	return wrote(n, err)
}

func wrote(n int, err error) (int, error) {
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return 0, nil
	default:
		return 0, err
	}
}
