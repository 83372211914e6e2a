package ws

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport"
)

// Crafted client frames over a plain TCP connection after a hand-written
// handshake.

func TestReadFrameViolations(t *testing.T) {
	hb := protocol.Encode(1, protocol.OpHeartbeat, 1, nil)
	half := func(fin bool, op byte, p []byte) []byte { return wsFrame{fin: fin, op: op, payload: p}.bytes() }
	overLimit := protocol.DefaultMaxBody + protocol.HeaderLen + 1
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"unmasked client frame", wsFrame{fin: true, op: opBinary, payload: hb, unmasked: true}.bytes(), ErrProtocol},
		{"unmasked ping", wsFrame{fin: true, op: opPing, unmasked: true}.bytes(), ErrProtocol},
		{"RSV1 set", wsFrame{fin: true, rsv: 0x40, op: opBinary, payload: hb}.bytes(), ErrProtocol},
		{"RSV2 set", wsFrame{fin: true, rsv: 0x20, op: opBinary, payload: hb}.bytes(), ErrProtocol},
		{"RSV3 set", wsFrame{fin: true, rsv: 0x10, op: opBinary, payload: hb}.bytes(), ErrProtocol},
		{"RSV on a continuation", cat(half(false, opBinary, hb[:4]), wsFrame{fin: true, rsv: 0x40, payload: hb[4:]}.bytes()), ErrProtocol},
		{"ping over 125 bytes", half(true, opPing, make([]byte, 126)), ErrProtocol},
		{"close over 125 bytes", half(true, opClose, make([]byte, 200)), ErrProtocol},
		{"ping with a 64-bit length over 125", wsFrame{fin: true, op: opPing, declare: true, declared: 1 << 40}.bytes(), ErrProtocol},
		{"fragmented ping", half(false, opPing, []byte("p")), ErrProtocol},
		{"fragmented pong", half(false, opPong, nil), ErrProtocol},
		{"fragmented close", half(false, opClose, []byte{3, 232}), ErrProtocol},
		{"continuation without a message", half(true, opContinuation, hb), ErrProtocol},
		{"unfinished continuation without a message", half(false, opContinuation, hb), ErrProtocol},
		{"new binary message inside a fragmented one", cat(half(false, opBinary, hb[:8]), half(true, opBinary, hb[8:])), ErrProtocol},
		{"new text message inside a fragmented one", cat(half(false, opText, hb[:8]), half(true, opText, hb[8:])), ErrProtocol},
		{"reserved data opcode 3", half(true, 0x3, hb), ErrProtocol},
		{"reserved data opcode 7", half(true, 0x7, hb), ErrProtocol},
		{"reserved control opcode 0xb", half(true, 0xb, nil), ErrProtocol},
		{"reserved control opcode 0xf", half(true, 0xf, []byte("x")), ErrProtocol},
		{"message over the limit", half(true, opBinary, make([]byte, overLimit)), protocol.ErrTooLarge},
		{"fragments adding up over the limit", cat(half(false, opBinary, make([]byte, 4000)), half(false, opContinuation, make([]byte, 100)), half(true, opContinuation, make([]byte, overLimit-4100))), protocol.ErrTooLarge},
		{"64-bit length with the top bit set", wsFrame{fin: true, op: opBinary, declare: true, declared: 1 << 63}.bytes(), ErrProtocol},
		{"64-bit length of 2^64-1", wsFrame{fin: true, op: opBinary, declare: true, declared: ^uint64(0)}.bytes(), ErrProtocol},
		{"64-bit length of 2^63-1", wsFrame{fin: true, op: opBinary, declare: true, declared: 1<<63 - 1}.bytes(), protocol.ErrTooLarge},
		{"packLen under the message length", half(true, opBinary, cat(hb, []byte("tail"))), protocol.ErrLenMismatch},
		{"packLen over the message length", half(true, opBinary, protocol.Encode(1, protocol.OpSendMsg, 1, []byte("body"))[:18]), protocol.ErrLenMismatch},
		{"two frames in one message", half(true, opBinary, cat(hb, hb)), protocol.ErrLenMismatch},
		{"fragmented message whose packLen differs", cat(half(false, opBinary, hb), half(true, opContinuation, []byte{0})), protocol.ErrLenMismatch},
		{"empty message", half(true, opBinary, nil), protocol.ErrPackLen},
		{"message shorter than a header", half(true, opBinary, hb[:15]), protocol.ErrPackLen},
		{"headerLen not 16", half(true, opBinary, func() []byte { b := bytes.Clone(hb); b[5] = 20; return b }()), protocol.ErrHeaderLen},
		{"goim body over the limit", half(true, opBinary, protocol.Encode(1, protocol.OpSendMsg, 1, make([]byte, protocol.DefaultMaxBody+1))), protocol.ErrTooLarge},
	}
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc, srv := dialRaw(t, ts, nil)
			go func() { _, _ = rc.Write(tc.in) }() // may block once the server stops reading
			_, err := srv.ReadFrame(readDeadline())
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadFrame: %v, want %v", err, tc.want)
			}
			// Whatever the violation left unread, the close frame and then
			// end of stream reach the client: no reset.
			srv.Close()
			if f := rc.readFrame(t); f.op != opClose || len(f.payload) < 2 {
				t.Fatalf("after the violation: frame %+v, want a close with a code", f)
			}
			if rest, err := io.ReadAll(rc.r); err != nil || len(rest) > 0 {
				t.Fatalf("after the close frame: %q, %v; want end of stream", rest, err)
			}
		})
	}
}

