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
