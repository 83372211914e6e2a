package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
)

type gotFrame struct {
	op, seq int32
	body    string
}

// wsServerFrame encodes an unmasked server-to-client WebSocket frame.
func wsServerFrame(fin bool, opcode byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// streams returns a TCP and a WebSocket byte stream carrying the same goim
// frames, and those frames.
func streams() (tcp, ws []byte, want []gotFrame) {
	big := bytes.Repeat([]byte("B"), 6000)   // larger than a connection's handshake buffer
	huge := bytes.Repeat([]byte("H"), 70000) // a 64-bit WebSocket length, and over the loop buffer
	msgs := [][]byte{
		protocol.Encode(1, protocol.OpAuthReply, 1, nil),
		protocol.EncodePush(1000, []byte("first")),
		protocol.Encode(1, protocol.OpHeartbeatReply, 2, []byte{0, 0, 0, 7}),
	}
	var batch []byte
	for i := range 3 {
		batch = append(batch, protocol.EncodePush(1000, fmt.Appendf(nil, "in-batch-%d", i))...)
	}
	msgs = append(msgs, protocol.AppendRaw(nil, batch), protocol.EncodePush(1001, big), protocol.EncodePush(1002, huge))
	want = []gotFrame{
		{protocol.OpAuthReply, 1, ""}, {1000, 0, "first"}, {protocol.OpHeartbeatReply, 2, "\x00\x00\x00\x07"},
		{1000, 0, "in-batch-0"}, {1000, 0, "in-batch-1"}, {1000, 0, "in-batch-2"},
		{1001, 0, string(big)}, {1002, 0, string(huge)},
	}
	for i, m := range msgs {
		tcp = append(tcp, m...)
		switch i {
		case 2: // a ping before it, and the message in two fragments split inside the header
			ws = append(ws, wsServerFrame(true, wsPing, []byte("pp"))...)
			ws = append(ws, wsServerFrame(false, wsBinary, m[:5])...)
			ws = append(ws, wsServerFrame(true, wsContinuation, m[5:])...)
		case 3: // fragments split inside an inner frame, a pong between them
			ws = append(ws, wsServerFrame(false, wsBinary, m[:30])...)
			ws = append(ws, wsServerFrame(true, wsPong, nil)...)
			ws = append(ws, wsServerFrame(true, wsContinuation, m[30:])...)
		default:
			ws = append(ws, wsServerFrame(true, wsBinary, m)...)
		}
	}
	return tcp, ws, want
}

func testConn(ws bool, got *[]gotFrame) *conn {
	c := &conn{fd: -1, ws: ws, p: &pool{cfg: Config{Timeout: time.Second}}}
	c.onFrame = func(op, seq int32, body []byte) {
		*got = append(*got, gotFrame{op, seq, string(body)})
	}
	return c
}

// chunkConn serves reads from fixed chunks, then EOF; writes are discarded.
type chunkConn struct {
	net.Conn
	chunks [][]byte
}

func (c *chunkConn) Read(b []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}
func (c *chunkConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }

func split(b []byte, cuts []int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		out = append(out, b[prev:c])
		prev = c
	}
	return append(out, b[prev:])
}

func cutsFor(n int, r *rand.Rand) [][]int {
	var all [][]int
	for _, at := range []int{1, 2, 15, 16, 17, 20, 100, n / 2, n - 70001, n - 1} {
		if at > 0 && at < n {
			all = append(all, []int{at})
		}
	}
	for range 30 {
		var cuts []int
		for p := 0; ; {
			p += 1 + r.IntN(300)
			if p >= n {
				break
			}
			cuts = append(cuts, p)
		}
		all = append(all, cuts)
	}
	return all
}

// Both receive paths (a connection's own buffer during the handshake, and a
// read loop's shared buffer with the leftover kept in rem) must produce the
// same frames however the stream is cut into reads.
func TestParseAnySplit(t *testing.T) {
	tcp, ws, want := streams()
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name   string
		ws     bool
		stream []byte
	}{{"tcp", false, tcp}, {"ws", true, ws}} {
		for _, cuts := range cutsFor(len(tc.stream), r) {
			chunks := split(tc.stream, cuts)
			var got []gotFrame
			c := testConn(tc.ws, &got)
			c.nc = &chunkConn{chunks: slices.Clone(chunks)}
			c.buf = make([]byte, readBufSize)
			if err := c.readNet(false); err != io.EOF {
				t.Fatalf("%s cuts %v: readNet: %v", tc.name, cuts, err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s cuts %v: readNet got %d frames %.80v, want %d", tc.name, cuts, len(got), got, len(want))
			}

			got = nil
			c = testConn(tc.ws, &got)
			c.nc = &chunkConn{}
			shared := make([]byte, loopBufSizeForTest)
			for _, ch := range chunks {
				for len(ch) > 0 {
					if len(c.rem) > len(shared)/2 {
						shared = make([]byte, 2*len(shared)+2*len(c.rem))
					}
					c.takeRest(shared)
					n := copy(c.buf[c.w:], ch)
					ch = ch[n:]
					c.w += n
					if err := c.process(0); err != nil {
						t.Fatalf("%s cuts %v: process: %v", tc.name, cuts, err)
					}
					c.keepRest()
				}
			}
			if !slices.Equal(got, want) || len(c.rem) != 0 || c.payLeft != 0 {
				t.Fatalf("%s cuts %v: shared buffer got %d frames, rem %d, payLeft %d", tc.name, cuts, len(got), len(c.rem), c.payLeft)
			}
		}
	}
}

