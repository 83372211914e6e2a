package transport

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// RawFD writes to a socket's descriptor without going through the runtime's
// poller: no descriptor reference count, no deadline and poller checks. A
// fan-out over thousands of connections touches each of them once per pass,
// so those checks read two structures per connection that are never in the
// cache; here the only state is this struct, beside the caller's own.
//
// It is safe only under one rule: the connection is closed through
// Release, then the net.Conn's Close, and never otherwise. Release waits for
// a write in progress and stops all later ones, so a descriptor number is
// never written after it was closed and perhaps reused by another connection.
//
// Writes never block: the runtime keeps every socket non-blocking, and a
// full socket buffer is a short count, not a wait.
type RawFD struct {
	mu sync.Mutex
	fd int // -1: no descriptor, or Release was called
}

// ErrNoFD is returned by writes on a RawFD without a descriptor (the
// connection is not a socket, e.g. a pipe in tests) or after Release.
var ErrNoFD = errors.New("transport: no descriptor for direct writes")

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
	n, err := unix.Write(r.fd, b)
	return wrote(n, err)
}

// Writev is Write for several buffers, in one writev(2); at most IOV_MAX
// of them are taken, the caller sends the rest later.
func (r *RawFD) Writev(bufs [][]byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return 0, ErrNoFD
	}
	n, err := writev(r.fd, bufs[:min(len(bufs), MaxIovecs)])
	return wrote(n, err)
}

// MaxIovecs is IOV_MAX on Linux, the most buffers one writev takes (more is
// EINVAL).
const MaxIovecs = 1024

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

// Do runs fn with the descriptor, under the same rule as the writes: never
// once Release was called, so fn cannot touch a number that was closed and
// reused (e.g. to register the socket with an epoll instance).
func (r *RawFD) Do(fn func(fd int) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return ErrNoFD
	}
	return fn(r.fd)
}

// Release ends direct writes, after the one in progress if any. Call it
// before closing the connection; it is idempotent.
func (r *RawFD) Release() {
	r.mu.Lock()
	r.fd = -1
	r.mu.Unlock()
}
