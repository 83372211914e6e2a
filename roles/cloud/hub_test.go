package cloud

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/store"
	"github.com/imcloud/imcloud/transport/client"
)

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
	}{
		{"no buckets", func(c *Config) { c.Buckets = 0 }},
		{"no send queue", func(c *Config) { c.SendQueue = 0 }},
		{"no max body", func(c *Config) { c.MaxBody = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultTestConfig()
			tt.mut(&cfg)
			if _, err := New(cfg, nil, nil, nil); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

// pushBodies returns the bodies of the frames with op >= 1000, in order.
func pushBodies(fs []protocol.Frame) []string {
	var out []string
	for _, f := range fs {
		if f.Op >= protocol.MinBusinessOp {
			out = append(out, string(f.Body))
		}
	}
	return out
}

// TestPushKeysRespectsAccepts: key pushes reach only the named sessions
// whose accepted ops (from Auth, Sub and Unsub) include the push's op.
func TestPushKeysRespectsAccepts(t *testing.T) {
	th := newTestHub(t, nil)
	conns := map[string]*fakeConn{
		"a":    th.connectFake(t, "", protocol.Auth{Mid: 1, Key: "a", Accepts: []int32{1000}}),
		"b":    th.connectFake(t, "", protocol.Auth{Mid: 2, Key: "b", Accepts: []int32{1001}}),
		"c":    th.connectFake(t, "", protocol.Auth{Mid: 3, Key: "c", Accepts: []int32{1000, 1001}}),
		"none": th.connectFake(t, "", protocol.Auth{Mid: 4, Key: "none"}),
	}
	// Sub/Unsub change the set through the read loop.
	conns["none"].send(t, protocol.OpSub, 7, "1002, 1003")
	if f := conns["none"].waitOp(t, protocol.OpSubReply, 7); string(f.Body) != "1002, 1003" {
		t.Fatalf("sub reply body = %q", f.Body)
	}
	conns["c"].send(t, protocol.OpUnsub, 8, "1001")
	conns["c"].waitOp(t, protocol.OpUnsubReply, 8)

	tests := []struct {
		keys []string
		op   int32
		want []string // sessions reached
	}{
		{[]string{"a", "b", "c", "none"}, 1000, []string{"a", "c"}},
		{[]string{"a", "b", "c", "none"}, 1001, []string{"b"}},
		{[]string{"a", "b", "c", "none"}, 1003, []string{"none"}},
		{[]string{"b"}, 1000, nil},
		{[]string{"missing", "a"}, 1000, []string{"a"}},
		{nil, 1000, nil},
	}
	want := map[string][]string{}
	for i, tt := range tests {
		body := "push-" + strconv.Itoa(i)
		n := th.PushKeys(tt.keys, tt.op, protocol.EncodePush(tt.op, []byte(body)))
		if n != len(tt.want) {
			t.Errorf("PushKeys(%v, %d) = %d, want %d", tt.keys, tt.op, n, len(tt.want))
		}
		for _, k := range tt.want {
			want[k] = append(want[k], body)
		}
	}
	for k, c := range conns {
		// +2 for the auth reply and the sub/unsub reply where there was one.
		extra := 1
		if k == "none" || k == "c" {
			extra = 2
		}
		fs := c.waitFrames(t, extra+len(want[k]))
		if got := pushBodies(fs); !slices.Equal(got, want[k]) {
			t.Errorf("session %s got pushes %q, want %q", k, got, want[k])
		}
		for _, f := range fs {
			if f.Op >= protocol.MinBusinessOp && (f.Ver != protocol.PushVer || f.Seq != 0) {
				t.Errorf("push frame %v: want ver 1 seq 0", f)
			}
		}
	}
}

// TestPushRoomReachesOnlyMembers: 200 sessions over 8 buckets in three
// rooms (and none); a room push reaches every member exactly once, whatever
// they accept, and nobody else.
func TestPushRoomReachesOnlyMembers(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.Buckets = 8 })
	rooms := []string{"live://1", "live://2", "chat://x", ""}
	const n = 200
	conns := make([]*fakeConn, n)
	members := map[string][]int{}
	for i := range n {
		r := rooms[i%len(rooms)]
		a := protocol.Auth{Mid: int64(i), Key: "k" + strconv.Itoa(i), RoomID: r}
		if i%2 == 0 {
			a.Accepts = []int32{1000}
		}
		conns[i] = th.connectFake(t, "", a)
		members[r] = append(members[r], i)
	}
	// The members really are spread over the buckets.
	used := map[*bucket]bool{}
	for _, i := range members["live://1"] {
		used[th.bucketFor("k"+strconv.Itoa(i))] = true
	}
	if len(used) < 2 {
		t.Fatalf("room members landed in %d bucket(s); the test needs several", len(used))
	}

	for _, r := range rooms[:3] {
		got := th.PushRoom(r, protocol.EncodePush(1999, []byte(r)))
		if got != len(members[r]) {
			t.Errorf("PushRoom(%q) = %d, want %d", r, got, len(members[r]))
		}
	}
	if got := th.PushRoom("live://nobody", protocol.EncodePush(1999, []byte("x"))); got != 0 {
		t.Errorf("PushRoom to an empty room = %d", got)
	}
	for i, c := range conns {
		r := rooms[i%len(rooms)]
		var want []string
		if r != "" {
			want = []string{r}
		}
		// Everything a session will ever get was queued before PushRoom
		// returned, so once the expected frames are there the rest is final.
		fs := c.waitFrames(t, 1+len(want))
		if got := pushBodies(fs); !slices.Equal(got, want) {
			t.Errorf("session %d (room %q) got %q, want %q", i, r, got, want)
		}
	}
}

// TestPushRoomBatch: a run of frames goes out as one item, unchanged, and
// the client sees the frames in order.
func TestPushRoomBatch(t *testing.T) {
	th := newTestHub(t, nil)
	c := th.connectFake(t, "", protocol.Auth{Key: "k", RoomID: "live://9"})
	var run []byte
	for i := range 5 {
		run = append(run, protocol.EncodePush(1000, []byte(strconv.Itoa(i)))...)
	}
	if n := th.PushRoom("live://9", run); n != 1 {
		t.Fatalf("PushRoom = %d", n)
	}
	fs := c.waitFrames(t, 6)
	if got := pushBodies(fs); !slices.Equal(got, []string{"0", "1", "2", "3", "4"}) {
		t.Fatalf("got %q", got)
	}
}

// TestRoomsAndCounts follows joins, room changes, leaving by an empty
// ChangeRoom and disconnects through RoomCount, Rooms, Online and heartbeat
// replies.
func TestRoomsAndCounts(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.Buckets = 4 })
	conns := map[string]*fakeConn{}
	join := func(key, ip, room string) {
		conns[key] = th.connectFake(t, ip, protocol.Auth{Mid: 1, Key: key, RoomID: room})
	}
	seq := int32(100)
	change := func(key, room string) {
		seq++
		conns[key].send(t, protocol.OpChangeRoom, seq, room)
		if f := conns[key].waitOp(t, protocol.OpChangeRoomReply, seq); string(f.Body) != room {
			t.Fatalf("change room reply body %q, want %q", f.Body, room)
		}
	}
	hang := func(key string) {
		before := th.sessionsClosed(key)
		_ = conns[key].Close()
		eventually(t, key+" torn down", func() bool { return th.sessionsClosed(key) > before })
	}
	heartbeat := func(key string) int32 {
		seq++
		conns[key].send(t, protocol.OpHeartbeat, seq, "")
		return heartbeatCountOf(t, conns[key].waitOp(t, protocol.OpHeartbeatReply, seq))
	}
	check := func(step string, want map[string]int32, conns64, ips int64) {
		t.Helper()
		if got := th.Rooms(); !maps.Equal(got, want) {
			t.Errorf("%s: Rooms() = %v, want %v", step, got, want)
		}
		for r, n := range want {
			if got := th.RoomCount(r); got != n {
				t.Errorf("%s: RoomCount(%q) = %d, want %d", step, r, got, n)
			}
		}
		if c, i := th.Online(); c != conns64 || i != ips {
			t.Errorf("%s: Online() = %d conns %d ips, want %d, %d", step, c, i, conns64, ips)
		}
	}

	join("a", "10.0.0.1", "r1")
	join("b", "10.0.0.2", "r1")
	join("c", "10.0.0.1", "r1")
	join("d", "10.0.0.3", "r2")
	join("e", "10.0.0.3", "")
	check("joined", map[string]int32{"r1": 3, "r2": 1}, 5, 3)
	if n := heartbeat("a"); n != 3 {
		t.Errorf("heartbeat count in r1 = %d, want 3", n)
	}
	if n := heartbeat("e"); n != 0 {
		t.Errorf("heartbeat count outside rooms = %d, want 0", n)
	}

	change("b", "r2")
	check("b to r2", map[string]int32{"r1": 2, "r2": 2}, 5, 3)
	change("d", "r2") // same room: no change
	check("d stays", map[string]int32{"r1": 2, "r2": 2}, 5, 3)
	change("e", "r3")
	check("e joins r3", map[string]int32{"r1": 2, "r2": 2, "r3": 1}, 5, 3)
	change("c", "")
	check("c leaves", map[string]int32{"r1": 1, "r2": 2, "r3": 1}, 5, 3)
	if n := heartbeat("b"); n != 2 {
		t.Errorf("heartbeat count in r2 after the change = %d, want 2", n)
	}

	hang("a")
	check("a gone", map[string]int32{"r2": 2, "r3": 1}, 4, 3)
	hang("b")
	hang("d")
	check("b, d gone", map[string]int32{"r3": 1}, 2, 2)
	if n := th.PushRoom("r2", protocol.EncodePush(1000, nil)); n != 0 {
		t.Errorf("PushRoom to an emptied room reached %d", n)
	}

	// A cluster-wide counter replaces the local count in heartbeats.
	th.SetRoomCounter(func(room string) int32 { return int32(len(room)) * 10 })
	if n := heartbeat("e"); n != 20 {
		t.Errorf("heartbeat with a room counter = %d, want 20", n)
	}
}

