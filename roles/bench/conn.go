package bench

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud/protocol"
)

// Read buffers: every connection owns one buffer of readBufSize bytes and
// parses frames in place; it grows (and stays grown) only for a single frame
// larger than the buffer, up to maxReadBuf.
const (
	readBufSize = 4096
	maxReadBuf  = 2<<20 + 64
	// maxPackLen bounds a frame's packLen (op-9 batches included).
	maxPackLen = 2 << 20
)

// WebSocket opcodes (RFC 6455).
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	wsPing         = 0x9
	wsPong         = 0xa
)

var (
	errWSClosed    = errors.New("websocket close frame from server")
	errDisconnect  = errors.New("server sent DisconnectReply")
	errAuthRefused = errors.New("auth not accepted")
)

// conn is one client connection. On Linux the pool's connect loop opens a
// non-blocking socket and starts the connect, and one of the pool's epoll
// read loops drives the rest of the handshake (upgrade, auth) as the
// socket's events come and then reads the deliveries: a connection costs no
// goroutine and no buffer of its own; the loop reads into its shared buffer
// and only a partial frame (or response head) left at the end of a read is
// kept, in rem. Elsewhere a goroutine per connection dials and reads it. The
// pool's heartbeat goroutine writes to the socket too, under wmu (so do pong
// replies and the handshake's writes from the reader).
//
// The receive path parses frames in place without allocating:
// [r, g) holds goim bytes not yet parsed (at most one partial frame once a
// read is processed), [g, w) raw bytes not yet admitted (over WebSocket:
// frame headers and payload still to come; over TCP g == w). Op-9 batches
// are flattened: their header is skipped and the inner frames, which fill
// its body exactly, are parsed as if they came one by one.
type conn struct {
	p      *pool
	idx    int // client index over the whole run
	target uint32
	stripe *stripe
	ws     bool

	nc      net.Conn // where there is no epoll: the connection
	fd      int      // with epoll: the socket; -1 once closed
	buf     []byte
	r, g, w int
	payLeft int64  // WebSocket: payload bytes of the current data frame not yet admitted
	rem     []byte // between reads: the unprocessed bytes ([r, w) of the last buffer)
	gOff    int    // g - r of the last buffer
	authed  bool
	authAt  int64 // unix nanos of the AuthReply

	// Duplicate/order window over the stream sequence (see stamp.go): hi is
	// the highest seen, bit k of win marks hi-k as seen.
	hi  uint32
	win uint64

	wmu   sync.Mutex
	wbuf  [32]byte
	hbSeq int32

	t0 time.Time // dial start

	// The handshake on a read loop (Linux): its step (the loop's only),
	// what to send once upgraded, and the deadline's timer; est once the
	// AuthReply came (heartbeats wait for it), expired if the deadline
	// shut the socket.
	hs      handshakeStep
	wsKey   string
	auth    []byte
	timer   *time.Timer
	est     atomic.Bool
	expired atomic.Bool

	// onFrame, when set (tests), sees every frame instead of the handlers.
	onFrame func(op, seq int32, body []byte)
}

// handshakeStep is where the handshake of a connection on a read loop is.
type handshakeStep uint8

const (
	hsNone       handshakeStep = iota // done (or not on a read loop)
	hsConnecting                      // connect started: waiting for the socket to turn writable
	hsUpgrading                       // upgrade request sent: reading the response's head
	hsAuthing                         // Auth sent: reading the AuthReply
)

// wsTarget is one parsed --tcp-addr or --ws-url entry, shared by the
// connections that go to it.
type wsTarget struct {
	hostPort string
	addr     *net.TCPAddr // hostPort resolved, once for the run
	host     string       // Host header (WebSocket only)
	path     string       // request target (WebSocket only)
}

