package ws

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport"
)

// wait bounds every blocking step of a test; generous, never a timing
// assertion.
const wait = 10 * time.Second

// testServer is an httptest server on a random loopback port whose handler
// upgrades every request with opts and hands the Conn to the test.
type testServer struct {
	*httptest.Server
	conns chan *Conn
	errs  chan error
}

func newTestServer(t testing.TB, opts AcceptOptions) *testServer {
	t.Helper()
	ts := &testServer{conns: make(chan *Conn, 64), errs: make(chan error, 64)}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, opts)
		if err != nil {
			ts.errs <- err
			return
		}
		ts.conns <- c
	}))
	t.Cleanup(func() {
		ts.Close()
		for {
			select {
			case c := <-ts.conns:
				c.Close()
			default:
				return
			}
		}
	})
	return ts
}

func (ts *testServer) addr() string { return ts.Listener.Addr().String() }

func (ts *testServer) url() string { return "ws://" + ts.addr() + "/sub" }

// accept returns the server side of the next upgraded connection.
func (ts *testServer) accept(t testing.TB) *Conn {
	t.Helper()
	select {
	case c := <-ts.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case err := <-ts.errs:
		t.Fatalf("upgrade failed: %v", err)
	case <-time.After(wait):
		t.Fatal("no connection upgraded")
	}
	return nil
}

// dialCoder connects github.com/coder/websocket to ts and returns both ends.
func dialCoder(t testing.TB, ts *testServer) (*websocket.Conn, *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cc, _, err := websocket.Dial(ctx, ts.url(), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { cc.CloseNow() })
	return cc, ts.accept(t)
}

const handshakeKey = "dGhlIHNhbXBsZSBub25jZQ=="

func upgradeRequest(host string) string {
	return "GET /sub HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + handshakeKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// rawClient is a hand-written WebSocket client over plain TCP.
type rawClient struct {
	net.Conn
	r *bufio.Reader // holds whatever followed the 101 response
}

// dialRaw performs a hand-written handshake, sending extra right behind it
// in the same write, and returns the client and the server's Conn.
func dialRaw(t testing.TB, ts *testServer, extra []byte) (*rawClient, *Conn) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr(), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(wait))
	if _, err := nc.Write(append([]byte(upgradeRequest(ts.addr())), extra...)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(nc)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("read handshake response: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: status %d, want 101", resp.StatusCode)
	}
	_ = nc.SetDeadline(time.Time{})
	return &rawClient{Conn: nc, r: r}, ts.accept(t)
}

// send writes b with a generous deadline.
func (rc *rawClient) send(t testing.TB, b []byte) {
	t.Helper()
	_ = rc.SetWriteDeadline(time.Now().Add(wait))
	if _, err := rc.Write(b); err != nil {
		t.Fatalf("client write: %v", err)
	}
}

// serverFrame is one frame as a client reads it.
type serverFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// readFrame reads one server frame; server frames must be unmasked and
// carry no reserved bits.
func (rc *rawClient) readFrame(t testing.TB) serverFrame {
	t.Helper()
	_ = rc.SetReadDeadline(time.Now().Add(wait))
	f, err := readServerFrame(rc.r)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	return f
}

func readServerFrame(r io.Reader) (serverFrame, error) {
	var h [10]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return serverFrame{}, err
	}
	if h[0]&0x70 != 0 {
		return serverFrame{}, fmt.Errorf("server frame with reserved bits: %#x", h[0])
	}
	if h[1]&0x80 != 0 {
		return serverFrame{}, errors.New("masked server frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, h[2:4]); err != nil {
			return serverFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(h[2:4]))
		if n < 126 {
			return serverFrame{}, fmt.Errorf("non-minimal 16-bit length %d", n)
		}
	case 127:
		if _, err := io.ReadFull(r, h[2:10]); err != nil {
			return serverFrame{}, err
		}
		n = binary.BigEndian.Uint64(h[2:10])
		if n <= 0xffff {
			return serverFrame{}, fmt.Errorf("non-minimal 64-bit length %d", n)
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return serverFrame{}, err
	}
	return serverFrame{fin: h[0]&0x80 != 0, op: h[0] & 0x0f, payload: p}, nil
}

