package transport

import (
	"net"
	"sync/atomic"
	"time"
)

// LingerDelay is how long a lingering Close keeps the socket half-open
// (net/http waits as long before closing a connection whose request it
// did not read to the end).
const LingerDelay = 500 * time.Millisecond

// CloseMode is how a connection's Close ends its socket, decided before
// the Close: at once (the default); lingering, when its reader stopped in
// the middle of what the peer sends; or discarding, for a client cut off
// as too slow. Safe for concurrent use; the zero value closes at once.
type CloseMode struct{ v atomic.Uint32 }

const (
	closeNow uint32 = iota
	closeLinger
	closeDiscard
)

// Linger makes Close shut the write side at once (the peer reads what was
// written, then end of stream) and close the socket LingerDelay later. For
// a reader that stopped with the peer's bytes unread or still coming (a
// frame over the limit): closing with them unread resets the connection,
// which fails the peer's writes and can make it lose the last bytes
// written to it, those that say why (Windows drops received data on a
// reset). Discard wins over it.
func (m *CloseMode) Linger() { m.v.CompareAndSwap(closeNow, closeLinger) }

// Discard makes Close drop what the kernel still holds to send (TCP:
// SO_LINGER 0, a reset); see Discarder.
func (m *CloseMode) Discard(nc net.Conn) {
	m.v.Store(closeDiscard)
	if l, ok := nc.(interface{ SetLinger(int) error }); ok {
		_ = l.SetLinger(0)
	}
}

// Close closes nc as decided. A lingering close returns once the write
// side is shut; nc is closed later, on a timer.
func (m *CloseMode) Close(nc net.Conn) error {
	if m.v.Load() == closeLinger {
		if cw, ok := nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			time.AfterFunc(LingerDelay, func() { _ = nc.Close() })
			return nil
		}
	}
	return nc.Close()
}
