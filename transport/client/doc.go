// Package client is a small goim v2 protocol client: it dials a cloud node over
// TCP or WebSocket, authenticates with an op-7 frame and reads and writes
// frames. It is used by the tests, by the interactive `imcloud client` command
// and by the load generator; it holds no global state.
//
// # Frames
//
// Over TCP a frame is written as is and pushes arrive as plain frames (a batch
// is several frames back to back). Over WebSocket every frame travels in its own
// binary message and pushes arrive as one op-9 frame whose body holds the inner
// frames. [Client.Next] hides the difference: it unpacks op-9 frames and returns
// their inner frames one by one, in order. [Client.NextMessage] is the lower
// level: it returns the frame exactly as one read produced it (over WebSocket,
// the op-9 frame itself). Do not mix the two on one Client: inner frames that
// Next has unpacked but not yet returned are not seen by NextMessage.
//
// # Deadlines and cancellation
//
// Next and NextMessage honour ctx. Over TCP the context's deadline becomes the
// socket's read deadline and cancellation interrupts the read; if nothing of the
// next frame had been received (up to 4112-byte frames are peeked before they are
// consumed), the Client stays usable after the error, which makes "expect
// nothing within 500 ms" checks possible. A frame larger than that, partly read
// when the deadline hit, leaves the stream out of step: close the Client.
// Over WebSocket, github.com/coder/websocket closes the connection when the
// context of a read expires, so after a deadline or cancellation error the
// Client is unusable and must be closed. A context that is already done when
// Next or NextMessage is called returns its error at once without touching the
// connection, on both transports. Errors caused by the context wrap ctx.Err(),
// so errors.Is(err, context.DeadlineExceeded) works on both transports.
//
// A frame that breaks the protocol (bad header, over MaxBody, a WebSocket
// message that is not exactly one frame, a corrupt op-9 batch) is returned as
// an error wrapping the protocol package's sentinel; the Client should then be
// closed.
//
// Writes (Send, SendRaw, Heartbeat) are bounded by Options.Timeout.
//
// # Concurrency
//
// One goroutine may read (Next / NextMessage) while another writes (Send,
// SendRaw, Heartbeat); writes are serialised by a mutex, so several writers are
// safe too. Reads must not run concurrently with each other. Close may be
// called from any goroutine and unblocks a pending read.
//
// # Many clients
//
// Options.LocalAddr picks the source IP. Over TCP (and for the TCP connection
// under a WebSocket) on Linux the socket gets IP_BIND_ADDRESS_NO_PORT, so the
// kernel picks the source port at connect time from the full 4-tuple: with
// several loopback source addresses (127.0.0.1, 127.0.0.2, ...) one machine can
// open far more than 64k connections to one server port.
package client
