package cloud

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/store"
	"github.com/imcloud/imcloud/transport"
	"github.com/imcloud/imcloud/transport/client"
)

// rawHeader is a frame header with arbitrary fields (for protocol errors).
func rawHeader(packLen uint32, headerLen uint16, op int32) []byte {
	b := make([]byte, protocol.HeaderLen)
	binary.BigEndian.PutUint32(b[0:], packLen)
	binary.BigEndian.PutUint16(b[4:], headerLen)
	binary.BigEndian.PutUint16(b[6:], 1)
	binary.BigEndian.PutUint32(b[8:], uint32(op))
	binary.BigEndian.PutUint32(b[12:], 1)
	return b
}

// TestHandshakeTimeout: a connection that sends nothing is closed, without
// a reply, once the handshake timeout passes; it never becomes a session.
func TestHandshakeTimeout(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.HandshakeTimeout = 100 * time.Millisecond })
	addr := th.startTCP(t)
	c := dialRaw(t, addr)
	if fs := readToClose(t, c); len(fs) != 0 {
		t.Fatalf("silent connection got %v before closing", fs)
	}
	if n, _ := th.Online(); n != 0 {
		t.Errorf("Online conns = %d", n)
	}
	for _, kind := range []string{"timeout", "eof"} {
		if v := metricValue(t, th.metrics.ProtocolErrs.WithLabelValues(kind)); v != 0 {
			t.Errorf("a handshake %s counted as a protocol error", kind)
		}
	}
	// Fake transport too: the deadline handed to ReadFrame is the timeout.
	f := newFakeConn("")
	th.serve(f)
	eventually(t, "fake silent connection closed", f.isClosed)
	if fs := f.frames(t); len(fs) != 0 {
		t.Errorf("fake silent connection got %v", fs)
	}
}

// TestHeartbeatTimeout: an authenticated session that stops sending gets
// op 6 "heartbeat timeout", is closed, and is unbound; a heartbeat before
// the timeout is answered with the room count and echoes ver and seq.
func TestHeartbeatTimeout(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.HeartbeatTimeout = 300 * time.Millisecond })
	addr := th.startTCP(t)
	c := dialClient(t, addr, protocol.Auth{Mid: 5, Key: "hb", RoomID: "live://1"})
	if err := c.Send(3, protocol.OpHeartbeat, 41, nil); err != nil {
		t.Fatal(err)
	}
	f := nextFrame(t, c)
	if n := heartbeatCountOf(t, f); n != 1 || f.Seq != 41 || f.Ver != 3 {
		t.Fatalf("heartbeat reply %v: count %d, want count 1, seq 41, ver 3", f, n)
	}
	fs := readToClose(t, c)
	if len(fs) != 1 || fs[0].Op != protocol.OpDisconnectReply || string(fs[0].Body) != "heartbeat timeout" {
		t.Fatalf("idle session got %v, want op 6 \"heartbeat timeout\" then close", fs)
	}
	eventually(t, "unbound", func() bool { return len(th.keysOf(t, 5)) == 0 })
	if v := metricValue(t, th.metrics.Disconnects.WithLabelValues("timeout")); v != 1 {
		t.Errorf("timeout disconnects = %v", v)
	}
}