// TestSameKeyReplaces: a second connection with a key takes over: the old
// one gets op 6 and is closed, leaves its room, and its teardown does not
// erase the binding, which now belongs to the new session.
func TestSameKeyReplaces(t *testing.T) {
	th := newTestHub(t, nil)
	addr := th.startTCP(t)
	old := dialClient(t, addr, protocol.Auth{Mid: 7, Key: "dup", RoomID: "r-old", Accepts: []int32{1000}})
	if n, ok := th.boundNode(t, "dup"); !ok || n != testNodeID {
		t.Fatalf("binding after the first connect: %q %v", n, ok)
	}
	cur := dialClient(t, addr, protocol.Auth{Mid: 7, Key: "dup", RoomID: "r-new", Accepts: []int32{1000}})

	fs := readToClose(t, old)
	if len(fs) != 1 || fs[0].Op != protocol.OpDisconnectReply || string(fs[0].Body) != "replaced by a new connection" {
		t.Fatalf("old connection got %v before closing, want one op 6", fs)
	}
	eventually(t, "old session torn down", func() bool { return th.sessionsClosed("dup") == 1 })

	if n, ok := th.boundNode(t, "dup"); !ok || n != testNodeID {
		t.Errorf("key binding after the old session's teardown: %q %v, want %q", n, ok, testNodeID)
	}
	if keys := th.keysOf(t, 7); keys["dup"] != testNodeID {
		t.Errorf("mid binding after the old session's teardown: %v", keys)
	}
	if got := th.Rooms(); !maps.Equal(got, map[string]int32{"r-new": 1}) {
		t.Errorf("Rooms() = %v, want only r-new", got)
	}
	if c, _ := th.Online(); c != 1 {
		t.Errorf("Online conns = %d, want 1", c)
	}
	if v := metricValue(t, th.metrics.Disconnects.WithLabelValues("replaced")); v != 1 {
		t.Errorf("replaced disconnects = %v", v)
	}
	if n := th.PushKeys([]string{"dup"}, 1000, protocol.EncodePush(1000, []byte("to-new"))); n != 1 {
		t.Fatalf("PushKeys = %d", n)
	}
	if f := nextFrame(t, cur); f.Op != 1000 || string(f.Body) != "to-new" {
		t.Fatalf("new connection got %v", f)
	}

	// The survivor's own disconnect does unbind.
	_ = cur.Close()
	eventually(t, "binding removed", func() bool { return len(th.keysOf(t, 7)) == 0 })
	if _, ok := th.boundNode(t, "dup"); ok {
		t.Error("key binding left after the last disconnect")
	}
}