// upgradeRequest is a WebSocket upgrade request for t and its key.
func upgradeRequest(t *wsTarget) (req, key string) {
	var kb [16]byte
	for i := range kb {
		kb[i] = byte(rand.Uint32())
	}
	key = base64.StdEncoding.EncodeToString(kb[:])
	req = "GET " + t.path + " HTTP/1.1\r\nHost: " + t.host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\nUser-Agent: imcloud-bench\r\n\r\n"
	return req, key
}

// authFrame is the op-7 frame carrying auth, in a masked WebSocket frame if
// ws.
func authFrame(auth []byte, ws bool) []byte {
	if !ws {
		frame := protocol.AppendHeader(nil, len(auth), 1, protocol.OpAuth, 1)
		return append(frame, auth...)
	}
	frame := appendWSHeader(nil, len(auth)+protocol.HeaderLen)
	mark := len(frame)
	frame = protocol.AppendHeader(frame, len(auth), 1, protocol.OpAuth, 1)
	frame = append(frame, auth...)
	maskWS(frame[mark-4:mark], frame[mark:])
	return frame
}

func (c *conn) checkUpgrade(head []byte, key string, end int) error {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 101")) {
		return fmt.Errorf("upgrade refused: %q", line)
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	want := base64.StdEncoding.EncodeToString(h[:])
	ok := false
	for l := range bytes.SplitSeq(rest, []byte("\r\n")) {
		name, val, found := bytes.Cut(l, []byte(":"))
		if found && bytes.EqualFold(bytes.TrimSpace(name), []byte("Sec-WebSocket-Accept")) {
			ok = string(bytes.TrimSpace(val)) == want
		}
		if found && bytes.EqualFold(bytes.TrimSpace(name), []byte("Sec-WebSocket-Extensions")) && len(bytes.TrimSpace(val)) > 0 {
			return fmt.Errorf("upgrade: server chose extensions %q that were not offered", val)
		}
	}
	if !ok {
		return errors.New("upgrade: missing or wrong Sec-WebSocket-Accept")
	}
	c.r, c.g = end, end
	return nil
}

// readNet reads c.nc into c.buf and processes what arrives, until the
// connection ends or, with untilAuthed, the AuthReply was handled.
func (c *conn) readNet(untilAuthed bool) error {
	for {
		if err := c.makeRoom(); err != nil {
			return err
		}
		n, err := c.nc.Read(c.buf[c.w:])
		if n > 0 {
			c.w += n
			if perr := c.process(time.Now().UnixNano()); perr != nil {
				return perr
			}
		}
		if err != nil {
			return err
		}
		if untilAuthed && c.authed {
			return nil
		}
	}
}

// makeRoom makes space at the end of c.buf: it drops what was consumed,
// moves a partial frame to the front, or grows the buffer for a frame larger
// than it.
func (c *conn) makeRoom() error {
	switch {
	case c.r == c.w:
		c.r, c.g, c.w = 0, 0, 0
	case c.r > 0 && len(c.buf)-c.w < 1024:
		n := copy(c.buf, c.buf[c.r:c.w])
		c.g -= c.r
		c.w, c.r = n, 0
	case c.r == 0 && c.w == len(c.buf):
		if len(c.buf) >= maxReadBuf {
			return errors.New("frame larger than the read buffer limit")
		}
		nb := make([]byte, min(2*len(c.buf), maxReadBuf))
		copy(nb, c.buf[:c.w])
		c.buf = nb
	}
	return nil
}

// keepRest moves the unprocessed bytes of c.buf to c.rem and lets go of
// c.buf (the handshake buffer, or a read loop's shared one).
func (c *conn) keepRest() {
	if n := c.w - c.r; n == 0 {
		if cap(c.rem) > 1024 {
			c.rem = nil
		}
		c.rem = c.rem[:0]
	} else {
		c.rem = append(c.rem[:0], c.buf[c.r:c.w]...)
	}
	c.gOff = c.g - c.r
	c.buf, c.r, c.g, c.w = nil, 0, 0, 0
}

// takeRest puts c.rem at the start of buf and makes buf the parse buffer.
func (c *conn) takeRest(buf []byte) {
	n := copy(buf, c.rem)
	c.buf, c.r, c.g, c.w = buf, 0, c.gOff, n
}