// wsFrame describes a client frame to craft, valid or not.
type wsFrame struct {
	fin      bool
	rsv      byte // bits 0x70
	op       byte
	payload  []byte
	unmasked bool
	lenBytes int    // 0: minimal encoding; 2 or 8: force that extended length
	declared uint64 // with declare, the length to announce instead of len(payload)
	declare  bool
}

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

func (f wsFrame) bytes() []byte {
	b := []byte{f.rsv&0x70 | f.op&0x0f}
	if f.fin {
		b[0] |= 0x80
	}
	n := uint64(len(f.payload))
	if f.declare {
		n = f.declared
	}
	var mbit byte = 0x80
	if f.unmasked {
		mbit = 0
	}
	switch {
	case f.lenBytes == 8 || (f.lenBytes == 0 && n > 0xffff):
		b = append(b, mbit|127)
		b = binary.BigEndian.AppendUint64(b, n)
	case f.lenBytes == 2 || (f.lenBytes == 0 && n > 125):
		b = append(b, mbit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, mbit|byte(n))
	}
	if f.unmasked {
		return append(b, f.payload...)
	}
	b = append(b, testMask[:]...)
	for i, c := range f.payload {
		b = append(b, c^testMask[i&3])
	}
	return b
}

// msg is a complete, masked, single-frame binary client message.
func msg(payload []byte) []byte {
	return wsFrame{fin: true, op: opBinary, payload: payload}.bytes()
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// recorder is a SetControl function that records every control item and
// writes it through Write, as the session's queue would.
type recorder struct {
	c   *Conn
	mu  sync.Mutex
	out []transport.Out
}

func record(c *Conn) *recorder {
	r := &recorder{c: c}
	c.SetControl(r.send)
	return r
}

func (r *recorder) send(o transport.Out) bool {
	r.mu.Lock()
	r.out = append(r.out, transport.Out{Data: append([]byte(nil), o.Data...), Push: o.Push, Raw: o.Raw})
	r.mu.Unlock()
	return r.c.Write([]transport.Out{o}, time.Now().Add(wait)) == nil
}

func (r *recorder) items() []transport.Out {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]transport.Out(nil), r.out...)
}

func readDeadline() time.Time { return time.Now().Add(wait) }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// readMsg reads one message with the coder client, which must be binary.
func readMsg(t testing.TB, cc *websocket.Conn) []byte {
	t.Helper()
	typ, b, err := cc.Read(ctxT(t))
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if typ != websocket.MessageBinary {
		t.Fatalf("message type %v, want binary", typ)
	}
	return b
}

// frames decodes a run of frames, failing the test if it is not one.
func frames(t testing.TB, b []byte) []protocol.Frame {
	t.Helper()
	var fs []protocol.Frame
	if err := protocol.Split(b, func(f protocol.Frame) error { fs = append(fs, f); return nil }); err != nil {
		t.Fatalf("not a run of frames: %v (%x)", err, b)
	}
	return fs
}

// push encodes a business push whose body is n bytes derived from tag.
func push(op int32, tag byte, n int) []byte {
	body := bytes.Repeat([]byte{tag}, n)
	return protocol.EncodePush(op, body)
}

func TestReadFrameFromCoder(t *testing.T) {
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	cases := []struct {
		name string
		typ  websocket.MessageType
		f    protocol.Frame
	}{
		{"binary auth", websocket.MessageBinary, protocol.Frame{Ver: 1, Op: protocol.OpAuth, Seq: 1, Body: []byte(`{"mid":1,"room_id":"live://1000"}`)}},
		{"text heartbeat, empty body", websocket.MessageText, protocol.Frame{Ver: 1, Op: protocol.OpHeartbeat, Seq: 2}},
		{"binary, ver 0 seq 0", websocket.MessageBinary, protocol.Frame{Op: protocol.OpHeartbeat}},
		{"binary, negative seq", websocket.MessageBinary, protocol.Frame{Ver: -1, Op: protocol.OpSendMsg, Seq: -7, Body: []byte("x")}},
		{"binary, 16-bit length", websocket.MessageBinary, protocol.Frame{Ver: 1, Op: protocol.OpSendMsg, Seq: 3, Body: bytes.Repeat([]byte("a"), 1000)}},
		{"binary, body at the limit", websocket.MessageBinary, protocol.Frame{Ver: 1, Op: protocol.OpSendMsg, Seq: 4, Body: bytes.Repeat([]byte("b"), protocol.DefaultMaxBody)}},
		{"text, body at the limit", websocket.MessageText, protocol.Frame{Ver: 1, Op: protocol.OpSendMsg, Seq: 5, Body: bytes.Repeat([]byte("c"), protocol.DefaultMaxBody)}},
	}
	cc, srv := dialCoder(t, ts)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := cc.Write(ctxT(t), tc.typ, tc.f.Append(nil)); err != nil {
				t.Fatal(err)
			}
			got, err := srv.ReadFrame(readDeadline())
			if err != nil {
				t.Fatal(err)
			}
			if got.Ver != tc.f.Ver || got.Op != tc.f.Op || got.Seq != tc.f.Seq || !bytes.Equal(got.Body, tc.f.Body) {
				t.Fatalf("got %v, want %v", got, tc.f)
			}
		})
	}
	if got := srv.Network(); got != "ws" {
		t.Errorf("Network() = %q", got)
	}
	if host, _, err := net.SplitHostPort(srv.RemoteAddr()); err != nil || host != "127.0.0.1" {
		t.Errorf("RemoteAddr() = %q, want the client's 127.0.0.1:port", srv.RemoteAddr())
	}
}

