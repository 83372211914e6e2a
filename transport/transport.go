package transport

import (
	"errors"
	"time"

	"github.com/imcloud/imcloud/protocol"
)

// Out is one queued outbound item: a complete encoded frame (a reply), or,
// with Push set, one or more complete encoded push frames back to back, or,
// with Raw set, bytes already framed for the transport (the unwritten rest
// of a TryWrite, a WebSocket control frame), written as they are.
// Data is shared between receivers and must not be modified.
type Out struct {
	Data []byte
	Push bool
	Raw  bool
	// WSMessage, with Push, is Data already framed as the one WebSocket
	// message it goes out in alone (ws.PushMessage), built once by a
	// fan-out and shared like Data; nil lets each connection frame Data.
	WSMessage []byte
}

// TryWriter is implemented by connections that can write without blocking,
// so a fan-out can write to an idle connection in place instead of waking a
// writer goroutine for it.
type TryWriter interface {
	// TryWrite frames o and writes what the socket takes at once. It returns
	// the framed bytes it could not write (nil when all went out), to be
	// written later as a Raw item before anything else.
	TryWrite(o Out) (rest []byte, err error)
}

// ErrIdle is what ReadFrame of a transport told to StopWhenIdle returns
// when it handled what arrived (a WebSocket ping) and holds no bytes of a
// next frame: no frame, and not an error; the deadline still runs.
var ErrIdle = errors.New("transport: idle, no frame")

// IdleStopper is implemented by transports that may read something other
// than a frame (WebSocket control frames): after StopWhenIdle, ReadFrame
// returns ErrIdle instead of waiting for a frame once it handled such a
// thing and holds nothing more, so a caller that parks idle readers can.
type IdleStopper interface {
	StopWhenIdle()
}

// Conn is one client connection.
type Conn interface {
	// ReadFrame returns the next client frame. Protocol violations wrap the
	// protocol package's sentinel errors. The body stays valid until the next
	// call.
	ReadFrame(deadline time.Time) (protocol.Frame, error)
	// Write sends items in order, coalescing as the transport allows: TCP
	// writes everything with one writev; WebSocket sends each reply as its own
	// message and runs of pushes as op-9 messages under protocol.MaxWSBatch.
	Write(items []Out, deadline time.Time) error
	// Close closes the connection; safe to call repeatedly and concurrently.
	Close() error
	// RemoteAddr is the client's ip:port.
	RemoteAddr() string
	// Network is "tcp" or "ws".
	Network() string
}

// Close codes (RFC 6455 section 7.4.1) a CloseReasoner may be given.
const (
	CloseNormal        uint16 = 1000
	CloseGoingAway     uint16 = 1001 // the server shuts down
	CloseProtocolError uint16 = 1002
	CloseInvalidData   uint16 = 1007 // e.g. a close reason that is not UTF-8
	ClosePolicy        uint16 = 1008 // refused: auth, heartbeat, replaced
	CloseTooBig        uint16 = 1009
	CloseTryAgainLater uint16 = 1013
)

// CloseReasoner is implemented by transports that can tell the peer why
// they close (WebSocket: the close frame's code and reason): Close then
// sends code and reason rather than a plain normal closure. The first
// reason given stands, since the first to notice knows best.
type CloseReasoner interface {
	SetCloseReason(code uint16, reason string)
}

// SetCloseReason gives c code and reason for its Close if its transport
// can tell them; otherwise (TCP) it does nothing.
func SetCloseReason(c Conn, code uint16, reason string) {
	if r, ok := c.(CloseReasoner); ok {
		r.SetCloseReason(code, reason)
	}
}

// Discarder is implemented by transports that can drop, when they close,
// what the kernel still holds to send (TCP: SO_LINGER 0, a reset): for a
// client cut off as too slow, whose unread megabytes would otherwise stay
// in kernel memory until it read them or the kernel gave up, minutes later.
type Discarder interface {
	DiscardOnClose()
}

// DiscardOnClose makes c's Close drop unsent data if its transport can.
func DiscardOnClose(c Conn) {
	if d, ok := c.(Discarder); ok {
		d.DiscardOnClose()
	}
}