// TestTeardownUnbinds: every way a session ends removes its bindings.
func TestTeardownUnbinds(t *testing.T) {
	tests := []struct {
		name string
		end  func(t *testing.T, c *fakeConn)
	}{
		{"client hangs up", func(_ *testing.T, c *fakeConn) { _ = c.Close() }},
		{"protocol error", func(t *testing.T, c *fakeConn) { c.send(t, 99, 1, "") }},
		{"auth twice", func(t *testing.T, c *fakeConn) { c.send(t, protocol.OpAuth, 2, "{}") }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := newTestHub(t, nil)
			mid := int64(100 + i)
			c := th.connectFake(t, "", protocol.Auth{Mid: mid, Key: "k", RoomID: "r"})
			other := th.connectFake(t, "", protocol.Auth{Mid: mid, Key: "k2"})
			if got := th.keysOf(t, mid); len(got) != 2 {
				t.Fatalf("KeysByMids before = %v", got)
			}
			tt.end(t, c)
			eventually(t, "k unbound", func() bool { _, ok := th.keysOf(t, mid)["k"]; return !ok })
			if _, ok := th.boundNode(t, "k"); ok {
				t.Error("key binding left")
			}
			if got := th.keysOf(t, mid); got["k2"] != testNodeID {
				t.Errorf("the other session's binding is gone: %v", got)
			}
			if th.RoomCount("r") != 0 {
				t.Error("session still in its room")
			}
			eventually(t, "connection closed", c.isClosed)
			_ = other.Close()
			eventually(t, "mid unbound", func() bool { return len(th.keysOf(t, mid)) == 0 })
		})
	}
}

