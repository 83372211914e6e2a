package transport

import (
	"errors"
	"sync"
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

// MaxIovecs is IOV_MAX on Linux, the most buffers one writev takes (more is
// EINVAL).
const MaxIovecs = 1024

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
