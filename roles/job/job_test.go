package job

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/registry"
)

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
	}{
		{"batch size 0", func(c *Config) { c.RoomBatchSize = 0 }},
		{"node queue 0", func(c *Config) { c.NodeQueue = 0 }},
		{"negative window", func(c *Config) { c.RoomBatchWindow = -time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.mut(&cfg)
			if _, err := New(cfg, nil, nil, zap.NewNop(), nil); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
	j, err := New(Config{RoomBatchSize: 1, NodeQueue: 1}, nil, nil, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := j.cfg; c.Retries != 3 || c.RoomBatchBytes != 16*1024 || c.CallTimeout != 5*time.Second || c.EnqueueTimeout != time.Second {
		t.Errorf("defaults = %+v", c)
	}
}

// sentinel proves what a node received before it: per-node delivery is
// FIFO, so once a node's first call is the sentinel broadcast, nothing was
// sent to it earlier.
func sentinel(t *testing.T, j *Job, nodes ...*fakeNode) {
	t.Helper()
	handle(t, j, broadcastMsg("sentinel", 1999, 0, "sentinel"))
	for _, n := range nodes {
		calls := n.waitCalls(t, 1)
		if calls[0].kind != "broadcast" || calls[0].all.GetId() != "sentinel" {
			t.Errorf("node %s received %s %v before the sentinel", n.id, calls[0].kind, calls[0])
		}
	}
}

// TestPushGoesToNamedNode: a PUSH reaches its server only, once, with the
// keys, op, id and the frame protocol.EncodePush(op, msg).
func TestPushGoesToNamedNode(t *testing.T) {
	cl := newCluster()
	cl.register(t, "n1", "n2", "n3")
	j := startJob(t, cl, testConfig(), nil)

	msg := "hello \x00 world"
	handle(t, j.Job, pushMsg("p1", "n2", []string{"a", "b"}, 1001, msg))
	calls := cl.node("n2").waitCalls(t, 1)
	r := calls[0].keys
	if calls[0].kind != "keys" || r.GetId() != "p1" || !slices.Equal(r.GetKeys(), []string{"a", "b"}) || r.GetOperation() != 1001 {
		t.Fatalf("n2 got %v", calls[0])
	}
	if want := protocol.EncodePush(1001, []byte(msg)); !bytes.Equal(r.GetFrame(), want) {
		t.Fatalf("frame = %x, want %x", r.GetFrame(), want)
	}
	sentinel(t, j.Job, cl.node("n1"), cl.node("n3"))
	if got := len(cl.node("n2").waitCalls(t, 2)); got != 2 {
		t.Errorf("n2 has %d calls, want the push and the sentinel", got)
	}
	if v := metricValue(t, j.metrics.Consumed.WithLabelValues("PUSH")); v != 1 {
		t.Errorf("consumed PUSH = %v", v)
	}
}

// TestDropped: messages that are not delivered, and the counter that says
// why.
func TestDropped(t *testing.T) {
	tests := []struct {
		name   string
		msg    func() *pb.PushMsg
		reason string
	}{
		{"unknown node", func() *pb.PushMsg { return pushMsg("x", "ghost", []string{"k"}, 1000, "m") }, "node_gone"},
		{"too old", func() *pb.PushMsg {
			m := pushMsg("x", "n1", []string{"k"}, 1000, "m")
			m.CreatedAt = time.Now().Add(-2 * time.Minute).UnixMilli()
			return m
		}, "too_old"},
		{"too old room", func() *pb.PushMsg {
			m := roomMsg("x", "r", 1000, "m")
			m.CreatedAt = time.Now().Add(-61 * time.Second).UnixMilli()
			return m
		}, "too_old"},
		{"op below 1000", func() *pb.PushMsg { return pushMsg("x", "n1", []string{"k"}, 999, "m") }, "bad_op"},
		{"room without room", func() *pb.PushMsg { return roomMsg("x", "", 1000, "m") }, "no_room"},
		{"unknown type", func() *pb.PushMsg {
			m := broadcastMsg("x", 1000, 0, "m")
			m.Type = pb.PushMsg_Type(9)
			return m
		}, "bad_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCluster()
			cl.register(t, "n1")
			j := startJob(t, cl, testConfig(), nil)
			handle(t, j.Job, tt.msg())
			if v := dropped(t, j.Job, tt.reason); v != 1 {
				t.Errorf("dropped{%s} = %v, want 1", tt.reason, v)
			}
			sentinel(t, j.Job, cl.node("n1"))
		})
	}
}

// TestNoNodes: room pushes and broadcasts while the job sees no cloud node
// are counted as dropped for that reason.
func TestNoNodes(t *testing.T) {
	j := startJob(t, newCluster(), testConfig(), nil)
	handle(t, j.Job, roomMsg("r", "live://1", 1000, "m"))
	handle(t, j.Job, broadcastMsg("b", 1000, 0, "m"))
	if v := dropped(t, j.Job, "no_nodes"); v != 2 {
		t.Errorf("dropped{no_nodes} = %v, want 2", v)
	}
}

// TestMaxAge: only messages older than MaxAge are dropped; a message
// without created_at and one within the age are delivered.
func TestMaxAge(t *testing.T) {
	cl := newCluster()
	cl.register(t, "n1")
	cfg := testConfig()
	cfg.MaxAge = time.Hour
	j := startJob(t, cl, cfg, nil)
	fresh := pushMsg("fresh", "n1", []string{"k"}, 1000, "m")
	fresh.CreatedAt = time.Now().Add(-59 * time.Minute).UnixMilli()
	undated := pushMsg("undated", "n1", []string{"k"}, 1000, "m")
	undated.CreatedAt = 0
	old := pushMsg("old", "n1", []string{"k"}, 1000, "m")
	old.CreatedAt = time.Now().Add(-61 * time.Minute).UnixMilli()
	for _, m := range []*pb.PushMsg{old, fresh, undated} {
		handle(t, j.Job, m)
	}
	calls := cl.node("n1").waitCalls(t, 2)
	if calls[0].keys.GetId() != "fresh" || calls[1].keys.GetId() != "undated" {
		t.Fatalf("delivered %s, %s", calls[0].keys.GetId(), calls[1].keys.GetId())
	}
	if v := dropped(t, j.Job, "too_old"); v != 1 {
		t.Errorf("dropped too_old = %v", v)
	}
	handle(t, j.Job, pushMsg("after", "n1", []string{"k"}, 1000, "m"))
	if calls := cl.node("n1").waitCalls(t, 3); len(calls) != 3 || calls[2].keys.GetId() != "after" {
		t.Errorf("the old push was delivered after all: %d calls", len(calls))
	}
}

// TestMaxAgeInNodeQueue: a push that waits in a node's queue past MaxAge
// (the node, or this job, frozen meanwhile) is dropped, not delivered late:
// by mid, to a room (a batch is as old as its oldest message, and so is a
// merge of batches) and to everyone.
func TestMaxAgeInNodeQueue(t *testing.T) {
	tests := []struct {
		name   string
		merge  bool
		queued func() []*pb.PushMsg // made when the case runs: they are stamped with the time
	}{
		{"push", false, func() []*pb.PushMsg { return []*pb.PushMsg{pushMsg("queued", "n1", []string{"k"}, 1000, "m")} }},
		{"room", false, func() []*pb.PushMsg { return []*pb.PushMsg{roomMsg("queued", "live://1", 1000, "m")} }},
		{"merged rooms", true, func() []*pb.PushMsg {
			return []*pb.PushMsg{roomMsg("queued", "live://1", 1000, "m"), roomMsg("queued2", "live://1", 1000, "m")}
		}},
		{"broadcast", false, func() []*pb.PushMsg { return []*pb.PushMsg{broadcastMsg("queued", 1000, 0, "m")} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCluster()
			cl.register(t, "n1")
			cfg := testConfig()
			cfg.MaxAge = 300 * time.Millisecond
			cfg.RoomBatchWindow = 0
			cfg.NoMerge = !tt.merge
			j := startJob(t, cl, cfg, nil)
			n1 := cl.node("n1")
			n1.hold()
			handle(t, j.Job, pushMsg("first", "n1", []string{"k"}, 1000, "m"))
			eventually(t, "n1 busy", func() bool { _, e := n1.counts(); return e == 1 })
			queued := tt.queued()
			for _, m := range queued {
				handle(t, j.Job, m)
			}
			// first is in its call, held by the node; the rest waits behind it.
			eventually(t, "pushes waiting for n1", func() bool { return j.NodeQueues()["n1"] == len(queued) })
			time.Sleep(2 * cfg.MaxAge)
			n1.release()
			eventually(t, "the queued pushes dropped as too old", func() bool { return dropped(t, j.Job, "too_old") >= 1 })
			handle(t, j.Job, pushMsg("after", "n1", []string{"k"}, 1000, "m"))
			eventually(t, "the next push delivered", func() bool {
				calls := n1.snapshot()
				return len(calls) > 0 && calls[len(calls)-1].keys.GetId() == "after"
			})
			for _, c := range n1.snapshot() {
				if c.kind != "keys" || c.keys.GetId() != "first" && c.keys.GetId() != "after" {
					t.Errorf("delivered although it waited past MaxAge: %+v", c)
				}
			}
		})
	}
}

// TestMaxAgeKeepsFreshBatches: a room batch that waited past MaxAge is
// dropped alone; a fresh batch of the same room queued behind it, which
// the node would otherwise merge with it, is delivered.
func TestMaxAgeKeepsFreshBatches(t *testing.T) {
	cl := newCluster()
	cl.register(t, "n1")
	cfg := testConfig()
	cfg.MaxAge = 300 * time.Millisecond
	cfg.RoomBatchWindow = 0
	cfg.NoMerge = false
	j := startJob(t, cl, cfg, nil)
	n1 := cl.node("n1")
	n1.hold()
	handle(t, j.Job, pushMsg("first", "n1", []string{"k"}, 1000, "m"))
	eventually(t, "n1 busy", func() bool { _, e := n1.counts(); return e == 1 })
	handle(t, j.Job, roomMsg("old", "live://1", 1000, "m"))
	time.Sleep(2 * cfg.MaxAge)
	handle(t, j.Job, roomMsg("fresh", "live://1", 1000, "m"))
	eventually(t, "two batches waiting for n1", func() bool { return j.NodeQueues()["n1"] == 2 })
	n1.release()
	calls := n1.waitCalls(t, 2)
	if c := calls[1]; c.kind != "room" || !slices.Equal(c.room.GetIds(), []string{"fresh"}) {
		t.Errorf("second call %+v, want the fresh batch alone", c)
	}
	if got := dropped(t, j.Job, "too_old"); got != 1 {
		t.Errorf("dropped too_old = %v, want 1", got)
	}
}

// TestNodeQueues: what waits for a busy node is reported per node.
func TestNodeQueues(t *testing.T) {
	cl := newCluster()
	cl.register(t, "a", "b")
	j := startJob(t, cl, testConfig(), nil)
	cl.node("a").hold()
	for i := range 5 {
		handle(t, j.Job, pushMsg("p"+strconv.Itoa(i), "a", []string{"k"}, 1000, "x"))
	}
	handle(t, j.Job, pushMsg("q", "b", []string{"k"}, 1000, "x"))
	cl.node("b").waitCalls(t, 1)
	// One call to a is in progress at the gate, the other four wait.
	eventually(t, "four deliveries queued for a", func() bool {
		q := j.NodeQueues()
		return q["a"] == 4 && q["b"] == 0 && len(q) == 2
	})
	cl.node("a").release()
	cl.node("a").waitCalls(t, 5)
	if q := j.NodeQueues(); q["a"] != 0 {
		t.Fatalf("after the node caught up: %v", q)
	}
}

// TestBroadcastSpeedSplit: a broadcast's speed caps the cluster, each
// node's share in proportion to the connections it reported.
func TestBroadcastSpeedSplit(t *testing.T) {
	cl := newCluster()
	for id, conns := range map[string]int64{"a": 300, "b": 100, "c": 0} {
		cl.node(id)
		if err := cl.reg.Register(context.Background(), registry.Node{ID: id, Role: registry.RoleCloud, GRPCAddr: id + ":3109", Conns: conns}); err != nil {
			t.Fatal(err)
		}
	}
	j := startJob(t, cl, testConfig(), nil)
	handle(t, j.Job, broadcastMsg("b1", 1000, 1000, "paced"))
	handle(t, j.Job, broadcastMsg("b2", 1000, 0, "unpaced"))
	for id, want := range map[string]int32{"a": 750, "b": 250, "c": 334} {
		calls := cl.node(id).waitCalls(t, 2)
		if got := calls[0].all.GetSpeed(); got != want {
			t.Errorf("node %s: speed %d, want %d", id, got, want)
		}
		if got := calls[1].all.GetSpeed(); got != 0 {
			t.Errorf("node %s: speed %d for an unpaced broadcast, want 0", id, got)
		}
	}
}

func TestSpeedShares(t *testing.T) {
	nodes := func(conns ...int64) []int64 { return conns }
	tests := []struct {
		name  string
		speed int32
		nodes []int64
		want  []int32
	}{
		{"no cap", 0, nodes(5, 5), []int32{0, 0}},
		{"negative is no cap", -3, nodes(5), []int32{0}},
		{"one node takes it all", 500, nodes(42), []int32{500}},
		{"by connections", 1000, nodes(600, 300, 100), []int32{600, 300, 100}},
		{"rounded up", 10, nodes(1, 1, 1), []int32{4, 4, 4}},
		{"nobody reported", 100, nodes(0, 0, 0, 0), []int32{25, 25, 25, 25}},
		{"a silent node gets an even share", 90, nodes(0, 50, 100), []int32{30, 30, 60}},
		{"at least one per second", 3, nodes(1_000_000, 1), []int32{3, 1}},
		{"large counts do not overflow", 2_000_000_000, nodes(30_000_000, 10_000_000), []int32{1_500_000_000, 500_000_000}},
		{"no nodes", 100, nil, []int32{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := speedShares(tt.speed, tt.nodes); !slices.Equal(got, tt.want) {
				t.Fatalf("speedShares(%d, %v) = %v, want %v", tt.speed, tt.nodes, got, tt.want)
			}
		})
	}
}

// TestRoomAndBroadcastReachEveryNode: one queue message, one call per node.
func TestRoomAndBroadcastReachEveryNode(t *testing.T) {
	tests := []struct {
		name  string
		msg   *pb.PushMsg
		check func(t *testing.T, c nodeCall)
	}{
		{"room", roomMsg("r1", "live://7", 1002, "to the room"), func(t *testing.T, c nodeCall) {
			r := c.room
			if c.kind != "room" || r.GetRoom() != "live://7" || !slices.Equal(r.GetIds(), []string{"r1"}) ||
				!bytes.Equal(r.GetFrames(), protocol.EncodePush(1002, []byte("to the room"))) {
				t.Errorf("got %v", c)
			}
		}},
		{"broadcast", broadcastMsg("b1", 1003, 250, "to all"), func(t *testing.T, c nodeCall) {
			r := c.all
			// No node reported connections: the cap is split evenly.
			if c.kind != "broadcast" || r.GetId() != "b1" || r.GetOperation() != 1003 || r.GetSpeed() != 63 ||
				!bytes.Equal(r.GetFrame(), protocol.EncodePush(1003, []byte("to all"))) {
				t.Errorf("got %v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCluster()
			ids := []string{"a", "b", "c", "d"}
			cl.register(t, ids...)
			j := startJob(t, cl, testConfig(), nil)
			handle(t, j.Job, tt.msg)
			handle(t, j.Job, pushMsg("marker", "a", nil, 1000, ""))
			handle(t, j.Job, pushMsg("marker", "b", nil, 1000, ""))
			handle(t, j.Job, pushMsg("marker", "c", nil, 1000, ""))
			handle(t, j.Job, pushMsg("marker", "d", nil, 1000, ""))
			for _, id := range ids {
				calls := cl.node(id).waitCalls(t, 2)
				if len(calls) != 2 || calls[1].kind != "keys" {
					t.Fatalf("node %s: %d calls, want the message once then the marker", id, len(calls))
				}
				tt.check(t, calls[0])
			}
		})
	}
}

// TestRetries: a node that fails and then recovers gets the call; one that
// keeps failing is given up on after Retries further attempts, and the
// next delivery is not held up by it.
func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		retries      int
		fail         int
		wantAttempts int
		wantOK       float64
		wantRetry    float64
		wantFailed   float64
	}{
		{"fails twice, default retries", 0, 2, 3, 1, 2, 0},
		{"fails three times, default retries", 0, 3, 4, 1, 3, 0},
		{"fails past the bound", 1, 5, 2, 0, 1, 1},
		{"no retries", -1, 1, 1, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCluster()
			cl.register(t, "n1")
			cfg := testConfig()
			cfg.Retries = tt.retries
			j := startJob(t, cl, cfg, nil)
			n := cl.node("n1")
			n.failTimes(tt.fail)
			handle(t, j.Job, pushMsg("p", "n1", []string{"k"}, 1000, "m"))
			calls := j.metrics.Calls
			eventually(t, "the push settled", func() bool {
				return metricValue(t, calls.WithLabelValues("ok"))+metricValue(t, calls.WithLabelValues("failed")) == 1
			})
			if a, _ := n.counts(); a != tt.wantAttempts {
				t.Errorf("attempts = %d, want %d", a, tt.wantAttempts)
			}
			for result, want := range map[string]float64{"ok": tt.wantOK, "retry": tt.wantRetry, "failed": tt.wantFailed} {
				if v := metricValue(t, calls.WithLabelValues(result)); v != want {
					t.Errorf("calls{%s} = %v, want %v", result, v, want)
				}
			}
			if got := len(n.snapshot()); got != int(tt.wantOK) {
				t.Errorf("delivered %d times", got)
			}
			n.failTimes(0)
			handle(t, j.Job, pushMsg("next", "n1", []string{"k"}, 1000, "m"))
			if c := n.waitCalls(t, int(tt.wantOK)+1); c[len(c)-1].keys.GetId() != "next" {
				t.Errorf("next push not delivered")
			}
		})
	}
}

// TestNodeLeaves: a node that leaves the registry is given up at once: its
// call in flight is cancelled, what was queued for it is skipped (counted as
// node_gone, as DESIGN says for departed nodes), its client is closed, and
// later pushes for it are skipped while the others go on. A node that comes
// back is dialled anew.
func TestNodeLeaves(t *testing.T) {
	cl := newCluster()
	cl.register(t, "stay", "go")
	j := startJob(t, cl, testConfig(), nil) // CallTimeout 1 min: only leaving ends the held call
	goNode := cl.node("go")
	goNode.hold()
	for i := range 3 {
		handle(t, j.Job, pushMsg("q"+strconv.Itoa(i), "go", []string{"k"}, 1000, "m"))
	}
	eventually(t, "first call held", func() bool { _, e := goNode.counts(); return e == 1 })

	cl.deregister(t, "go")
	waitNodes(t, j.Job, "stay")
	eventually(t, "client closed", func() bool { return cl.closes("go") == 1 })
	goNode.release()
	if calls := goNode.snapshot(); len(calls) != 0 {
		t.Errorf("departed node completed %d calls, want its queue skipped", len(calls))
	}
	if v := dropped(t, j.Job, "node_gone"); v != 3 {
		t.Errorf("dropped node_gone = %v, want 3 (the cancelled call and two queued)", v)
	}
	if v := metricValue(t, j.metrics.Nodes); v != 1 {
		t.Errorf("nodes gauge = %v", v)
	}

	handle(t, j.Job, pushMsg("late", "go", []string{"k"}, 1000, "m"))
	if v := dropped(t, j.Job, "node_gone"); v != 4 {
		t.Errorf("dropped node_gone = %v", v)
	}
	sentinel(t, j.Job, cl.node("stay"))
	if calls := goNode.snapshot(); len(calls) != 0 {
		t.Errorf("departed node got %d calls", len(calls))
	}

	cl.register(t, "go")
	waitNodes(t, j.Job, "go", "stay")
	handle(t, j.Job, pushMsg("back", "go", []string{"k"}, 1000, "m"))
	if calls := goNode.waitCalls(t, 1); calls[0].keys.GetId() != "back" {
		t.Errorf("returning node got %v", calls[0])
	}
	cl.mu.Lock()
	events := slices.Clone(cl.events)
	cl.mu.Unlock()
	var goEvents []string
	for _, e := range events {
		if e == "dial:go" || e == "close:go" {
			goEvents = append(goEvents, e)
		}
	}
	if !slices.Equal(goEvents, []string{"dial:go", "close:go", "dial:go"}) {
		t.Errorf("dial/close sequence = %v", goEvents)
	}
}

// TestNodeAddressChangeRedials: the same id with a new gRPC address is a
// new connection.
func TestNodeAddressChangeRedials(t *testing.T) {
	cl := newCluster()
	cl.register(t, "n1")
	j := startJob(t, cl, testConfig(), nil)
	if err := cl.reg.Update(context.Background(), registry.Node{ID: "n1", Role: registry.RoleCloud, GRPCAddr: "elsewhere:1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "old client closed", func() bool { return cl.closes("n1") == 1 })
	waitNodes(t, j.Job, "n1")
	handle(t, j.Job, pushMsg("p", "n1", []string{"k"}, 1000, "m"))
	cl.node("n1").waitCalls(t, 1)
}

// TestBlockedNodeDoesNotStall: with one node stuck (NodeQueue 1, a small
// EnqueueTimeout), Handle keeps returning and the other node gets every
// message, in order, while the stuck one has not completed a single call.
// The stuck node's overflow is dropped and counted; what was queued for it
// arrives once it recovers.
func TestBlockedNodeDoesNotStall(t *testing.T) {
	cl := newCluster()
	cl.register(t, "stuck", "ok")
	cfg := testConfig()
	cfg.NodeQueue = 1
	cfg.EnqueueTimeout = 10 * time.Millisecond
	j := startJob(t, cl, cfg, nil)
	stuck, ok := cl.node("stuck"), cl.node("ok")
	stuck.hold()

	const n = 40
	for i := range n {
		done := make(chan error, 1)
		go func() { done <- j.Handle(context.Background(), broadcastMsg(strconv.Itoa(i), 1000, 0, "m")) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Handle %d: %v", i, err)
			}
		case <-time.After(waitFor):
			t.Fatalf("Handle %d stalled behind the stuck node", i)
		}
		// Waiting for ok to take each message keeps its own queue empty, so
		// none of its deliveries can be dropped, however slow the machine.
		calls := ok.waitCalls(t, i+1)
		if id := calls[i].all.GetId(); id != strconv.Itoa(i) {
			t.Fatalf("ok node's call %d has id %s", i, id)
		}
	}
	if got := len(stuck.snapshot()); got != 0 {
		t.Fatalf("stuck node completed %d calls while held", got)
	}
	// One call in flight and one queued at most: the rest were dropped.
	full := dropped(t, j.Job, "node_queue_full")
	if full < n-2 || full > n-1 {
		t.Errorf("dropped node_queue_full = %v, want %d or %d", full, n-2, n-1)
	}
	stuck.release()
	eventually(t, "stuck node drained", func() bool { return len(stuck.snapshot())+int(full) == n })
	prev := -1
	for _, c := range stuck.snapshot() {
		id, _ := strconv.Atoi(c.all.GetId())
		if id <= prev {
			t.Fatalf("stuck node got %d after %d", id, prev)
		}
		prev = id
	}
}

// TestSaturatedNodeCostsOneWait: once a hung node's queue stayed full for
// EnqueueTimeout, later deliveries to it are dropped without waiting (here
// the timeout is then raised to an hour, which each of them would
// otherwise sit out), so room messages keep reaching the healthy node at
// full pace. When the hung node has worked its queue down, it takes
// deliveries again.
func TestSaturatedNodeCostsOneWait(t *testing.T) {
	cl := newCluster()
	cl.register(t, "hung", "ok")
	cfg := testConfig()
	cfg.NodeQueue = 4
	cfg.RoomBatchWindow = 0 // no timer goroutine reads the config
	cfg.EnqueueTimeout = 20 * time.Millisecond
	j := startJob(t, cl, cfg, nil)
	hung, ok := cl.node("hung"), cl.node("ok")
	hung.hold()
	handle(t, j.Job, pushMsg("in-flight", "hung", []string{"k"}, 1000, "m"))
	eventually(t, "hung node busy", func() bool { _, e := hung.counts(); return e == 1 })
	for i := range cfg.NodeQueue {
		handle(t, j.Job, pushMsg("queued"+strconv.Itoa(i), "hung", []string{"k"}, 1000, "m"))
	}
	handle(t, j.Job, roomMsg("r0", "live://1", 1000, "m")) // waits 20 ms for hung, then drops it there
	if got := dropped(t, j.Job, "node_queue_full"); got != 1 {
		t.Fatalf("dropped node_queue_full = %v after the first wait, want 1", got)
	}

	const more = 50
	j.cfg.EnqueueTimeout = time.Hour
	go func() {
		for i := 1; i <= more; i++ {
			handle(t, j.Job, roomMsg("r"+strconv.Itoa(i), "live://1", 1000, "m"))
		}
	}()
	calls := ok.waitCalls(t, more+1)
	for i, c := range calls {
		if id := c.room.GetIds()[0]; id != "r"+strconv.Itoa(i) {
			t.Fatalf("ok node's call %d is %s", i, id)
		}
	}
	if got := dropped(t, j.Job, "node_queue_full"); got != more+1 {
		t.Errorf("dropped node_queue_full = %v, want %d", got, more+1)
	}

	hung.release()
	hung.waitCalls(t, 1+cfg.NodeQueue)
	handle(t, j.Job, roomMsg("after", "live://1", 1000, "m"))
	got := hung.waitCalls(t, 2+cfg.NodeQueue)
	if last := got[len(got)-1]; last.kind != "room" || last.room.GetIds()[0] != "after" {
		t.Errorf("hung node's last call after recovering: %+v", last)
	}
	if got := dropped(t, j.Job, "node_queue_full"); got != more+1 {
		t.Errorf("dropped node_queue_full = %v after recovery, want %d", got, more+1)
	}
}

// TestEnqueueHonoursContext: a Handle waiting on a full node queue returns
// the context's error when it ends first.
func TestEnqueueHonoursContext(t *testing.T) {
	cl := newCluster()
	cl.register(t, "n1")
	cfg := testConfig()
	cfg.NodeQueue = 1
	cfg.EnqueueTimeout = time.Hour
	j := startJob(t, cl, cfg, nil)
	n := cl.node("n1")
	n.hold()
	handle(t, j.Job, pushMsg("1", "n1", nil, 1000, ""))
	eventually(t, "held", func() bool { _, e := n.counts(); return e == 1 })
	handle(t, j.Job, pushMsg("2", "n1", nil, 1000, ""))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := j.Handle(ctx, pushMsg("3", "n1", nil, 1000, "")); err == nil {
		t.Fatal("Handle on a full queue with a cancelled context returned nil")
	}
}

// TestLocalDialer: the own node id gets the local client, others go to next.
func TestLocalDialer(t *testing.T) {
	local := &fakeNode{id: "self"}
	remote := &fakeNode{id: "remote"}
	var asked []string
	next := func(_ context.Context, n registry.Node) (CloudClient, io.Closer, error) {
		asked = append(asked, n.ID)
		return remote, nil, nil
	}
	d := LocalDialer("self", local, next)
	tests := []struct {
		id   string
		want CloudClient
	}{{"self", local}, {"other", remote}}
	for _, tt := range tests {
		c, closer, err := d(context.Background(), registry.Node{ID: tt.id})
		if err != nil || c != tt.want {
			t.Errorf("dial %s = %v, %v", tt.id, c, err)
		}
		if tt.id == "self" && closer != nil {
			t.Errorf("local client has a closer")
		}
	}
	if !slices.Equal(asked, []string{"other"}) {
		t.Errorf("next asked for %v", asked)
	}
	if _, _, err := GRPCDialer(context.Background(), registry.Node{ID: "x"}); err == nil {
		t.Error("GRPCDialer accepted a node without an address")
	}
}

// TestDepartedNodeDoesNotBlockRegistry: a node that leaves the registry
// while it hangs (a partition: every call runs into CallTimeout) must not
// stop the job from following the registry. Today Run calls node.stop()
// synchronously from setNodes, and stop waits for the worker to drain the
// departed node's whole queue with full retries (attempt after attempt,
// each bounded only by CallTimeout), so until then a node that joins is
// not dialled and PUSHes to it are dropped as node_gone. With defaults that
// is up to NodeQueue(4096) x (Retries+1) x CallTimeout(5s).
func TestDepartedNodeDoesNotBlockRegistry(t *testing.T) {
	cl := newCluster()
	cl.register(t, "hung", "a")
	j := startJob(t, cl, testConfig(), nil) // CallTimeout 1 min
	hung := cl.node("hung")
	hung.hold()
	handle(t, j.Job, pushMsg("1", "hung", nil, 1000, ""))
	handle(t, j.Job, pushMsg("2", "hung", nil, 1000, ""))
	eventually(t, "hung call in flight", func() bool { _, e := hung.counts(); return e == 1 })

	cl.deregister(t, "hung")
	cl.register(t, "new")
	waitNodes(t, j.Job, "a", "new") // fails: Run is stuck in hung's stop()
	handle(t, j.Job, pushMsg("3", "new", nil, 1000, ""))
	cl.node("new").waitCalls(t, 1)
}
