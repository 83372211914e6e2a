package ws

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// maxHeader is the longest frame header a server writes (no mask) plus the
// op-9 header that may follow it.
const maxHeader = 10 + protocol.HeaderLen

// Errors ReadFrame returns for frames that break RFC 6455.
var (
	ErrProtocol = errors.New("ws: protocol violation")
	// ErrClosedByPeer is returned after the client's close frame.
	ErrClosedByPeer = fmt.Errorf("ws: closed by peer: %w", io.EOF)
)

// Conn is a goim connection over WebSocket.
type Conn struct {
	c       net.Conn
	maxBody int
	remote  string
	pending []byte // bytes that arrived with the handshake

	control  func(transport.Out) bool // queues pongs and close replies
	stopIdle bool                     // StopWhenIdle: ErrIdle after a control frame

	// Read side, used by the reader goroutine only.
	hdr        [14]byte
	rbuf       [readAhead]byte // reads shorter than this land here first
	rpos, rend uint8           // what of rbuf is still unread

	// Write side.
	wmu     sync.Mutex
	fd      transport.RawFD // TryWrite's direct writes; released by Close
	direct  bool            // fd has a descriptor; without one TryWrite defers all
	partial bool            // a TryWrite left bytes to finish: nothing may go in between
	bufs    net.Buffers
	wbufs   net.Buffers // what Write hands to WriteTo, which consumes it
	hdrs    []byte
	once    sync.Once
	mode    transport.CloseMode

	// The close frame Close sends (SetCloseReason).
	cmu         sync.Mutex
	closeSet    bool
	closeCode   uint16 // 0 with closeSet: a close frame with no body
	closeReason string
}

var (
	_ transport.Conn          = (*Conn)(nil)
	_ transport.TryWriter     = (*Conn)(nil)
	_ transport.CloseReasoner = (*Conn)(nil)
	_ transport.Discarder     = (*Conn)(nil)
)

func newConn(nc net.Conn, maxBody int, remote string, pending []byte) *Conn {
	// No SetNoDelay: Go sets TCP_NODELAY on every TCP connection it makes.
	c := &Conn{c: nc, maxBody: maxBody, remote: remote, pending: pending}
	c.direct = c.fd.Init(nc)
	return c
}

// Buffered is how many bytes of the next frames the connection holds
// already (read ahead, or sent with the handshake); the reader's only.
func (c *Conn) Buffered() int { return len(c.pending) + int(c.rend-c.rpos) }

// WithFD runs fn with the socket's descriptor unless the connection is
// closed (transport.RawFD.Do).
func (c *Conn) WithFD(fn func(fd int) error) error { return c.fd.Do(fn) }

// StopWhenIdle implements transport.IdleStopper: a control frame handled
// between messages, with nothing more read ahead, ends ReadFrame with
// transport.ErrIdle. Call it before the first ReadFrame.
func (c *Conn) StopWhenIdle() { c.stopIdle = true }

// SetControl sets how the reader sends control frames (pong, close reply):
// through the session's queue, so they never cut into other writes.
func (c *Conn) SetControl(fn func(transport.Out) bool) { c.control = fn }

// ReadFrame implements transport.Conn. The session's reader spends its
// life waiting in here, so the wait for a WebSocket frame's first bytes
// happens with little on the stack (see cloud's runSession); reading the
// rest of the frame is readFrame's.
func (c *Conn) ReadFrame(deadline time.Time) (protocol.Frame, error) {
	if err := c.c.SetReadDeadline(deadline); err != nil {
		return protocol.Frame{}, err
	}
	var m message
	for {
		if err := c.readFull(c.hdr[:2]); err != nil {
			return protocol.Frame{}, err
		}
		if f, done, err := c.readFrame(&m); done || err != nil {
			return f, err
		}
		if c.stopIdle && !m.open && c.Buffered() == 0 {
			return protocol.Frame{}, transport.ErrIdle
		}
	}
}

// message is a goim message read so far, from one or more frames.
type message struct {
	body []byte
	open bool // a fragmented message has begun
}