// TestReadFrameTooLargeReadsNoPayload: the limit is enforced on the frame
// header, before any of the payload is read (none is ever sent here).
func TestReadFrameTooLargeReadsNoPayload(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
	}{
		{"16-bit length", wsFrame{fin: true, op: opBinary, declare: true, declared: protocol.DefaultMaxBody + protocol.HeaderLen + 1}.bytes()},
		{"64-bit length", wsFrame{fin: true, op: opBinary, declare: true, declared: 1 << 40}.bytes()},
		{"second fragment", cat(msgFragment(false, opBinary, make([]byte, 100)), wsFrame{op: opContinuation, declare: true, declared: protocol.DefaultMaxBody}.bytes())},
	}
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc, srv := dialRaw(t, ts, nil)
			rc.send(t, tc.in)
			_, err := srv.ReadFrame(readDeadline())
			if !errors.Is(err, protocol.ErrTooLarge) {
				t.Fatalf("ReadFrame: %v, want protocol.ErrTooLarge", err)
			}
		})
	}
}

func msgFragment(fin bool, op byte, p []byte) []byte {
	return wsFrame{fin: fin, op: op, payload: p}.bytes()
}

// TestReadFrameAccepts covers valid encodings: extended lengths (minimal or
// not), fragments of every size, control frames between fragments.
func TestReadFrameAccepts(t *testing.T) {
	small := protocol.Encode(1, protocol.OpSendMsg, 7, []byte("hello"))
	mid := protocol.Encode(1, protocol.OpSendMsg, 7, bytes.Repeat([]byte("m"), 300))
	atLimit := protocol.Encode(1, protocol.OpSendMsg, 7, bytes.Repeat([]byte("L"), protocol.DefaultMaxBody))
	huge := protocol.Encode(1, protocol.OpSendMsg, 7, bytes.Repeat([]byte("H"), 70000)) // needs a 64-bit length
	cases := []struct {
		name    string
		maxBody int
		in      []byte
		want    []byte   // the goim frame ReadFrame must return
		pongs   [][]byte // control items expected meanwhile
	}{
		{"7-bit length", 0, msg(small), small, nil},
		{"16-bit length", 0, msg(mid), mid, nil},
		{"16-bit length at the limit", 0, msg(atLimit), atLimit, nil},
		{"64-bit length", 80000, msg(huge), huge, nil},
		{"non-minimal 16-bit length", 0, wsFrame{fin: true, op: opBinary, payload: small, lenBytes: 2}.bytes(), small, nil},
		{"non-minimal 64-bit length", 0, wsFrame{fin: true, op: opBinary, payload: mid, lenBytes: 8}.bytes(), mid, nil},
		{"text message", 0, wsFrame{fin: true, op: opText, payload: small}.bytes(), small, nil},
		{"fragments with mixed length encodings", 80000, cat(
			wsFrame{op: opBinary, payload: huge[:10]}.bytes(),
			wsFrame{op: opContinuation, payload: huge[10:69000]}.bytes(),
			wsFrame{op: opContinuation, payload: huge[69000:69800], lenBytes: 8}.bytes(),
			wsFrame{fin: true, op: opContinuation, payload: huge[69800:]}.bytes(),
		), huge, nil},
		{"empty fragments", 0, cat(
			msgFragment(false, opBinary, nil), msgFragment(false, opContinuation, small), msgFragment(false, opContinuation, nil), msgFragment(true, opContinuation, nil),
		), small, nil},
		{"ping and pong between fragments", 0, cat(
			msgFragment(false, opBinary, mid[:3]),
			msgFragment(true, opPing, []byte("are you there")),
			msgFragment(false, opContinuation, mid[3:100]),
			msgFragment(true, opPong, []byte("unsolicited")),
			msgFragment(true, opPing, nil),
			msgFragment(true, opContinuation, mid[100:]),
		), mid, [][]byte{cat([]byte{0x8a, 13}, []byte("are you there")), {0x8a, 0}}},
		{"ping of 125 bytes before the message", 0, cat(msgFragment(true, opPing, bytes.Repeat([]byte{0xfe}, 125)), msg(small)),
			small, [][]byte{cat([]byte{0x8a, 125}, bytes.Repeat([]byte{0xfe}, 125))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			maxBody := tc.maxBody
			if maxBody == 0 {
				maxBody = protocol.DefaultMaxBody
			}
			ts := newTestServer(t, AcceptOptions{MaxBody: maxBody})
			rc, srv := dialRaw(t, ts, nil)
			rec := record(srv)
			go func() { _, _ = rc.Write(tc.in) }()
			f, err := srv.ReadFrame(readDeadline())
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Append(nil); !bytes.Equal(got, tc.want) {
				t.Fatalf("got %d bytes %v, want %d", len(got), f.Op, len(tc.want))
			}
			items := rec.items()
			if len(items) != len(tc.pongs) {
				t.Fatalf("%d control items, want %d", len(items), len(tc.pongs))
			}
			for i, it := range items {
				if !it.Raw || !bytes.Equal(it.Data, tc.pongs[i]) {
					t.Fatalf("control item %d: %x, want %x", i, it.Data, tc.pongs[i])
				}
				// The pong went out through Write: the client reads it.
				sf := rc.readFrame(t)
				if !sf.fin || sf.op != opPong || !bytes.Equal(sf.payload, tc.pongs[i][2:]) {
					t.Fatalf("client read %+v, want the pong", sf)
				}
			}
		})
	}
}