// TestSlowConsumer: a session whose writes block is closed once SendQueue
// items wait behind the blocked write; a fast member of the same room gets
// everything, in order, and the room goes on without the slow one.
func TestSlowConsumer(t *testing.T) {
	const sendQueue = 8
	th := newTestHub(t, func(c *Config) { c.SendQueue = sendQueue })
	fast := th.connectFake(t, "", protocol.Auth{Key: "fast", RoomID: "room"})
	slow := th.connectFake(t, "", protocol.Auth{Key: "slow", RoomID: "room"})
	slow.hold()

	// Each push waits until the fast session has written it, so its queue
	// never holds more than one item: only the blocked one can overflow.
	var want []string
	push := func(i int) int {
		body := "m" + strconv.Itoa(i)
		want = append(want, body)
		n := th.PushRoom("room", protocol.EncodePush(1000, []byte(body)))
		fast.waitFrames(t, 1+len(want))
		return n
	}
	if n := push(0); n != 2 {
		t.Fatalf("first push reached %d", n)
	}
	eventually(t, "slow writer blocked", func() bool { return slow.blockedWriters() == 1 })
	// The writer holds m0; the queue takes sendQueue more.
	for i := 1; i <= sendQueue; i++ {
		if n := push(i); n != 2 {
			t.Fatalf("push %d reached %d sessions; the slow one should still be queueing", i, n)
		}
	}
	if slow.isClosed() {
		t.Fatal("slow session closed before its queue overflowed")
	}
	if n := push(sendQueue + 1); n != 1 {
		t.Fatalf("overflowing push reached %d, want only the fast session", n)
	}
	eventually(t, "slow connection closed", slow.isClosed)
	for i := sendQueue + 2; i < sendQueue+50; i++ {
		if n := push(i); n > 2 {
			t.Fatalf("push %d reached %d", i, n)
		}
	}
	eventually(t, "slow session out of the room", func() bool { return th.RoomCount("room") == 1 })
	if n := push(1000); n != 1 {
		t.Fatalf("push after the slow session left reached %d", n)
	}

	fs := fast.waitFrames(t, 1+len(want))
	if got := pushBodies(fs); !slices.Equal(got, want) {
		t.Fatalf("fast session got %d pushes, want %d in order\ngot  %q\nwant %q", len(got), len(want), got, want)
	}
	if v := metricValue(t, th.metrics.SlowClients); v != 1 {
		t.Errorf("slow clients = %v, want 1", v)
	}
	eventually(t, "the session's end counted as slow", func() bool {
		return metricValue(t, th.metrics.Disconnects.WithLabelValues("slow")) == 1
	})
	if c, _ := th.Online(); c != 1 {
		t.Errorf("Online conns = %d, want 1", c)
	}
	if _, ok := th.boundNode(t, "slow"); ok {
		t.Error("slow session still bound in the store")
	}
	// The slow client never saw anything past the auth reply.
	if fs := slow.frames(t); len(fs) != 1 {
		t.Errorf("slow session wrote %d frames, want only the auth reply", len(fs))
	}
}

// TestWriteTimeoutIsSlow: a client that takes nothing for WriteTimeout is
// a slow client as much as one whose queue overflowed, at any push rate:
// counted, logged and dropped as one, its session's end counted as slow.
func TestWriteTimeoutIsSlow(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.WriteTimeout = 100 * time.Millisecond })
	stuck := th.connectFake(t, "", protocol.Auth{Key: "stuck", RoomID: "room"})
	stuck.hold()
	if n := th.PushRoom("room", protocol.EncodePush(1000, []byte("one push, well within the queue"))); n != 1 {
		t.Fatalf("push reached %d sessions", n)
	}
	eventually(t, "the stuck connection closed", stuck.isClosed)
	if v := metricValue(t, th.metrics.SlowClients); v != 1 {
		t.Errorf("slow clients = %v, want 1", v)
	}
	eventually(t, "the session's end counted as slow", func() bool {
		return metricValue(t, th.metrics.Disconnects.WithLabelValues("slow")) == 1
	})
	if v := metricValue(t, th.metrics.Disconnects.WithLabelValues("eof")); v != 0 {
		t.Errorf("disconnects{eof} = %v, want 0", v)
	}
	logged := th.logs.FilterMessage("slow client disconnected").All()
	if len(logged) != 1 || logged[0].ContextMap()["why"] != "write timed out" {
		t.Errorf("slow client log lines: %v", logged)
	}
	eventually(t, "the stuck session unbound", func() bool { _, ok := th.boundNode(t, "stuck"); return !ok })
}