// readFrame reads the WebSocket frame whose first two bytes are in c.hdr,
// handles it if it is a control frame, adds it to m otherwise, and reports
// done with the goim frame once m is complete.
func (c *Conn) readFrame(m *message) (protocol.Frame, bool, error) {
	limit := c.maxBody + protocol.HeaderLen
	fin := c.hdr[0]&0x80 != 0
	if c.hdr[0]&0x70 != 0 {
		return c.fail(transport.CloseProtocolError, "reserved bits set")
	}
	opcode := c.hdr[0] & 0x0f
	if c.hdr[1]&0x80 == 0 {
		return c.fail(transport.CloseProtocolError, "unmasked client frame")
	}
	n := uint64(c.hdr[1] & 0x7f)
	switch n {
	case 126:
		if err := c.readFull(c.hdr[2:4]); err != nil {
			return protocol.Frame{}, true, err
		}
		n = uint64(binary.BigEndian.Uint16(c.hdr[2:4]))
	case 127:
		if err := c.readFull(c.hdr[2:10]); err != nil {
			return protocol.Frame{}, true, err
		}
		n = binary.BigEndian.Uint64(c.hdr[2:10])
		if n>>63 != 0 { // RFC 6455 section 5.2: the most significant bit must be 0
			return c.fail(transport.CloseProtocolError, "64-bit payload length with the top bit set")
		}
	}
	var mask [4]byte
	if err := c.readFull(mask[:]); err != nil {
		return protocol.Frame{}, true, err
	}
	if opcode >= opClose {
		if !fin || n > 125 {
			return c.fail(transport.CloseProtocolError, "bad control frame")
		}
		payload := make([]byte, n)
		if err := c.readFull(payload); err != nil {
			return protocol.Frame{}, true, err
		}
		unmask(payload, mask)
		switch opcode {
		case opPing:
			c.sendControl(opPong, payload)
			return protocol.Frame{}, false, nil
		case opPong:
			return protocol.Frame{}, false, nil
		case opClose:
			// Close answers with the one close frame this calls for.
			code, reason, ok := closeAnswer(payload)
			if !ok {
				return c.fail(code, reason)
			}
			c.SetCloseReason(code, "")
			return protocol.Frame{}, true, ErrClosedByPeer
		default:
			return c.fail(transport.CloseProtocolError, fmt.Sprintf("unknown opcode %d", opcode))
		}
	}
	switch opcode {
	case opText, opBinary:
		if m.open {
			return c.fail(transport.CloseProtocolError, "new message inside a fragmented one")
		}
		// A text message is taken as binary, its UTF-8 unchecked (RFC 6455
		// section 8.1 says fail): goim's server does so, and clients that
		// send frames as text work with it.
		m.open = true
	case opContinuation:
		if !m.open {
			return c.fail(transport.CloseProtocolError, "continuation without a message")
		}
	default:
		return c.fail(transport.CloseProtocolError, fmt.Sprintf("unknown opcode %d", opcode))
	}
	if n > uint64(limit-len(m.body)) {
		reason := fmt.Sprintf("message over %d bytes", limit)
		c.SetCloseReason(transport.CloseTooBig, reason)
		c.mode.Linger() // the payload is left unread: see CloseMode.Linger
		return protocol.Frame{}, true, fmt.Errorf("%w: %s", protocol.ErrTooLarge, reason)
	}
	start := len(m.body)
	m.body = append(m.body, make([]byte, n)...)
	if err := c.readFull(m.body[start:]); err != nil {
		return protocol.Frame{}, true, err
	}
	unmask(m.body[start:], mask)
	if !fin {
		return protocol.Frame{}, false, nil
	}
	f, err := protocol.DecodeMessage(m.body, c.maxBody)
	return f, true, err
}

// fail ends the read with a protocol violation, which Close then names to
// the peer with code.
func (c *Conn) fail(code uint16, reason string) (protocol.Frame, bool, error) {
	c.SetCloseReason(code, reason)
	c.mode.Linger() // what follows in the stream is left unread
	return protocol.Frame{}, true, fmt.Errorf("%w: %s", ErrProtocol, reason)
}

// closeAnswer is the code of the close frame that answers the peer's
// close frame with payload p: its own code echoed (none if it gave none),
// or, not ok, the code and reason of the protocol error p is (RFC 6455
// sections 5.5.1, 7.4 and 8.1).
func closeAnswer(p []byte) (code uint16, reason string, ok bool) {
	switch {
	case len(p) == 0:
		return 0, "", true
	case len(p) == 1:
		return transport.CloseProtocolError, "close frame of 1 byte", false
	}
	code = binary.BigEndian.Uint16(p)
	if !validCloseCode(code) {
		return transport.CloseProtocolError, fmt.Sprintf("invalid close code %d", code), false
	}
	if !utf8.Valid(p[2:]) {
		return transport.CloseInvalidData, "close reason not UTF-8", false
	}
	return code, "", true
}

// validCloseCode reports whether a peer may send code: the ones RFC 6455
// and IANA define for the wire, and those for libraries and applications.
func validCloseCode(code uint16) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code >= 1000 && code <= 1014:
		return code != 1004 && code != 1005 && code != 1006
	}
	return false
}

// SetCloseReason implements transport.CloseReasoner; code 0 is a close
// frame with no body.
func (c *Conn) SetCloseReason(code uint16, reason string) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	if !c.closeSet {
		c.closeSet, c.closeCode, c.closeReason = true, code, reason
	}
}

// maxCloseReason is what a close frame's 125 bytes leave for the reason.
const maxCloseReason = 123