func TestReadFrameFragmentedCoder(t *testing.T) {
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	cc, srv := dialCoder(t, ts)
	body := bytes.Repeat([]byte("0123456789"), 300)
	frame := protocol.Encode(1, protocol.OpSendMsg, 9, body)
	cases := []struct {
		name string
		cuts []int // offsets at which a new Write (a new WebSocket frame) starts
	}{
		{"inside the goim header", []int{7}},
		{"at the header boundary", []int{protocol.HeaderLen}},
		{"one byte pieces of the header", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{"several body pieces", []int{16, 200, 201, 1500, 2999}},
		{"last byte alone", []int{len(frame) - 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, typ := range []websocket.MessageType{websocket.MessageBinary, websocket.MessageText} {
				w, err := cc.Writer(ctxT(t), typ)
				if err != nil {
					t.Fatal(err)
				}
				prev := 0
				for _, cut := range append(tc.cuts, len(frame)) {
					if _, err := w.Write(frame[prev:cut]); err != nil {
						t.Fatal(err)
					}
					prev = cut
				}
				if err := w.Close(); err != nil { // a final empty continuation frame
					t.Fatal(err)
				}
				got, err := srv.ReadFrame(readDeadline())
				if err != nil {
					t.Fatal(err)
				}
				if got.Op != protocol.OpSendMsg || got.Seq != 9 || !bytes.Equal(got.Body, body) {
					t.Fatalf("type %v: got %v", typ, got)
				}
			}
		})
	}
}

// TestWriteCoder checks what the client receives for queued items: each
// reply its own message, each run of pushes one op-9 message, raw items
// unchanged.
func TestWriteCoder(t *testing.T) {
	a := push(1000, 'a', 3)
	b := push(1001, 'b', 0)
	c := push(1002, 'c', 200)
	batch := cat(push(1000, 'x', 1), push(1000, 'y', 2), push(1000, 'z', 3)) // a room batch: one item, three frames
	r1 := protocol.Encode(1, protocol.OpHeartbeatReply, 2, []byte{0, 0, 0, 1})
	r2 := protocol.Encode(1, protocol.OpAuthReply, 1, nil)
	big := protocol.Encode(1, protocol.OpSubReply, 3, bytes.Repeat([]byte("1000,"), 40)) // 16-bit length
	rawMsg := cat([]byte{0x82, byte(len(r2))}, r2)                                       // an already framed message
	pong := []byte{0x8a, 0}                                                              // a control frame the client handles itself
	op9 := func(inner ...[]byte) []byte { return protocol.AppendRaw(nil, cat(inner...)) }

	cases := []struct {
		name  string
		items []transport.Out
		want  [][]byte // the messages' payloads, in order
	}{
		{"one reply", []transport.Out{{Data: r1}}, [][]byte{r1}},
		{"one push", []transport.Out{{Data: a, Push: true}}, [][]byte{op9(a)}},
		{"a push run is one message", []transport.Out{{Data: a, Push: true}, {Data: b, Push: true}, {Data: c, Push: true}}, [][]byte{op9(a, b, c)}},
		{"a batch item", []transport.Out{{Data: batch, Push: true}}, [][]byte{op9(batch)}},
		{"replies break runs and stay out of op 9", []transport.Out{
			{Data: a, Push: true}, {Data: b, Push: true}, {Data: r1}, {Data: c, Push: true}, {Data: r2}, {Data: big},
		}, [][]byte{op9(a, b), r1, op9(c), r2, big}},
		{"raw items go as they are", []transport.Out{
			{Data: a, Push: true}, {Data: rawMsg, Raw: true}, {Data: b, Push: true}, {Data: pong, Raw: true}, {Data: batch, Push: true},
		}, [][]byte{op9(a), r2, op9(b), op9(batch)}},
		{"replies only", []transport.Out{{Data: r1}, {Data: r2}}, [][]byte{r1, r2}},
	}
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	cc, srv := dialCoder(t, ts)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := srv.Write(tc.items, time.Now().Add(wait)); err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.want {
				got := readMsg(t, cc)
				if !bytes.Equal(got, want) {
					t.Fatalf("message %d:\n got %x\nwant %x", i, got, want)
				}
				f, err := protocol.DecodeMessage(got, len(got))
				if err != nil {
					t.Fatal(err)
				}
				if f.Op == protocol.OpRaw {
					for _, in := range frames(t, f.Body) {
						if in.Op < protocol.MinBusinessOp || in.Ver != protocol.PushVer || in.Seq != 0 {
							t.Fatalf("message %d: op 9 holds %v", i, in)
						}
					}
					if f.Ver != protocol.PushVer || f.Seq != 0 {
						t.Fatalf("message %d: op-9 header %v", i, f)
					}
				}
			}
		})
	}
	// The raw items' buffers are the caller's (shared): Write must leave
	// them alone.
	if !bytes.Equal(rawMsg[2:], r2) || !bytes.Equal(a, push(1000, 'a', 3)) {
		t.Fatal("Write modified an item's bytes")
	}
}