// TestCoalescedWrites: while one Write is blocked, pushes queue up and then
// go out in a single Write call, in order.
func TestCoalescedWrites(t *testing.T) {
	tests := []struct {
		name string
		push func(th *testHub, i int) int
	}{
		{"keys", func(th *testHub, i int) int {
			return th.PushKeys([]string{"k"}, 1000, protocol.EncodePush(1000, []byte(strconv.Itoa(i))))
		}},
		{"room", func(th *testHub, i int) int {
			return th.PushRoom("r", protocol.EncodePush(1000, []byte(strconv.Itoa(i))))
		}},
		{"broadcast", func(th *testHub, i int) int {
			return th.broadcast(1000, protocol.EncodePush(1000, []byte(strconv.Itoa(i))), 0)
		}},
	}
	const queued = 40
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := newTestHub(t, func(c *Config) { c.SendQueue = queued })
			c := th.connectFake(t, "", protocol.Auth{Key: "k", RoomID: "r", Accepts: []int32{1000}})
			callsBefore := len(c.writeCalls())
			c.hold()
			if tt.push(th, 0) != 1 {
				t.Fatal("push 0 not queued")
			}
			eventually(t, "writer blocked", func() bool { return c.blockedWriters() == 1 })
			for i := 1; i <= queued; i++ {
				if tt.push(th, i) != 1 {
					t.Fatalf("push %d not queued", i)
				}
			}
			c.release()
			c.waitFrames(t, 1+1+queued)
			calls := c.writeCalls()[callsBefore:]
			if len(calls) != 2 {
				t.Fatalf("%d Write calls after the block, want 2 (the blocked one and one coalesced)", len(calls))
			}
			if len(calls[0]) != 1 || len(calls[1]) != queued {
				t.Fatalf("Write call sizes %d and %d, want 1 and %d", len(calls[0]), len(calls[1]), queued)
			}
			for i, it := range calls[1] {
				f, _, err := protocol.Decode(it.Data, 1<<20)
				if err != nil || string(f.Body) != strconv.Itoa(i+1) || !it.Push {
					t.Fatalf("item %d of the coalesced write = %v %v (push %v), want body %d", i, f, err, it.Push, i+1)
				}
			}
		})
	}
}

// TestBroadcast: with and without a speed cap every session that accepts
// the op gets the frame once; the others get nothing.
func TestBroadcast(t *testing.T) {
	for _, speed := range []int{0, 500} {
		t.Run(fmt.Sprintf("speed=%d", speed), func(t *testing.T) {
			th := newTestHub(t, func(c *Config) { c.Buckets = 4 })
			var yes, no []*fakeConn
			for i := range 30 {
				a := protocol.Auth{Mid: int64(i), Key: "k" + strconv.Itoa(i), RoomID: "r" + strconv.Itoa(i%3)}
				if i%3 != 0 {
					a.Accepts = []int32{1000}
					yes = append(yes, th.connectFake(t, "", a))
				} else {
					no = append(no, th.connectFake(t, "", a))
				}
			}
			n := th.broadcast(1000, protocol.EncodePush(1000, []byte("all")), speed)
			if speed == 0 && n != len(yes) {
				t.Errorf("Broadcast = %d, want %d", n, len(yes))
			}
			if n < len(yes) {
				t.Errorf("Broadcast = %d, below the %d sessions that accept the op", n, len(yes))
			}
			for _, c := range yes {
				if got := pushBodies(c.waitFrames(t, 2)); !slices.Equal(got, []string{"all"}) {
					t.Errorf("%s got %q", c.remote, got)
				}
			}
			// Filtering happens before queueing (even when paced), so once
			// every accepting session has its frame this is final.
			eventually(t, "paced broadcast counted", func() bool {
				return metricValue(t, th.metrics.Deliveries.WithLabelValues("broadcast")) == float64(len(yes))
			})
			for _, c := range no {
				if got := pushBodies(c.frames(t)); len(got) != 0 {
					t.Errorf("%s does not accept 1000 but got %q", c.remote, got)
				}
			}
		})
	}
}

// TestPacedBroadcastReturnsTargeted: with speed > 0 Broadcast returns the
// sessions that accept op, as the unpaced path does.
func TestPacedBroadcastReturnsTargeted(t *testing.T) {
	th := newTestHub(t, nil)
	th.connectFake(t, "", protocol.Auth{Key: "yes", Accepts: []int32{1000}})
	th.connectFake(t, "", protocol.Auth{Key: "no"})
	if n := th.broadcast(1000, protocol.EncodePush(1000, nil), 100); n != 1 {
		t.Fatalf("paced Broadcast = %d, want 1 (as with speed 0)", n)
	}
}