// process admits and parses everything complete in the buffer.
func (c *conn) process(now int64) error {
	if !c.ws {
		c.g = c.w
		return c.parse(now)
	}
	for {
		if c.payLeft > 0 {
			n := min(c.payLeft, int64(c.w-c.g))
			c.g += int(n)
			c.payLeft -= n
			if err := c.parse(now); err != nil {
				return err
			}
		}
		if c.g == c.w || c.payLeft > 0 {
			return nil
		}
		// A WebSocket frame header starts at g.
		raw := c.buf[c.g:c.w]
		if len(raw) < 2 {
			return nil
		}
		b0, b1 := raw[0], raw[1]
		if b1&0x80 != 0 {
			return errors.New("websocket: masked frame from server")
		}
		if b0&0x70 != 0 {
			return errors.New("websocket: RSV bits set (no extension was negotiated)")
		}
		hl, pl := 2, int64(b1&0x7f)
		switch pl {
		case 126:
			if hl = 4; len(raw) < hl {
				return nil
			}
			pl = int64(binary.BigEndian.Uint16(raw[2:]))
		case 127:
			if hl = 10; len(raw) < hl {
				return nil
			}
			pl = int64(binary.BigEndian.Uint64(raw[2:]))
			if pl < 0 || pl > maxPackLen {
				return fmt.Errorf("websocket: frame of %d bytes", pl)
			}
		}
		switch op := b0 & 0x0f; op {
		case wsContinuation, wsBinary, wsText:
			if len(raw) < hl {
				return nil
			}
			c.cut(hl)
			c.payLeft = pl
		case wsClose:
			return errWSClosed
		case wsPing, wsPong:
			if pl > 125 {
				return errors.New("websocket: control frame over 125 bytes")
			}
			if int64(len(raw)) < int64(hl)+pl {
				return nil
			}
			if op == wsPing {
				c.pong(raw[hl : hl+int(pl)])
			}
			c.cut(hl + int(pl))
		default:
			return fmt.Errorf("websocket: unknown opcode %d", op)
		}
	}
}

// cut drops n raw bytes at g: the partial goim bytes in [r, g), if any, move
// up by n so the goim stream stays contiguous.
func (c *conn) cut(n int) {
	if c.r < c.g {
		copy(c.buf[c.r+n:], c.buf[c.r:c.g])
	}
	c.r += n
	c.g += n
}

// parse handles every complete goim frame in [r, g).
func (c *conn) parse(now int64) error {
	for c.g-c.r >= protocol.HeaderLen {
		h := c.buf[c.r:c.g]
		packLen := binary.BigEndian.Uint32(h)
		if hl := binary.BigEndian.Uint16(h[4:]); hl != protocol.HeaderLen {
			return fmt.Errorf("bad frame from server: headerLen %d", hl)
		}
		if packLen < protocol.HeaderLen || packLen > maxPackLen {
			return fmt.Errorf("bad frame from server: packLen %d", packLen)
		}
		op := int32(binary.BigEndian.Uint32(h[8:]))
		if op == protocol.OpRaw {
			c.r += protocol.HeaderLen // flatten: the inner frames follow
			continue
		}
		if int(packLen) > len(h) {
			return nil
		}
		seq := int32(binary.BigEndian.Uint32(h[12:]))
		if err := c.frame(op, seq, h[protocol.HeaderLen:packLen], now); err != nil {
			return err
		}
		c.r += int(packLen)
	}
	return nil
}