// closeFrame is the close frame Close sends: normal closure unless
// SetCloseReason said otherwise.
func (c *Conn) closeFrame() []byte {
	c.cmu.Lock()
	code, reason := c.closeCode, c.closeReason
	if !c.closeSet {
		code, reason = transport.CloseNormal, ""
	}
	c.cmu.Unlock()
	if code == 0 {
		return []byte{0x80 | opClose, 0}
	}
	reason = strings.ToValidUTF8(reason, "")
	if len(reason) > maxCloseReason {
		reason = reason[:maxCloseReason]
		for !utf8.ValidString(reason) { // cut inside a character
			reason = reason[:len(reason)-1]
		}
	}
	b := make([]byte, 4, 4+len(reason))
	b[0], b[1] = 0x80|opClose, byte(2+len(reason))
	binary.BigEndian.PutUint16(b[2:], code)
	return append(b, reason...)
}

// readAhead is how much a read of a few bytes asks the socket for: a whole
// heartbeat (22 bytes) arrives with the read for its first two, not in
// three reads (header, mask, payload).
const readAhead = 32

// readFull reads len(p) bytes: first what came with the handshake, then
// what an earlier read took ahead, then the socket.
func (c *Conn) readFull(p []byte) error {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		p = p[n:]
	}
	if c.rpos < c.rend {
		n := copy(p, c.rbuf[c.rpos:c.rend])
		c.rpos += uint8(n)
		p = p[n:]
	}
	if len(p) == 0 {
		return nil
	}
	if len(p) >= readAhead {
		_, err := io.ReadFull(c.c, p)
		return err
	}
	n, err := io.ReadAtLeast(c.c, c.rbuf[:], len(p))
	copy(p, c.rbuf[:n])
	c.rpos, c.rend = uint8(min(n, len(p))), uint8(n)
	return err
}

func unmask(b []byte, key [4]byte) {
	for i := range b {
		b[i] ^= key[i&3]
	}
}