// TestBroadcastsKeepOrder: paced broadcasts, and unpaced ones that arrive
// while a paced one is under way, reach every session in arrival order.
func TestBroadcastsKeepOrder(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.Buckets = 4; c.SendQueue = 64 })
	var conns []*fakeConn
	for i := range 6 {
		conns = append(conns, th.connectFake(t, "", protocol.Auth{Key: "k" + strconv.Itoa(i), Accepts: []int32{1000}}))
	}
	var want []string
	for i := range 20 {
		speed := 3000 // 2 ms for six sessions
		switch {
		case i == 5:
			speed = 12 // half a second: everything after waits for it
		case i%4 == 3:
			speed = 0
		}
		body := fmt.Sprintf("b%02d", i)
		want = append(want, body)
		if n := th.broadcast(1000, protocol.EncodePush(1000, []byte(body)), speed); n != len(conns) {
			t.Fatalf("broadcast %d targeted %d sessions, want %d", i, n, len(conns))
		}
	}
	for _, c := range conns {
		if got := pushBodies(c.waitFrames(t, 1+len(want))); !slices.Equal(got, want) {
			t.Errorf("%s got %q, want %q", c.remote, got, want)
		}
	}
	eventually(t, "the broadcaster idle", func() bool {
		th.bcast.mu.Lock()
		defer th.bcast.mu.Unlock()
		return !th.bcast.running
	})
	// Idle again, an unpaced broadcast is sent by the caller, not queued.
	th.broadcast(1000, protocol.EncodePush(1000, []byte("now")), 0)
	th.bcast.mu.Lock()
	started := th.bcast.running
	th.bcast.mu.Unlock()
	if started {
		t.Error("an unpaced broadcast on an idle broadcaster went to the background")
	}
	for _, c := range conns {
		if got := pushBodies(c.waitFrames(t, 2+len(want))); got[len(want)] != "now" {
			t.Errorf("%s: got %q after the paced ones, want \"now\"", c.remote, got[len(want):])
		}
	}
}

// TestShutdown: every session gets op 6 and is closed, connections still in
// their handshake are closed, bindings are removed, and Shutdown returns
// once all of that is done; afterwards new connections are refused.
func TestShutdown(t *testing.T) {
	th := newTestHub(t, nil)
	addr := th.startTCP(t)
	a := dialClient(t, addr, protocol.Auth{Mid: 1, Key: "a", RoomID: "r"})
	b := dialClient(t, addr, protocol.Auth{Mid: 2, Key: "b"})
	f := th.connectFake(t, "", protocol.Auth{Mid: 3, Key: "f", RoomID: "r"})
	pending := dialRaw(t, addr) // connected, never authenticates
	eventually(t, "handshake pending", func() bool { return th.pending.len() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Everything below was finished before Shutdown returned.
	if c, ips := th.Online(); c != 0 || ips != 0 {
		t.Errorf("after Shutdown: Online = %d conns, %d ips", c, ips)
	}
	if len(th.Rooms()) != 0 {
		t.Errorf("after Shutdown: Rooms = %v", th.Rooms())
	}
	for mid := int64(1); mid <= 3; mid++ {
		if keys := th.keysOf(t, mid); len(keys) != 0 {
			t.Errorf("after Shutdown: mid %d still bound: %v", mid, keys)
		}
	}
	if !f.isClosed() {
		t.Error("fake connection not closed")
	}
	if fs := f.frames(t); len(fs) != 2 || fs[1].Op != protocol.OpDisconnectReply {
		t.Errorf("fake connection got %v, want auth reply then op 6", fs)
	}
	for name, c := range map[string]*client.Client{"a": a, "b": b} {
		fs := readToClose(t, c)
		if len(fs) != 1 || fs[0].Op != protocol.OpDisconnectReply || string(fs[0].Body) != "server shutting down" {
			t.Errorf("client %s got %v, want one op 6 then close", name, fs)
		}
	}
	if fs := readToClose(t, pending); len(fs) != 0 {
		t.Errorf("pending handshake got %v", fs)
	}

	// A connection that arrives after Shutdown is closed at once. (A fake
	// one: ServeTCP's WaitGroup.Add after Shutdown's Wait has no
	// happens-before edge the race detector can see through a socket.)
	late := newFakeConn("")
	late.in <- authFrame(t, protocol.Auth{Key: "late"})
	th.serve(late)
	eventually(t, "late connection closed", late.isClosed)
	if fs := late.frames(t); len(fs) != 0 {
		t.Errorf("connection after Shutdown got %v", fs)
	}
	if c, _ := th.Online(); c != 0 {
		t.Errorf("a connection was accepted after Shutdown")
	}
}

// Room pushes and broadcasts spread over several goroutines still reach
// every member exactly once and in order, whatever GOMAXPROCS is.
func TestFanOutOverProcs(t *testing.T) {
	for _, procs := range []int{1, 3, 8, 64} {
		t.Run(strconv.Itoa(procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			th := newTestHub(t, func(c *Config) { c.Buckets = 16 })
			const members, pushes = fanOutMin + 44, 5 // large enough to be spread
			conns := make([]*fakeConn, members)
			for i := range conns {
				conns[i] = th.connectFake(t, "", protocol.Auth{Mid: int64(i), Key: "k" + strconv.Itoa(i), RoomID: "r", Accepts: []int32{1000}})
			}
			for p := range pushes {
				if n := th.PushRoom("r", protocol.EncodePush(1000, []byte{byte(p)})); n != members {
					t.Fatalf("push %d reached %d", p, n)
				}
			}
			if n := th.broadcast(1000, protocol.EncodePush(1000, []byte{pushes}), 0); n != members {
				t.Fatalf("broadcast reached %d", n)
			}
			for i, c := range conns {
				fs := c.waitFrames(t, 1+pushes+1) // auth reply, pushes, broadcast
				for p, f := range fs[1:] {
					if f.Op != 1000 || len(f.Body) != 1 || int(f.Body[0]) != p {
						t.Fatalf("member %d frame %d: %v", i, p, f)
					}
				}
			}
		})
	}
}

// A session's reader makes no store call itself (heartbeat refreshes, the
// refresh after a room change): a store client's deep call stack would grow
// the reader's stack for the rest of the connection's life.
func TestStoreCallsOffTheReader(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.RefreshEvery = 0 })
	c := th.connectFake(t, "10.0.0.1", protocol.Auth{Mid: 1, Key: "k", RoomID: "live://1"})
	c.send(t, protocol.OpHeartbeat, 1, "")
	c.waitOp(t, protocol.OpHeartbeatReply, 1)
	c.send(t, protocol.OpChangeRoom, 2, "live://2")
	c.waitOp(t, protocol.OpChangeRoomReply, 2)
	if r := th.store.lastRefresh.Load(); r == nil || r.Room != "live://2" {
		t.Fatalf("no refresh with the new room after the room change (last: %+v)", r)
	}
	c.send(t, protocol.OpHeartbeat, 3, "")
	c.waitOp(t, protocol.OpHeartbeatReply, 3)
	if n := th.store.refreshes.Load(); n != 3 {
		t.Fatalf("refreshes = %d, want 3 (two heartbeats, one room change)", n)
	}
	if n := th.store.onReader.Load(); n != 0 {
		t.Fatalf("%d store calls ran on the session's reader", n)
	}
}