// TestReadFrameBodyValidUntilNextCall: each call returns its own message;
// several messages in one TCP segment are read one by one.
func TestReadFrameSequence(t *testing.T) {
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	rc, srv := dialRaw(t, ts, nil)
	var in []byte
	var want [][]byte
	for i := range 50 {
		f := protocol.Encode(1, protocol.OpSendMsg, int32(i), bytes.Repeat([]byte{byte(i)}, i*37))
		want = append(want, f)
		if i%3 == 0 {
			in = append(in, cat(msgFragment(false, opBinary, f[:5]), msgFragment(true, opContinuation, f[5:]))...)
		} else {
			in = append(in, msg(f)...)
		}
	}
	rc.send(t, in)
	for i, w := range want {
		f, err := srv.ReadFrame(readDeadline())
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got := f.Append(nil); !bytes.Equal(got, w) {
			t.Fatalf("frame %d: got %v", i, f)
		}
	}
}

// TestReadFrameEndOfStream: a client that goes away yields an error the
// hub classifies as end of stream, never a protocol violation.
func TestReadFrameEndOfStream(t *testing.T) {
	hb := protocol.Encode(1, protocol.OpHeartbeat, 1, nil)
	whole := msg(hb)
	cases := []struct {
		name string
		in   []byte
	}{
		{"between messages", nil},
		{"inside the frame header", whole[:1]},
		{"inside the mask", whole[:4]},
		{"inside the payload", whole[:10]},
		{"between fragments", msgFragment(false, opBinary, hb[:3])},
		{"inside a ping", msgFragment(true, opPing, []byte("ping"))[:7]},
	}
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc, srv := dialRaw(t, ts, nil)
			rc.send(t, tc.in)
			rc.Close()
			_, err := srv.ReadFrame(readDeadline())
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadFrame: %v, want end of stream", err)
			}
			if errors.Is(err, ErrProtocol) {
				t.Fatalf("ReadFrame: %v is not a protocol violation", err)
			}
		})
	}
}