// TestBeforeAuth: what a connection may send first.
func TestBeforeAuth(t *testing.T) {
	tests := []struct {
		name     string
		send     []byte
		wantBye  string // op 6 body before the close; "" means no frame at all
		wantKind string // protocol error counted
	}{
		{"heartbeat first", protocol.Encode(1, protocol.OpHeartbeat, 1, nil), "auth required", "before_auth"},
		{"push op first", protocol.Encode(1, 1000, 1, []byte("x")), "auth required", "before_auth"},
		{"auth not json", protocol.Encode(1, protocol.OpAuth, 1, []byte("{mid:")), "", "bad_auth"},
		{"auth room too long", protocol.Encode(1, protocol.OpAuth, 1, []byte(`{"room_id":"`+strings.Repeat("r", protocol.MaxRoomLen+1)+`"}`)), "", "bad_auth"},
		{"bad header length", rawHeader(16, 20, protocol.OpAuth), "protocol error: header_len", "header_len"},
		{"pack length below header", rawHeader(15, 16, protocol.OpAuth), "protocol error: pack_len", "pack_len"},
		// Only the header is sent, so the server leaves no unread bytes
		// behind (which would turn its close into a reset).
		{"body over the limit", rawHeader(16+protocol.DefaultMaxBody+1, 16, protocol.OpAuth), "protocol error: too_large", "too_large"},
	}
	th := newTestHub(t, nil)
	addr := th.startTCP(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := metricValue(t, th.metrics.ProtocolErrs.WithLabelValues(tt.wantKind))
			c := dialRaw(t, addr)
			if err := c.SendRaw(tt.send); err != nil {
				t.Fatal(err)
			}
			fs := readToClose(t, c)
			switch {
			case tt.wantBye == "" && len(fs) != 0:
				t.Errorf("got %v, want a close without a reply", fs)
			case tt.wantBye != "" && (len(fs) != 1 || fs[0].Op != protocol.OpDisconnectReply || string(fs[0].Body) != tt.wantBye):
				t.Errorf("got %v, want op 6 %q", fs, tt.wantBye)
			}
			if got := metricValue(t, th.metrics.ProtocolErrs.WithLabelValues(tt.wantKind)); got != before+1 {
				t.Errorf("protocol errors %q = %v, want %v", tt.wantKind, got, before+1)
			}
			if n, _ := th.Online(); n != 0 {
				t.Errorf("Online conns = %d", n)
			}
		})
	}
}