// TestKeyMovedToAnotherNode: a newer connection with the session's key on
// another node (its binding in the store) replaces this one at its next
// heartbeat refresh or room change, as a newer connection here would; the
// other node's bindings survive the old session's teardown.
func TestKeyMovedToAnotherNode(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   int32
		body string
	}{
		{"heartbeat", protocol.OpHeartbeat, ""},
		{"room change", protocol.OpChangeRoom, "live://2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th := newTestHub(t, func(c *Config) { c.RefreshEvery = 0 })
			c := th.connectFake(t, "10.0.0.1", protocol.Auth{Mid: 9, Key: "mv", RoomID: "live://1"})
			other := store.Session{Mid: 9, Key: "mv", Node: "other-node"}
			if err := th.store.Bind(context.Background(), other); err != nil {
				t.Fatal(err)
			}
			c.send(t, tc.op, 2, tc.body)
			f := c.waitOp(t, protocol.OpDisconnectReply, -1)
			if string(f.Body) != "replaced by a new connection" {
				t.Fatalf("disconnect reason %q", f.Body)
			}
			eventually(t, "the session closed", c.isClosed)
			eventually(t, "old session torn down", func() bool { return th.sessionsClosed("mv") == 1 })
			for _, g := range c.frames(t) {
				if g.Op == protocol.OpHeartbeatReply || g.Op == protocol.OpChangeRoomReply {
					t.Errorf("replaced session answered op %d", g.Op)
				}
			}
			if n, ok := th.boundNode(t, "mv"); !ok || n != "other-node" {
				t.Errorf("key binding after the teardown: %q %v, want other-node", n, ok)
			}
			if keys := th.keysOf(t, 9); keys["mv"] != "other-node" {
				t.Errorf("mid binding after the teardown: %v", keys)
			}
			if v := metricValue(t, th.metrics.Disconnects.WithLabelValues("replaced")); v != 1 {
				t.Errorf("replaced disconnects = %v, want 1", v)
			}
		})
	}
}