func TestReadFrameDeadline(t *testing.T) {
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	rc, srv := dialRaw(t, ts, nil)
	rc.send(t, msgFragment(false, opBinary, []byte{0, 0})) // a message that never ends
	_, err := srv.ReadFrame(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("ReadFrame past its deadline: %v, want a timeout", err)
	}
}

// TestReadFrameNoControl: without SetControl pings are still consumed.
func TestReadFrameNoControl(t *testing.T) {
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	rc, srv := dialRaw(t, ts, nil)
	hb := protocol.Encode(1, protocol.OpHeartbeat, 1, nil)
	rc.send(t, cat(msgFragment(true, opPing, []byte("x")), msg(hb), msgFragment(true, opClose, []byte{3, 232})))
	f, err := srv.ReadFrame(readDeadline())
	if err != nil || f.Op != protocol.OpHeartbeat {
		t.Fatalf("got %v, %v", f, err)
	}
	if _, err := srv.ReadFrame(readDeadline()); !errors.Is(err, ErrClosedByPeer) {
		t.Fatalf("after the close frame: %v", err)
	}
}

// TestStopWhenIdle: after StopWhenIdle a ping with nothing behind it ends
// ReadFrame with transport.ErrIdle (answered first); a ping followed by a
// message, or one between the fragments of a message, does not.
func TestStopWhenIdle(t *testing.T) {
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	rc, srv := dialRaw(t, ts, nil)
	srv.StopWhenIdle()
	rec := record(srv)
	hb := protocol.Encode(1, protocol.OpHeartbeat, 1, nil)

	rc.send(t, msgFragment(true, opPing, []byte("a")))
	if _, err := srv.ReadFrame(readDeadline()); !errors.Is(err, transport.ErrIdle) {
		t.Fatalf("lone ping: %v, want ErrIdle", err)
	}
	if items := rec.items(); len(items) != 1 || !bytes.Equal(items[0].Data, []byte{0x8a, 1, 'a'}) {
		t.Fatalf("pong items %+v", items)
	}

	rc.send(t, cat(msgFragment(true, opPing, []byte("b")), msg(hb)))
	if f, err := srv.ReadFrame(readDeadline()); err != nil || f.Op != protocol.OpHeartbeat {
		t.Fatalf("ping then a message: %v, %v", f, err)
	}

	rc.send(t, cat(msgFragment(false, opBinary, hb[:4]), msgFragment(true, opPing, []byte("c"))))
	time.Sleep(20 * time.Millisecond) // the rest of the message comes later
	rc.send(t, msgFragment(true, opContinuation, hb[4:]))
	if f, err := srv.ReadFrame(readDeadline()); err != nil || f.Op != protocol.OpHeartbeat {
		t.Fatalf("ping inside a message: %v, %v", f, err)
	}
}