// TestReadLoop: requests after auth and their replies, and every request
// that ends the session with op 6.
func TestReadLoop(t *testing.T) {
	type step struct {
		ver       int16
		op, seq   int32
		body      string
		raw       []byte // sent instead of a frame when set
		wantOp    int32
		wantBody  string
		wantClose bool // op 6 with wantBody, then the connection closes
	}
	tests := []struct {
		name     string
		steps    []step
		wantKind string // protocol error counted, if any
		check    func(t *testing.T, th *testHub)
	}{
		{name: "sendmsg", steps: []step{{ver: 2, op: protocol.OpSendMsg, seq: 11, body: "hi", wantOp: protocol.OpSendMsgReply}},
			check: func(t *testing.T, th *testHub) {
				if v := metricValue(t, th.metrics.Upstream); v != 1 {
					t.Errorf("upstream = %v", v)
				}
			}},
		{name: "business ops upstream", steps: []step{
			{op: protocol.MinBusinessOp, seq: 21, body: "chat", wantOp: protocol.OpSendMsgReply},
			{op: 1<<31 - 1, seq: 22, wantOp: protocol.OpSendMsgReply},
			{op: protocol.OpHeartbeat, seq: 23, wantOp: protocol.OpHeartbeatReply, wantBody: "\x00\x00\x00\x01"},
		}, check: func(t *testing.T, th *testHub) {
			if v := metricValue(t, th.metrics.Upstream); v != 2 {
				t.Errorf("upstream = %v", v)
			}
		}},
		{name: "change room", steps: []step{
			{op: protocol.OpChangeRoom, seq: 12, body: "live://2", wantOp: protocol.OpChangeRoomReply, wantBody: "live://2"},
			{op: protocol.OpHeartbeat, seq: 13, wantOp: protocol.OpHeartbeatReply, wantBody: "\x00\x00\x00\x01"},
		}, check: func(t *testing.T, th *testHub) {
			if th.RoomCount("live://1") != 0 || th.RoomCount("live://2") != 1 {
				t.Errorf("rooms after the change: %v", th.Rooms())
			}
		}},
		{name: "leave room", steps: []step{
			{op: protocol.OpChangeRoom, seq: 12, wantOp: protocol.OpChangeRoomReply},
			{op: protocol.OpHeartbeat, seq: 13, wantOp: protocol.OpHeartbeatReply, wantBody: "\x00\x00\x00\x00"},
		}, check: func(t *testing.T, th *testHub) {
			if len(th.Rooms()) != 0 {
				t.Errorf("rooms after leaving: %v", th.Rooms())
			}
		}},
		{name: "sub and unsub", steps: []step{
			{op: protocol.OpSub, seq: 14, body: "1001,1002", wantOp: protocol.OpSubReply, wantBody: "1001,1002"},
			{op: protocol.OpUnsub, seq: 15, body: "1000", wantOp: protocol.OpUnsubReply, wantBody: "1000"},
		}, check: func(t *testing.T, th *testHub) {
			s := th.current("key")
			if s == nil || s.Accepts(1000) || !s.Accepts(1001) || !s.Accepts(1002) {
				t.Errorf("accepts after sub/unsub: %v", *s.accepts.Load())
			}
		}},
		{name: "unknown op", wantKind: "unknown_op", steps: []step{{op: 99, seq: 1, wantClose: true, wantBody: "unknown op 99"}}},
		{name: "reserved op", wantKind: "unknown_op", steps: []step{{op: 10, seq: 1, wantClose: true, wantBody: "unknown op 10"}}},
		{name: "server op", wantKind: "unknown_op", steps: []step{{op: protocol.OpSendMsgReply, seq: 1, wantClose: true, wantBody: "unknown op 5"}}},
		{name: "op below business", wantKind: "unknown_op", steps: []step{{op: protocol.MinBusinessOp - 1, seq: 1, wantClose: true, wantBody: "unknown op 999"}}},
		{name: "negative op", wantKind: "unknown_op", steps: []step{{op: -1000, seq: 1, wantClose: true, wantBody: "unknown op -1000"}}},
		{name: "auth twice", wantKind: "auth_twice", steps: []step{{op: protocol.OpAuth, seq: 2, body: "{}", wantClose: true, wantBody: "already authenticated"}}},
		{name: "bad ops", wantKind: "bad_ops", steps: []step{{op: protocol.OpSub, seq: 2, body: "1000,x", wantClose: true}}},
		{name: "too many ops", wantKind: "too_many_ops", steps: []step{
			{op: protocol.OpSub, seq: 2, body: opList(0, protocol.MaxAccepts), wantOp: protocol.OpSubReply, wantBody: opList(0, protocol.MaxAccepts)},
			{op: protocol.OpSub, seq: 3, body: "5,1000", wantOp: protocol.OpSubReply, wantBody: "5,1000"}, // already in: still at the limit
			{op: protocol.OpSub, seq: 4, body: strconv.Itoa(protocol.MaxAccepts), wantClose: true, wantBody: "more than 1024 accepted ops"},
		}},
		{name: "room too long", wantKind: "bad_room", steps: []step{{op: protocol.OpChangeRoom, seq: 2, body: strings.Repeat("r", protocol.MaxRoomLen+1), wantClose: true}}},
		{name: "bad header", wantKind: "header_len", steps: []step{{raw: rawHeader(16, 0, protocol.OpHeartbeat), wantClose: true, wantBody: "protocol error: header_len"}}},
		{name: "too large", wantKind: "too_large", steps: []step{{raw: rawHeader(16+protocol.DefaultMaxBody+1, 16, protocol.OpSendMsg), wantClose: true, wantBody: "protocol error: too_large"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := newTestHub(t, nil)
			addr := th.startTCP(t)
			c := dialClient(t, addr, protocol.Auth{Mid: 9, Key: "key", RoomID: "live://1", Accepts: []int32{1000}})
			for _, st := range tt.steps {
				var err error
				if st.raw != nil {
					err = c.SendRaw(st.raw)
				} else {
					err = c.Send(max(st.ver, 1), st.op, st.seq, []byte(st.body))
				}
				if err != nil {
					t.Fatal(err)
				}
				if st.wantClose {
					fs := readToClose(t, c)
					if len(fs) != 1 || fs[0].Op != protocol.OpDisconnectReply || (st.wantBody != "" && string(fs[0].Body) != st.wantBody) {
						t.Fatalf("got %v, want op 6 %q then close", fs, st.wantBody)
					}
					eventually(t, "unbound", func() bool { return len(th.keysOf(t, 9)) == 0 })
					continue
				}
				f := nextFrame(t, c)
				if f.Op != st.wantOp || f.Seq != st.seq || f.Ver != max(st.ver, 1) || string(f.Body) != st.wantBody {
					t.Fatalf("reply %v, want op %d seq %d ver %d body %q", f, st.wantOp, st.seq, max(st.ver, 1), st.wantBody)
				}
			}
			if tt.wantKind != "" {
				if v := metricValue(t, th.metrics.ProtocolErrs.WithLabelValues(tt.wantKind)); v != 1 {
					t.Errorf("protocol errors %q = %v", tt.wantKind, v)
				}
			}
			if tt.check != nil {
				tt.check(t, th)
			}
		})
	}
}

// TestGeneratedKey: an empty key gets a fresh one per connection, bound in
// the store under the mid.
func TestGeneratedKey(t *testing.T) {
	th := newTestHub(t, nil)
	addr := th.startTCP(t)
	dialClient(t, addr, protocol.Auth{Mid: 77})
	dialClient(t, addr, protocol.Auth{Mid: 77})
	eventually(t, "two bindings", func() bool { return len(th.keysOf(t, 77)) == 2 })
	for k, n := range th.keysOf(t, 77) {
		if k == "" || n != testNodeID {
			t.Errorf("binding %q -> %q", k, n)
		}
	}
}

// TestStoreFailureRefusesConnection: a session that cannot be bound is
// told to retry and closed.
func TestStoreFailureRefusesConnection(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.NodeID = "" }) // the store refuses sessions without a node
	addr := th.startTCP(t)
	c := dialRaw(t, addr)
	if err := c.Send(1, protocol.OpAuth, 1, []byte(`{"mid":1,"key":"k"}`)); err != nil {
		t.Fatal(err)
	}
	fs := readToClose(t, c)
	if len(fs) != 1 || fs[0].Op != protocol.OpDisconnectReply {
		t.Fatalf("got %v, want op 6", fs)
	}
	if n, _ := th.Online(); n != 0 {
		t.Errorf("Online conns = %d", n)
	}
}