// Heartbeats refresh a session's bindings at most every RefreshEvery, and
// after RefreshAll every session refreshes at once (the pass) and at its
// next heartbeat.
func TestHeartbeatRefreshThrottled(t *testing.T) {
	tests := []struct {
		name  string
		every time.Duration
		want  []int64 // refreshes after each of 3 heartbeats, RefreshAll, 2 more
	}{
		{"every heartbeat", 0, []int64{1, 2, 3, 5, 6}},
		{"at most hourly", time.Hour, []int64{0, 0, 0, 2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := newTestHub(t, func(c *Config) { c.RefreshEvery = tt.every })
			c := th.connectFake(t, "10.0.0.1", protocol.Auth{Mid: 1, Key: "k", RoomID: "live://1"})
			seq := int32(10)
			heartbeat := func() int64 {
				seq++
				c.send(t, protocol.OpHeartbeat, seq, "")
				c.waitOp(t, protocol.OpHeartbeatReply, seq)
				return th.store.refreshes.Load()
			}
			var got []int64
			for range 3 {
				got = append(got, heartbeat())
			}
			th.RefreshAll()
			eventually(t, "the pass to end", func() bool { return th.rebindState.Load() == rebindIdle })
			for range 2 {
				got = append(got, heartbeat())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("refreshes after each heartbeat = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDisconnectAll: every session gets op 6 with the reason, then the
// close; the hub keeps serving new connections.
func TestDisconnectAll(t *testing.T) {
	th := newTestHub(t, nil)
	addr := th.startTCP(t)
	a := dialClient(t, addr, protocol.Auth{Mid: 1, Key: "a", RoomID: "r"})
	b := dialClient(t, addr, protocol.Auth{Mid: 2, Key: "b"})
	if n := th.DisconnectAll("reconnect please"); n != 2 {
		t.Errorf("DisconnectAll reached %d sessions, want 2", n)
	}
	for _, c := range []*client.Client{a, b} {
		fs := readToClose(t, c)
		if len(fs) != 1 || fs[0].Op != protocol.OpDisconnectReply || string(fs[0].Body) != "reconnect please" {
			t.Errorf("got %v before the close, want one op 6", fs)
		}
	}
	dialClient(t, addr, protocol.Auth{Mid: 3, Key: "c"}) // new clients still welcome
}

// TestRefreshAllRebindsNow: after the store lost its bindings, RefreshAll
// binds every session again at once, with no heartbeat, and leaves the
// sessions that are gone unbound.
func TestRefreshAllRebindsNow(t *testing.T) {
	th := newTestHub(t, nil)
	var lost []store.Session
	for i := range 40 {
		key := fmt.Sprintf("k%d", i)
		th.connectFake(t, "10.0.0.1", protocol.Auth{Mid: int64(i + 1), Key: key, RoomID: "live://1"})
		lost = append(lost, store.Session{Mid: int64(i + 1), Key: key, Node: testNodeID})
	}
	gone := th.connectFake(t, "10.0.0.2", protocol.Auth{Mid: 99, Key: "gone"})
	_ = gone.Close()
	eventually(t, "the closed session to leave", func() bool { return th.current("gone") == nil })
	if err := th.store.Store.UnbindMany(t.Context(), lost); err != nil {
		t.Fatal(err)
	}
	th.RefreshAll()
	th.RefreshAll() // coalesces into one more pass
	for _, s := range lost {
		eventually(t, "key "+s.Key+" to be bound again", func() bool {
			node, ok := th.boundNode(t, s.Key)
			return ok && node == testNodeID
		})
	}
	if keys := th.keysOf(t, 7); keys["k6"] != testNodeID {
		t.Errorf("mid 7's keys %v, want k6 on %s", keys, testNodeID)
	}
	eventually(t, "the passes to end", func() bool { return th.rebindState.Load() == rebindIdle })
	if n := th.logs.FilterMessage("sessions rebound after a store loss").Len(); n < 1 || n > 2 {
		t.Errorf("%d rebind passes logged, want 1 or 2", n)
	}
	if node, ok := th.boundNode(t, "gone"); ok {
		t.Errorf("the session that left was bound again, to %s", node)
	}
}

// TestRefreshAllLeavesMovedKeys: a key that a newer connection took on
// another node while this one could not tell (frozen past its lease, say)
// stays there when this node binds its sessions again; the stale session
// here is closed as replaced. The others are bound again.
func TestRefreshAllLeavesMovedKeys(t *testing.T) {
	th := newTestHub(t, nil)
	stale := th.connectFake(t, "", protocol.Auth{Mid: 1, Key: "moved"})
	th.connectFake(t, "", protocol.Auth{Mid: 2, Key: "stayed"})
	newer := store.Session{Mid: 1, Key: "moved", Node: "other-node"}
	if err := th.store.Store.Bind(t.Context(), newer); err != nil {
		t.Fatal(err)
	}
	if err := th.store.Store.UnbindMany(t.Context(), []store.Session{{Mid: 2, Key: "stayed", Node: testNodeID}}); err != nil {
		t.Fatal(err)
	}
	th.RefreshAll()
	eventually(t, "the stale session closed", stale.isClosed)
	if fs := stale.frames(t); fs[len(fs)-1].Op != protocol.OpDisconnectReply || string(fs[len(fs)-1].Body) != "replaced by a new connection" {
		t.Errorf("stale session's last frame %v, want op 6 replaced", fs[len(fs)-1])
	}
	eventually(t, "the other key bound again", func() bool { node, ok := th.boundNode(t, "stayed"); return ok && node == testNodeID })
	eventually(t, "the stale session gone", func() bool { return th.current("moved") == nil })
	if node, _ := th.boundNode(t, "moved"); node != "other-node" {
		t.Errorf("key moved is bound to %q, want the newer connection's other-node", node)
	}
	if keys := th.keysOf(t, 1); keys["moved"] != "other-node" {
		t.Errorf("mid 1's keys %v, want moved on other-node", keys)
	}
}