// sendControl sends a control frame: through the session's queue, or,
// before there is a session (no SetControl yet), at once, since until then
// the reader is the only one to write.
func (c *Conn) sendControl(opcode byte, payload []byte) {
	var h [maxHeader]byte
	n := putFrameHeader(h[:], opcode, len(payload))
	frame := append(h[:n:n], payload...)
	if c.control != nil {
		c.control(transport.Out{Data: frame, Raw: true})
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.partial {
		return
	}
	_ = c.c.SetWriteDeadline(time.Now().Add(time.Second))
	if n, err := c.c.Write(frame); err != nil && n > 0 {
		c.partial = true
	}
	_ = c.c.SetWriteDeadline(time.Time{})
}

// putFrameHeader writes a final, unmasked frame header for a payload of n
// bytes and returns its length.
func putFrameHeader(b []byte, opcode byte, n int) int {
	b[0] = 0x80 | opcode
	switch {
	case n <= 125:
		b[1] = byte(n)
		return 2
	case n <= 0xffff:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		return 4
	default:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
		return 10
	}
}

// PushMessage returns frames (complete push frames back to back) as the
// one WebSocket message a connection would send them in: a binary message
// holding an op-9 frame. A fan-out builds it once and every receiver's
// TryWrite writes the same bytes (transport.Out.WSMessage). Frames too large
// for one message (protocol.MaxWSBatch) give nil: connections split them.
func PushMessage(frames []byte) []byte {
	n := protocol.HeaderLen + len(frames)
	if n > protocol.MaxWSBatch {
		return nil
	}
	b := make([]byte, maxHeader, maxHeader+len(frames))
	wn := putFrameHeader(b, opBinary, n)
	protocol.PutHeader(b[wn:], len(frames), protocol.PushVer, protocol.OpRaw, 0)
	return append(b[:wn+protocol.HeaderLen], frames...)
}

// frame appends to c.bufs the iovecs that send items: replies as binary
// messages, runs of pushes as op-9 messages under protocol.MaxWSBatch, raw
// items as they are. Headers go to c.hdrs, whose capacity is reserved up
// front so the iovecs pointing into it stay valid.
func (c *Conn) frame(items []transport.Out) {
	need := maxHeader
	for _, it := range items {
		need += maxHeader
		if it.Push && len(it.Data)+protocol.HeaderLen > protocol.MaxWSBatch {
			need += maxHeader * (len(it.Data)/protocol.HeaderLen + 1)
		}
	}
	if cap(c.hdrs) < need {
		c.hdrs = make([]byte, 0, need)
	}
	c.hdrs = c.hdrs[:0]
	c.bufs = c.bufs[:0]
	runStart, runLen := -1, 0 // iovec index of the open run's header, its body length
	closeRun := func() {
		if runStart < 0 {
			return
		}
		// The run's header was reserved at maxHeader bytes; fill it now that
		// the body length is known and trim it to its real size.
		h := c.bufs[runStart][:maxHeader]
		wn := putFrameHeader(h, opBinary, protocol.HeaderLen+runLen)
		protocol.PutHeader(h[wn:], runLen, protocol.PushVer, protocol.OpRaw, 0)
		c.bufs[runStart] = h[:wn+protocol.HeaderLen]
		runStart, runLen = -1, 0
	}
	addPush := func(frames []byte) {
		if runStart >= 0 && protocol.HeaderLen+runLen+len(frames) > protocol.MaxWSBatch {
			closeRun()
		}
		if runStart < 0 {
			off := len(c.hdrs)
			c.hdrs = c.hdrs[:off+maxHeader]
			runStart = len(c.bufs)
			c.bufs = append(c.bufs, c.hdrs[off:off+maxHeader])
		}
		c.bufs = append(c.bufs, frames)
		runLen += len(frames)
	}
	for _, it := range items {
		switch {
		case it.Raw:
			closeRun()
			c.bufs = append(c.bufs, it.Data)
		case !it.Push:
			closeRun()
			off := len(c.hdrs)
			n := putFrameHeader(c.hdrs[off:off+maxHeader], opBinary, len(it.Data))
			c.hdrs = c.hdrs[:off+n]
			c.bufs = append(c.bufs, c.hdrs[off:off+n], it.Data)
		case protocol.HeaderLen+len(it.Data) <= protocol.MaxWSBatch:
			addPush(it.Data)
		default:
			// A batch too large for one message: split it at frame
			// boundaries (a single frame over the limit goes alone).
			rest := it.Data
			for len(rest) > 0 {
				_, n, err := protocol.Decode(rest, len(rest))
				if err != nil {
					n = len(rest) // not frames: send the remainder as one run
				}
				addPush(rest[:n])
				rest = rest[n:]
			}
		}
	}
	closeRun()
}

// Write implements transport.Conn: everything in one writev.
func (c *Conn) Write(items []transport.Out, deadline time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	defer func() { _ = c.c.SetWriteDeadline(time.Time{}) }()
	c.frame(items)
	c.wbufs = c.bufs // WriteTo consumes its receiver
	n, err := c.wbufs.WriteTo(c.c)
	clear(c.bufs[:cap(c.bufs)])
	switch {
	case err == nil:
		c.partial = false
	case n > 0:
		// Stopped, maybe inside a frame: nothing may follow, not even
		// Close's close frame.
		c.partial = true
	}
	return err
}

// TryWrite implements transport.TryWriter with one non-blocking write:
// of o.WSMessage as it is when the fan-out framed it for every receiver,
// else of the frames built here.
func (c *Conn) TryWrite(o transport.Out) ([]byte, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if o.Push && o.WSMessage != nil && c.direct {
		n, err := c.fd.Write(o.WSMessage)
		if err != nil {
			return nil, err
		}
		c.partial = n < len(o.WSMessage)
		if c.partial {
			return o.WSMessage[n:], nil // shared bytes, no copy
		}
		return nil, nil
	}
	c.frame([]transport.Out{o})
	defer clear(c.bufs[:cap(c.bufs)])
	if !c.direct {
		return c.flatten(0), nil
	}
	n, err := c.fd.Writev(c.bufs)
	if err != nil {
		return nil, err
	}
	rest := c.flatten(n)
	c.partial = len(rest) > 0
	return rest, nil
}

// flatten returns the bytes of c.bufs after the first skip: a sub-slice of
// one shared buffer when possible, a copy otherwise.
func (c *Conn) flatten(skip int) []byte {
	for i, b := range c.bufs {
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		if i == len(c.bufs)-1 {
			return b[skip:] // shared bytes, no copy
		}
		var out []byte
		out = append(out, b[skip:]...)
		for _, r := range c.bufs[i+1:] {
			out = append(out, r...)
		}
		return out
	}
	return nil
}

// Close implements transport.Conn: a close frame (closeFrame) if one can
// go out at once without cutting into a write, then the socket.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		sent := false
		if c.wmu.TryLock() {
			if !c.partial {
				f := c.closeFrame()
				n, _ := c.fd.Write(f)
				sent = n == len(f)
			}
			c.wmu.Unlock()
		}
		c.fd.Release()
		if !sent {
			err = c.c.Close() // lingering cannot help a torn stream
			return
		}
		err = c.mode.Close(c.c)
	})
	return err
}

// DiscardOnClose implements transport.Discarder.
func (c *Conn) DiscardOnClose() { c.mode.Discard(c.c) }

// RemoteAddr implements transport.Conn.
func (c *Conn) RemoteAddr() string { return c.remote }

// Network implements transport.Conn.
func (c *Conn) Network() string { return "ws" }