// TestCloseReplyPayload: Close answers a client's close frame with one
// close frame: the client's status code echoed without its reason, none
// when the client sent none, and a protocol error for a payload no peer may
// send (RFC 6455 sections 5.5.1, 7.4 and 8.1).
func TestCloseReplyPayload(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
		err     error
		reply   []byte // the status code and what follows
	}{
		{"no payload", nil, ErrClosedByPeer, nil},
		{"code only", []byte{0x03, 0xe8}, ErrClosedByPeer, []byte{0x03, 0xe8}},
		{"code and reason", append([]byte{0x03, 0xe9}, "going away"...), ErrClosedByPeer, []byte{0x03, 0xe9}},
		{"application code", []byte{0x0f, 0xa0}, ErrClosedByPeer, []byte{0x0f, 0xa0}},
		{"one byte", []byte{0x03}, ErrProtocol, append([]byte{0x03, 0xea}, "close frame of 1 byte"...)},
		{"1005 is not for the wire", []byte{0x03, 0xed}, ErrProtocol, append([]byte{0x03, 0xea}, "invalid close code 1005"...)},
		{"999", []byte{0x03, 0xe7}, ErrProtocol, append([]byte{0x03, 0xea}, "invalid close code 999"...)},
		{"reason not UTF-8", []byte{0x03, 0xe8, 0xff}, ErrProtocol, append([]byte{0x03, 0xef}, "close reason not UTF-8"...)},
	}
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc, srv := dialRaw(t, ts, nil)
			rec := record(srv)
			rc.send(t, msgFragment(true, opClose, tc.payload))
			if _, err := srv.ReadFrame(readDeadline()); !errors.Is(err, tc.err) {
				t.Fatalf("ReadFrame: %v, want %v", err, tc.err)
			}
			if items := rec.items(); len(items) != 0 {
				t.Fatalf("control items %+v, want none: Close answers", items)
			}
			srv.Close()
			if sf := rc.readFrame(t); !sf.fin || sf.op != opClose || !bytes.Equal(sf.payload, tc.reply) {
				t.Fatalf("client read %+v, want a close frame with %q", sf, tc.reply)
			}
			if _, err := rc.r.ReadByte(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the close frame: %v, want EOF (one close frame only)", err)
			}
		})
	}
}

// countingConn counts the reads that reach the connection.
type countingConn struct {
	net.Conn
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.Conn.Read(p)
}

// TestReadAhead: a heartbeat's WebSocket frame (header, mask and payload)
// is read with one read of the socket, and bytes read ahead of one frame
// start the next.
func TestReadAhead(t *testing.T) {
	hb := protocol.Encode(1, protocol.OpHeartbeat, 7, nil)
	auth := protocol.Encode(1, protocol.OpAuth, 1, []byte(`{"mid":1,"room_id":"live://1000","accepts":[1000]}`))
	cases := []struct {
		name  string
		in    []byte
		want  [][]byte // frames, in order
		reads int      // reads that reach the socket for all of them
	}{
		{"one heartbeat", msg(hb), [][]byte{hb}, 1},
		{"two heartbeats in one write", cat(msg(hb), msg(hb)), [][]byte{hb, hb}, 2},
		{"an auth frame", msg(auth), [][]byte{auth}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			cc := &countingConn{Conn: a}
			c := newConn(cc, protocol.DefaultMaxBody, "pipe", nil)
			defer c.Close()
			go func() { _, _ = b.Write(tc.in) }()
			for i, want := range tc.want {
				f, err := c.ReadFrame(time.Now().Add(wait))
				if err != nil {
					t.Fatal(err)
				}
				if got := f.Append(nil); !bytes.Equal(got, want) {
					t.Fatalf("frame %d: %x, want %x", i, got, want)
				}
			}
			if cc.reads != tc.reads {
				t.Fatalf("%d reads of the socket, want %d", cc.reads, tc.reads)
			}
		})
	}
}