// frame handles one frame.
func (c *conn) frame(op, seq int32, body []byte, now int64) error {
	if c.onFrame != nil {
		c.onFrame(op, seq, body)
		return nil
	}
	if !c.authed {
		if op != protocol.OpAuthReply {
			if op == protocol.OpDisconnectReply {
				return fmt.Errorf("%w: server said %q", errAuthRefused, body)
			}
			return fmt.Errorf("%w: got op %d first", errAuthRefused, op)
		}
		c.authed, c.authAt = true, now
		return nil
	}
	switch op {
	case c.p.op:
		c.delivery(body, now)
	case protocol.OpHeartbeatReply:
		c.stripe.hbReplies.Add(1)
	case protocol.OpDisconnectReply:
		c.p.noteError("server disconnected a client: " + strconv.Quote(string(body)))
		return errDisconnect
	default:
		c.stripe.other.Add(1)
	}
	return nil
}

// delivery accounts one push: latency, per-push count, duplicates and order.
func (c *conn) delivery(body []byte, now int64) {
	s, err := parseStamp(body)
	st := c.stripe
	if err != nil {
		st.foreign.Add(1)
		return
	}
	if s.Target != c.target {
		st.misrouted.Add(1)
		return
	}
	switch q := s.StreamSeq; {
	case q > c.hi:
		if d := q - c.hi; d >= 64 {
			c.win = 1
		} else {
			c.win = c.win<<d | 1
		}
		c.hi = q
	case c.hi-q >= 64:
		// Too far behind to tell a duplicate from a late one: counted as
		// out of order (an error) and not as a delivery, which, were it a
		// duplicate, could make up for a loss elsewhere.
		st.stale.Add(1)
		st.outOfOrder.Add(1)
		return
	default:
		bit := uint64(1) << (c.hi - q)
		if c.win&bit != 0 {
			st.dups.Add(1)
			return
		}
		c.win |= bit
		st.outOfOrder.Add(1)
	}
	c.p.countPush(s.PushID)
	st.lat.record(now-s.SentNanos, now)
}

// heartbeat sends an op-2 frame; errors surface in the reader.
// (A connection still in its handshake has no read loop yet and is not
// heartbeaten: the pool lists it only once handed off.)
func (c *conn) heartbeat(timeout time.Duration) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hbSeq++
	b := c.wbuf[:0]
	if c.ws {
		b = appendWSHeader(b, protocol.HeaderLen)
	}
	mark := len(b)
	b = protocol.AppendHeader(b, 0, 1, protocol.OpHeartbeat, c.hbSeq)
	if c.ws {
		maskWS(b[mark-4:mark], b[mark:])
	}
	if c.send(b, timeout) == nil {
		c.stripe.hbSent.Add(1)
	}
}

// pong answers a WebSocket ping (from the reader goroutine).
func (c *conn) pong(payload []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := make([]byte, 0, 6+len(payload))
	b = append(b, 0x80|wsPong, 0x80|byte(len(payload)))
	var m [4]byte
	binary.LittleEndian.PutUint32(m[:], rand.Uint32())
	b = append(b, m[:]...)
	mark := len(b)
	b = append(b, payload...)
	maskWS(m[:], b[mark:])
	_ = c.send(b, c.p.cfg.Timeout)
}

// appendWSHeader appends a masked binary frame header for n payload bytes,
// mask key included (its last 4 bytes).
func appendWSHeader(b []byte, n int) []byte {
	b = append(b, 0x80|wsBinary)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return binary.LittleEndian.AppendUint32(b, rand.Uint32())
}

// maskWS XORs payload with the 4-byte key (RFC 6455 section 5.3).
func maskWS(key, payload []byte) {
	for i := range payload {
		payload[i] ^= key[i&3]
	}
}

// authBody is the op-7 JSON of client i.
func authBody(cfg *Config, i int) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"mid":`...)
	b = strconv.AppendInt(b, cfg.midOf(i), 10)
	b = append(b, `,"key":"","room_id":`...)
	room := ""
	if cfg.Mode == ModeRoom {
		room = roomID(cfg.roomOf(i))
	}
	b = strconv.AppendQuote(b, room)
	b = append(b, `,"platform":"bench","accepts":[`...)
	for j, op := range cfg.Accepts {
		if j > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(op), 10)
	}
	return append(b, "]}"...)
}