// checkBatches reads the op-9 messages that carry pushes and checks they
// are each at most protocol.MaxWSBatch (unless a single frame is larger),
// hold whole frames, keep order, and are not split needlessly.
func checkBatches(t *testing.T, cc *websocket.Conn, pushes []byte, wantMsgs int) {
	t.Helper()
	var got []byte
	var sizes []int
	var firsts []int // size of each message's first inner frame
	for len(got) < len(pushes) {
		m := readMsg(t, cc)
		f, err := protocol.DecodeMessage(m, len(m))
		if err != nil {
			t.Fatalf("message %d: %v", len(sizes), err)
		}
		if f.Op != protocol.OpRaw || f.Ver != protocol.PushVer || f.Seq != 0 {
			t.Fatalf("message %d: not an op-9 push batch: %v", len(sizes), f)
		}
		inner := frames(t, f.Body)
		if len(m) > protocol.MaxWSBatch && len(inner) != 1 {
			t.Fatalf("message %d: %d bytes over %d holding %d frames", len(sizes), len(m), protocol.MaxWSBatch, len(inner))
		}
		sizes = append(sizes, len(m))
		firsts = append(firsts, inner[0].Size())
		got = append(got, f.Body...)
	}
	if !bytes.Equal(got, pushes) {
		t.Fatal("the batches do not hold the pushes in order")
	}
	for i := 0; i+1 < len(sizes); i++ {
		if sizes[i]+firsts[i+1] <= protocol.MaxWSBatch {
			t.Fatalf("message %d (%d bytes) was closed although the next frame (%d bytes) fit", i, sizes[i], firsts[i+1])
		}
	}
	if len(sizes) != wantMsgs {
		t.Fatalf("%d messages (sizes %v), want %d", len(sizes), sizes, wantMsgs)
	}
}