// TestNothingWrittenBeforeBind: a session is in the hub (so pushes reach
// it) before its store Bind returns, but the client reads nothing, not
// even its AuthReply, until the bind is done: a client holding its reply
// can be pushed to by mid and key. A push meanwhile follows the reply.
func TestNothingWrittenBeforeBind(t *testing.T) {
	th := newTestHub(t, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	th.store.setBindHook(func(s store.Session) error {
		if s.Key == "k1" {
			close(entered)
			<-release
		}
		return nil
	})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the hub's shutdown, which waits for the handshake
	c := newFakeConn("")
	th.serve(c)
	c.in <- authFrame(t, protocol.Auth{Mid: 7, Key: "k1", Accepts: []int32{1000}})
	<-entered
	if n := th.broadcast(1000, protocol.EncodePush(1000, []byte("early")), 0); n != 1 {
		t.Fatalf("broadcast reached %d sessions, want the one binding", n)
	}
	time.Sleep(100 * time.Millisecond) // a writer, if one were started, writes by now
	if fs := c.frames(t); len(fs) != 0 {
		t.Fatalf("client read %v while its bind was under way", fs)
	}
	unblock()
	fs := c.waitFrames(t, 2)
	if fs[0].Op != protocol.OpAuthReply || fs[1].Op != 1000 || string(fs[1].Body) != "early" {
		t.Errorf("frames after the bind: %v, want the auth reply, then the push", fs)
	}
}

// TestBindFailureAfterPush: a session refused because its bind failed is
// told only that: not first its AuthReply, nor pushes that reached it
// while the bind was under way.
func TestBindFailureAfterPush(t *testing.T) {
	th := newTestHub(t, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	th.store.setBindHook(func(s store.Session) error {
		close(entered)
		<-release
		return errors.New("store went away")
	})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the hub's shutdown, which waits for the handshake
	c := newFakeConn("")
	th.serve(c)
	c.in <- authFrame(t, protocol.Auth{Mid: 7, Key: "k2", RoomID: "live://r"})
	<-entered
	th.PushRoom("live://r", protocol.EncodePush(1000, []byte("early")))
	unblock()
	eventually(t, "the refused connection closed", c.isClosed)
	fs := c.frames(t)
	if len(fs) != 1 || fs[0].Op != protocol.OpDisconnectReply {
		t.Fatalf("refused client read %v, want only op 6", fs)
	}
	eventually(t, "the refused session's binding gone", func() bool { _, ok := th.boundNode(t, "k2"); return !ok })
}

// TestBindFailureUnbindsReplaced: a reconnect with a key replaces the
// older session on this node; when the reconnect's bind then fails, both
// are closed, and the older one's binding goes too (its teardown no longer
// finds it in the hub, so would not unbind it), rather than routing pushes
// by its mid and key to nobody until the store's TTL.
func TestBindFailureUnbindsReplaced(t *testing.T) {
	th := newTestHub(t, nil)
	old := th.connectFake(t, "", protocol.Auth{Mid: 9, Key: "dup"})
	if n, ok := th.boundNode(t, "dup"); !ok || n != testNodeID {
		t.Fatalf("first session's binding %q %v", n, ok)
	}
	th.store.setBindHook(func(store.Session) error { return errors.New("store went away") })
	c2 := newFakeConn("")
	th.serve(c2)
	c2.in <- authFrame(t, protocol.Auth{Mid: 9, Key: "dup"})
	eventually(t, "both connections closed", func() bool { return old.isClosed() && c2.isClosed() })
	eventually(t, "the key's binding gone", func() bool { _, ok := th.boundNode(t, "dup"); return !ok })
	eventually(t, "the mid's binding gone", func() bool { return len(th.keysOf(t, 9)) == 0 })
}

// TestReconnectDuringTeardownKeepsBinding: session A (key K) disconnects
// while B, a new connection with key K on this node, is between its store
// Bind and joining the hub. A's teardown still owns K in the hub, so it
// unbinds K, which erases B's fresh binding (same node, so the
// compare-and-delete matches), and the restore check (h.current) runs
// before B is added. B is then connected and pushable in the hub but
// unreachable through the store until a heartbeat re-binds it.
func TestReconnectDuringTeardownKeepsBinding(t *testing.T) {
	th := newTestHub(t, nil)
	addr := th.startTCP(t)
	a := dialClient(t, addr, protocol.Auth{Mid: 1, Key: "K"})

	bound, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	th.store.setBindHook(func(s store.Session) error {
		if s.Key == "K" {
			once.Do(func() { close(bound); <-release })
		}
		return nil
	})
	type dialed struct {
		c   *client.Client
		err error
	}
	bDone := make(chan dialed, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		c, err := client.Dial(ctx, client.Options{Addr: addr, Auth: protocol.Auth{Mid: 1, Key: "K"}, Timeout: waitFor})
		bDone <- dialed{c, err}
	}()
	<-bound
	_ = a.Close()
	eventually(t, "A torn down", func() bool { return th.sessionsClosed("K") == 1 })
	close(release)
	d := <-bDone
	if d.err != nil {
		t.Fatalf("B: %v", d.err)
	}
	t.Cleanup(func() { _ = d.c.Close() })
	if th.current("K") == nil {
		t.Fatal("B is not in the hub")
	}
	// A's unbind may come after B's bind (it is queued); the unbinder then
	// restores B's binding.
	eventually(t, "B's key binding", func() bool {
		n, ok := th.boundNode(t, "K")
		return ok && n == testNodeID
	})
}

// TestMassDisconnectUnbinds: sessions that close together are unbound
// through the unbinder's UnbindMany, and every binding goes.
func TestMassDisconnectUnbinds(t *testing.T) {
	th := newTestHub(t, nil)
	addr := th.startTCP(t)
	const n = 200
	clients := make([]*client.Client, n)
	for i := range clients {
		clients[i] = dialClient(t, addr, protocol.Auth{Mid: int64(1000 + i), Key: fmt.Sprint("mass-", i)})
	}
	for _, c := range clients {
		_ = c.Close()
	}
	eventually(t, "every session unbound", func() bool {
		for i := range n {
			if _, ok := th.boundNode(t, fmt.Sprint("mass-", i)); ok {
				return false
			}
		}
		return true
	})
	if got := th.store.manyUnbound.Load(); got != n {
		t.Errorf("%d sessions went through UnbindMany, want %d", got, n)
	}
	t.Logf("%d sessions unbound in %d UnbindMany calls", n, th.store.manyCalls.Load())
}

// TestShutdownDuringHandshake: a connection whose Auth was read before
// Shutdown but which joins the hub after Shutdown said goodbye to every
// session is never told to go, so Shutdown waits for it until ctx ends
// instead of returning nil.
func TestShutdownDuringHandshake(t *testing.T) {
	th := newTestHub(t, nil)
	addr := th.startTCP(t)
	witness := dialClient(t, addr, protocol.Auth{Key: "witness"})

	bound, release := make(chan struct{}), make(chan struct{})
	th.store.setBindHook(func(s store.Session) error {
		if s.Key == "late" {
			close(bound)
			<-release
		}
		return nil
	})
	late := dialRaw(t, addr)
	if err := late.Send(1, protocol.OpAuth, 1, []byte(`{"key":"late"}`)); err != nil {
		t.Fatal(err)
	}
	<-bound
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errc <- th.Shutdown(ctx)
	}()
	// Once the witness has its op 6, Shutdown's farewell pass is over.
	if f := nextFrame(t, witness); f.Op != protocol.OpDisconnectReply {
		t.Fatalf("witness got %v", f)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	fs := readToClose(t, late)
	if len(fs) == 0 || fs[len(fs)-1].Op != protocol.OpDisconnectReply {
		t.Errorf("late session got %v, want op 6 last", fs)
	}
}

// TestWebSocket: the same session over WebSocket: replies travel as plain
// frames, pushes inside op-9 messages, a coalesced burst in one message;
// after Shutdown the handler refuses upgrades.
func TestWebSocket(t *testing.T) {
	th := newTestHub(t, nil)
	addr := startWSListener(t, th)
	url := "ws://" + addr + "/sub"
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Network: "ws", Addr: url, Timeout: waitFor,
		Auth: protocol.Auth{Mid: 3, Key: "ws", RoomID: "r", Accepts: []int32{1000}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	if err := c.Heartbeat(9); err != nil {
		t.Fatal(err)
	}
	fs, err := c.NextMessage(ctx)
	if err != nil || len(fs) != 1 || fs[0].Op != protocol.OpHeartbeatReply || fs[0].Seq != 9 {
		t.Fatalf("heartbeat reply over ws: %v %v", fs, err)
	}
	run := append(protocol.EncodePush(1000, []byte("a")), protocol.EncodePush(1001, []byte("b"))...)
	if n := th.PushRoom("r", run); n != 1 {
		t.Fatalf("PushRoom = %d", n)
	}
	fs, err = c.NextMessage(ctx)
	if err != nil || len(fs) != 1 || fs[0].Op != protocol.OpRaw {
		t.Fatalf("room push over ws: %v %v, want one op-9 frame", fs, err)
	}
	var inner []string
	if err := protocol.Split(fs[0].Body, func(f protocol.Frame) error { inner = append(inner, string(f.Body)); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(inner, []string{"a", "b"}) {
		t.Fatalf("op-9 body holds %q", inner)
	}

	sctx, scancel := context.WithTimeout(context.Background(), waitFor)
	defer scancel()
	if err := th.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if f, err := c.Next(ctx); err != nil || f.Op != protocol.OpDisconnectReply {
		t.Fatalf("after Shutdown got %v %v, want op 6", f, err)
	}
	resp, err := http.Get("http://" + addr + "/sub")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("upgrade after Shutdown: status %d, want 503", resp.StatusCode)
	}
	// The 503 waits for the request: an answer before it would be an
	// "unsolicited response" to an HTTP client.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := nc.Read(make([]byte, 64)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("before any request: read %d bytes, %v; want nothing", n, err)
	}
	if _, err := io.WriteString(nc, "GET /sub HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(waitFor))
	resp, err = http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("answer after the request: %v, %v; want 503", resp, err)
	}
	_ = resp.Body.Close()
}

// tryConn is a fakeConn whose transport can write without blocking; every
// TryWrite is taken whole.
type tryConn struct {
	*fakeConn
	tries atomic.Int64
}

func (c *tryConn) TryWrite(o transport.Out) ([]byte, error) {
	c.tries.Add(1)
	return nil, c.fakeConn.Write([]transport.Out{o}, time.Time{})
}

// The AuthReply, and then a push to the idle session, are written in place
// by the goroutine that has them: no writer goroutine, no blocking Write.
func TestAuthReplyWrittenInPlace(t *testing.T) {
	th := newTestHub(t, nil)
	c := &tryConn{fakeConn: newFakeConn("")}
	th.serveAs(c.fakeConn, c)
	c.in <- authFrame(t, protocol.Auth{Mid: 1, Key: "k", RoomID: "live://1", Accepts: []int32{1000}})
	if fs := c.waitFrames(t, 1); fs[0].Op != protocol.OpAuthReply {
		t.Fatalf("first frame %v, want the auth reply", fs[0])
	}
	if n := th.PushRoom("live://1", protocol.EncodePush(1000, []byte("hi"))); n != 1 {
		t.Fatalf("push reached %d", n)
	}
	c.waitFrames(t, 2)
	if tries := c.tries.Load(); tries != 2 {
		t.Errorf("%d TryWrite calls, want 2 (reply and push)", tries)
	}
}

// opList is "from,from+1,...,to-1".
func opList(from, to int) string {
	var b strings.Builder
	for op := from; op < to; op++ {
		if op > from {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(op))
	}
	return b.String()
}