// loopBufSizeForTest is small so that the shared-buffer path grows too.
const loopBufSizeForTest = 1024

func TestParseRejectsBadFrames(t *testing.T) {
	bad := map[string][]byte{
		"headerLen":   {0, 0, 0, 20, 0, 15, 0, 1, 0, 0, 3, 232, 0, 0, 0, 0, 1, 2, 3, 4},
		"short pack":  {0, 0, 0, 10, 0, 16, 0, 1, 0, 0, 3, 232, 0, 0, 0, 0},
		"huge pack":   {0x7f, 0, 0, 0, 0, 16, 0, 1, 0, 0, 3, 232, 0, 0, 0, 0},
		"masked ws":   append([]byte{0x82, 0x80 | 16, 1, 2, 3, 4}, make([]byte, 16)...),
		"rsv ws":      append([]byte{0xc2, 16}, make([]byte, 16)...),
		"ws close":    {0x88, 0},
		"ws opcode 3": {0x83, 0},
	}
	for name, b := range bad {
		var got []gotFrame
		c := testConn(strings.Contains(name, "ws"), &got)
		c.nc = &chunkConn{chunks: [][]byte{b}}
		c.buf = make([]byte, readBufSize)
		if err := c.readNet(false); err == nil || err == io.EOF {
			t.Errorf("%s: readNet returned %v", name, err)
		}
	}
}

func TestDeliveryAccounting(t *testing.T) {
	p := &pool{op: 1000, perPush: make([]atomic.Int32, 10)}
	c := &conn{p: p, stripe: &p.stripes[0], target: 5}
	push := func(id, seq, target uint32) {
		c.delivery(newMessage(100, Stamp{SentNanos: 1000, PushID: id, StreamSeq: seq, Target: target}), 3000)
	}
	push(0, 1, 5)
	push(1, 2, 5)
	push(1, 2, 5) // duplicate
	push(3, 4, 5) // 3 skipped for now
	push(2, 3, 5) // late: out of order
	push(2, 3, 5) // duplicate of the late one
	push(4, 5, 6) // another target
	c.delivery([]byte("not a bench message"), 3000)
	push(77, 6, 5) // push id beyond the schedule
	s := &p.stripes[0]
	if n := s.lat.n.Load(); n != 5 {
		t.Errorf("deliveries %d, want 5", n)
	}
	if s.dups.Load() != 2 || s.outOfOrder.Load() != 1 || s.misrouted.Load() != 1 || s.foreign.Load() != 2 {
		t.Errorf("dups %d ooo %d misrouted %d foreign %d", s.dups.Load(), s.outOfOrder.Load(), s.misrouted.Load(), s.foreign.Load())
	}
	for id, want := range []int32{1, 1, 1, 1, 0} {
		if got := p.perPush[id].Load(); got != want {
			t.Errorf("push %d counted %d times, want %d", id, got, want)
		}
	}
	if max := s.lat.max.Load(); max != 2000 {
		t.Errorf("latency %d, want 2000", max)
	}
	// A jump of 64 or more resets the window; then an old one is stale.
	push(5, 200, 5)
	push(6, 100, 5)
	if s.stale.Load() != 1 {
		t.Errorf("stale %d", s.stale.Load())
	}
	// Perhaps a duplicate: not a delivery, which could make up for a loss.
	if got := p.perPush[6].Load(); got != 0 {
		t.Errorf("stale push counted %d times, want 0", got)
	}
	if n := s.lat.n.Load(); n != 6 {
		t.Errorf("deliveries %d, want 6", n)
	}
}

func TestReceivePathDoesNotAllocate(t *testing.T) {
	p := &pool{op: 1000, perPush: make([]atomic.Int32, 1)}
	c := &conn{p: p, stripe: &p.stripes[0], ws: true, authed: true}
	frame := protocol.EncodePush(1000, newMessage(100, Stamp{Target: 0, StreamSeq: 1}))
	msg := wsServerFrame(true, wsBinary, protocol.AppendRaw(nil, bytes.Repeat(frame, 5)))
	shared := make([]byte, 4096)
	allocs := testing.AllocsPerRun(200, func() {
		c.takeRest(shared)
		c.w += copy(c.buf[c.w:], msg)
		if err := c.process(1); err != nil {
			t.Fatal(err)
		}
		c.keepRest()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per read", allocs)
	}
}

func TestAuthBody(t *testing.T) {
	cfg := Default()
	cfg.Rooms = 10
	cfg.Accepts = []int32{1000, 1001}
	if got, want := string(authBody(&cfg, 23)), `{"mid":24,"key":"","room_id":"live://bench-3","platform":"bench","accepts":[1000,1001]}`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	a, err := protocol.ParseAuth(authBody(&cfg, 23))
	if err != nil || a.Mid != 24 || a.RoomID != "live://bench-3" {
		t.Fatalf("%+v %v", a, err)
	}
	cfg.Mode = ModeMid
	if a, _ := protocol.ParseAuth(authBody(&cfg, 0)); a.RoomID != "" || a.Mid != 1 {
		t.Fatalf("mid mode: %+v", a)
	}
}