func TestWritePushBatchesSplit(t *testing.T) {
	const room = protocol.MaxWSBatch - protocol.HeaderLen // inner bytes one message holds
	many := func(n, size int) [][]byte {
		var out [][]byte
		for i := range n {
			out = append(out, push(1000+int32(i%7), byte('a'+i%26), size-protocol.HeaderLen))
		}
		return out
	}
	cases := []struct {
		name    string
		items   [][]byte // push items
		single  bool     // send them as ONE item (a large batch), not one item each
		want    int      // messages
		readMax int64
	}{
		{"items that fit exactly", many(2, room/2), false, 1, 0},
		{"one byte over", append(many(2, room/2), push(1000, 'z', 0)), false, 2, 0},
		{"many small items", many(1000, 100), false, 4, 0}, // 327 per message
		{"large items each alone", many(3, 20000), false, 3, 0},
		{"one batch item over the limit", many(100, 1000), true, 4, 0}, // 32 frames per message
		{"one batch item of tiny frames", many(5000, protocol.HeaderLen), true, 3, 0},
		{"a frame over the limit goes alone", [][]byte{push(1000, 'a', 100), push(1000, 'b', protocol.MaxWSBatch), push(1000, 'c', 100)}, false, 3, 1 << 20},
		{"a batch with a frame over the limit", [][]byte{cat(push(1000, 'a', 100), push(1000, 'b', protocol.MaxWSBatch), push(1000, 'c', 100))}, true, 3, 1 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
			cc, srv := dialCoder(t, ts)
			if tc.readMax > 0 {
				cc.SetReadLimit(tc.readMax)
			}
			var items []transport.Out
			if tc.single {
				items = []transport.Out{{Data: cat(tc.items...), Push: true}}
			} else {
				for _, p := range tc.items {
					items = append(items, transport.Out{Data: p, Push: true})
				}
			}
			reply := protocol.Encode(1, protocol.OpHeartbeatReply, 5, []byte{0, 0, 0, 2})
			items = append(items, transport.Out{Data: reply})
			errc := make(chan error, 1)
			go func() { errc <- srv.Write(items, time.Now().Add(wait)) }()
			checkBatches(t, cc, cat(tc.items...), tc.want)
			if got := readMsg(t, cc); !bytes.Equal(got, reply) {
				t.Fatalf("after the batches: %x, want the reply", got)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPingAnsweredThroughControl(t *testing.T) {
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	cc, srv := dialCoder(t, ts)
	rec := record(srv)
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, err := srv.ReadFrame(readDeadline()); err != nil {
				readErr <- err
				srv.Close() // as a session's teardown does: the close reply
				return
			}
		}
	}()
	clientDone := make(chan struct{})
	go func() { // coder needs a reader to see pongs
		defer close(clientDone)
		for {
			if _, _, err := cc.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	for i := 1; i <= 3; i++ {
		if err := cc.Ping(ctxT(t)); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	items := rec.items()
	if len(items) != 3 {
		t.Fatalf("%d control items, want 3 pongs", len(items))
	}
	for i, it := range items {
		want := cat([]byte{0x8a, 1}, []byte(fmt.Sprint(i+1))) // coder pings with a counter
		if !it.Raw || it.Push || !bytes.Equal(it.Data, want) {
			t.Fatalf("control item %d: %+v, want raw %x", i, it, want)
		}
	}
	if err := cc.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("client close: %v", err)
	}
	if err := <-readErr; !errors.Is(err, io.EOF) {
		t.Fatalf("ReadFrame after the close: %v", err)
	}
	<-clientDone
}

func TestCloseFromClient(t *testing.T) {
	cases := []websocket.StatusCode{websocket.StatusNormalClosure, websocket.StatusGoingAway, websocket.StatusCode(4000)}
	for _, code := range cases {
		t.Run(code.String(), func(t *testing.T) {
			ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
			cc, srv := dialCoder(t, ts)
			rec := record(srv)
			readErr := make(chan error, 1)
			go func() {
				_, err := srv.ReadFrame(readDeadline())
				readErr <- err
				srv.Close() // as a session's teardown does: the close reply
			}()
			// coder's Close returns nil only once it has our close reply
			// with the same code.
			if err := cc.Close(code, "a reason the reply does not echo"); err != nil {
				t.Fatalf("client close: %v", err)
			}
			err := <-readErr
			if !errors.Is(err, io.EOF) || !errors.Is(err, ErrClosedByPeer) {
				t.Fatalf("ReadFrame: %v, want ErrClosedByPeer (io.EOF)", err)
			}
			if items := rec.items(); len(items) != 0 {
				t.Fatalf("control items %+v, want none: Close answers a close", items)
			}
		})
	}
}

func TestCloseSendsNormalClosure(t *testing.T) {
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	cc, srv := dialCoder(t, ts)
	a := push(1000, 'a', 5)
	if err := srv.Write([]transport.Out{{Data: a, Push: true}}, time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 { // safe to call repeatedly and concurrently
		wg.Add(1)
		go func() { defer wg.Done(); srv.Close() }()
	}
	wg.Wait()
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := readMsg(t, cc); !bytes.Equal(got, protocol.AppendRaw(nil, a)) {
		t.Fatalf("got %x before the close", got)
	}
	_, _, err := cc.Read(ctxT(t))
	if got := websocket.CloseStatus(err); got != websocket.StatusNormalClosure {
		t.Fatalf("client read after Close: %v (status %v), want StatusNormalClosure", err, got)
	}
	if _, err := srv.ReadFrame(readDeadline()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadFrame after Close: %v", err)
	}
	if err := srv.Write([]transport.Out{{Data: a, Push: true}}, time.Now().Add(wait)); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	if _, err := srv.TryWrite(transport.Out{Data: a, Push: true}); err == nil {
		t.Fatal("TryWrite after Close succeeded")
	}
}

// TestCloseDoesNotCutIntoAFailedWrite: after a write that failed halfway
// through a message, Close must not put a close frame into its middle.
func TestCloseDoesNotCutIntoAFailedWrite(t *testing.T) {
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	rc, srv := dialRaw(t, ts, nil)
	reply := protocol.Encode(1, protocol.OpSendMsgReply, 1, make([]byte, 48<<20)) // far more than the socket buffers hold
	// The client does not read, so the write times out partway.
	deadline := time.Now().Add(200 * time.Millisecond)
	if err := srv.Write([]transport.Out{{Data: reply}}, deadline); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a peer that does not read: %v, want a timeout", err)
	}
	srv.Close()
	want := cat([]byte{0x82, 127}, binary.BigEndian.AppendUint64(nil, uint64(len(reply))), reply)
	_ = rc.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(rc.r)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || len(got) >= len(want) {
		t.Fatalf("client read %d of %d bytes: want a part", len(got), len(want))
	}
	if !bytes.Equal(got, want[:len(got)]) {
		tail := got[max(0, len(got)-8):]
		t.Fatalf("the stream is not a prefix of the message: it ends in %x", tail)
	}
}

// TestConcurrentWrites: Write is safe from several goroutines while the
// reader answers pings through it; every message arrives whole.
func TestConcurrentWrites(t *testing.T) {
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	cc, srv := dialCoder(t, ts)
	record(srv)
	go func() {
		for {
			if _, err := srv.ReadFrame(readDeadline()); err != nil {
				return
			}
		}
	}()
	const writers, each = 4, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			p := push(1000+int32(w), byte('a'+w), 100*w)
			for range each {
				if err := srv.Write([]transport.Out{{Data: p, Push: true}, {Data: p, Push: true}}, time.Now().Add(wait)); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	pings := make(chan error, 1)
	go func() {
		for range 20 {
			if err := cc.Ping(ctxT(t)); err != nil {
				pings <- err
				return
			}
		}
		pings <- nil
	}()
	counts := make([]int, writers)
	for range writers * each {
		m := readMsg(t, cc)
		f, err := protocol.DecodeMessage(m, len(m))
		if err != nil || f.Op != protocol.OpRaw {
			t.Fatalf("message %x: %v", m[:min(len(m), 32)], err)
		}
		inner := frames(t, f.Body)
		if len(inner) != 2 || inner[0].Op != inner[1].Op {
			t.Fatalf("op 9 of %d frames", len(inner))
		}
		counts[inner[0].Op-1000]++
	}
	wg.Wait()
	for w, n := range counts {
		if n != each {
			t.Fatalf("writer %d: %d messages, want %d", w, n, each)
		}
	}
	// Reading stops here, so the last pongs are seen by the reader
	// goroutine of Ping only if a Read is running: keep one going.
	go func() {
		for {
			if _, _, err := cc.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	if err := <-pings; err != nil {
		t.Fatal(err)
	}
}

func TestAcceptWithoutHijacker(t *testing.T) {
	r := httptest.NewRequest("GET", "http://conn.test/sub", nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Key", handshakeKey)
	r.Header.Set("Sec-WebSocket-Version", "13")
	w := httptest.NewRecorder() // not an http.Hijacker
	c, err := Accept(w, r, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	if c != nil || !errors.Is(err, ErrHandshake) {
		t.Fatalf("Accept: %v, %v", c, err)
	}
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
}
