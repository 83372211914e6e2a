package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/registry"
	regmem "github.com/imcloud/imcloud/registry/memory"
)

// Generous bounds: the machine is shared and noisy; nothing asserts speed.
const (
	waitFor   = 15 * time.Second
	pollEvery = 2 * time.Millisecond
)

func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pollEvery)
	}
}

// metricValue reads a counter or gauge (prometheus/testutil's dependencies
// are not in go.sum).
func metricValue(tb testing.TB, m prometheus.Metric) float64 {
	tb.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		tb.Fatalf("read metric: %v", err)
	}
	switch {
	case d.Counter != nil:
		return d.GetCounter().GetValue()
	case d.Gauge != nil:
		return d.GetGauge().GetValue()
	}
	tb.Fatalf("not a counter or gauge: %v", &d)
	return 0
}

func dropped(tb testing.TB, j *Job, reason string) float64 {
	tb.Helper()
	return metricValue(tb, j.metrics.Dropped.WithLabelValues(reason))
}

// ---------------------------------------------------------------------------
// fakeNode: a recording CloudClient for one cloud node.

// nodeCall is one successful call, in the order the node received it.
type nodeCall struct {
	kind string // "keys", "room", "broadcast"
	keys *pb.PushKeysReq
	room *pb.BroadcastRoomReq
	all  *pb.BroadcastReq
}

type fakeNode struct {
	id      string
	discard bool // benchmarks: count only

	mu       sync.Mutex
	calls    []nodeCall
	attempts int
	failNext int           // the next failNext calls fail
	gate     chan struct{} // non-nil: calls wait for it to close (or ctx)
	entered  int           // calls that reached the gate
}

var errInjected = errors.New("injected failure")

func (n *fakeNode) do(ctx context.Context, c nodeCall) error {
	n.mu.Lock()
	n.attempts++
	gate := n.gate
	if gate != nil {
		n.entered++
	}
	n.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failNext > 0 {
		n.failNext--
		return errInjected
	}
	if !n.discard {
		n.calls = append(n.calls, c)
	}
	return nil
}

func (n *fakeNode) PushKeys(ctx context.Context, r *pb.PushKeysReq) (*pb.PushKeysReply, error) {
	return &pb.PushKeysReply{Delivered: int32(len(r.GetKeys()))}, n.do(ctx, nodeCall{kind: "keys", keys: r})
}

func (n *fakeNode) BroadcastRoom(ctx context.Context, r *pb.BroadcastRoomReq) (*pb.BroadcastRoomReply, error) {
	return &pb.BroadcastRoomReply{}, n.do(ctx, nodeCall{kind: "room", room: r})
}

func (n *fakeNode) Broadcast(ctx context.Context, r *pb.BroadcastReq) (*pb.BroadcastReply, error) {
	return &pb.BroadcastReply{}, n.do(ctx, nodeCall{kind: "broadcast", all: r})
}

func (n *fakeNode) snapshot() []nodeCall {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.calls)
}

func (n *fakeNode) waitCalls(tb testing.TB, count int) []nodeCall {
	tb.Helper()
	var got []nodeCall
	eventually(tb, fmt.Sprintf("%d calls on %s", count, n.id), func() bool {
		got = n.snapshot()
		return len(got) >= count
	})
	return got
}

func (n *fakeNode) hold() {
	n.mu.Lock()
	if n.gate == nil {
		n.gate = make(chan struct{})
	}
	n.mu.Unlock()
}

func (n *fakeNode) release() {
	n.mu.Lock()
	if n.gate != nil {
		close(n.gate)
		n.gate = nil
	}
	n.mu.Unlock()
}

func (n *fakeNode) failTimes(k int) {
	n.mu.Lock()
	n.failNext = k
	n.mu.Unlock()
}

func (n *fakeNode) counts() (attempts, entered int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.attempts, n.entered
}

// roomFrames returns the frames of every room call, in order.
func roomFrames(tb testing.TB, calls []nodeCall) []protocol.Frame {
	tb.Helper()
	var out []protocol.Frame
	for _, c := range calls {
		if c.kind != "room" {
			continue
		}
		if err := protocol.Split(c.room.GetFrames(), func(f protocol.Frame) error {
			out = append(out, f)
			return nil
		}); err != nil {
			tb.Fatalf("room call with malformed frames: %v", err)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// cluster: a memory registry of fake nodes and a Dialer for them.

type cluster struct {
	reg *regmem.Registry

	mu     sync.Mutex
	nodes  map[string]*fakeNode
	closed map[string]int
	events []string // "dial:<id>", "close:<id>"
}

func newCluster() *cluster {
	return &cluster{reg: regmem.New(), nodes: map[string]*fakeNode{}, closed: map[string]int{}}
}

// node returns the fake for id, creating it.
func (c *cluster) node(id string) *fakeNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[id]
	if n == nil {
		n = &fakeNode{id: id}
		c.nodes[id] = n
	}
	return n
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func (c *cluster) dial(_ context.Context, info registry.Node) (CloudClient, io.Closer, error) {
	n := c.node(info.ID)
	c.mu.Lock()
	c.events = append(c.events, "dial:"+info.ID)
	c.mu.Unlock()
	return n, closerFunc(func() error {
		c.mu.Lock()
		c.closed[info.ID]++
		c.events = append(c.events, "close:"+info.ID)
		c.mu.Unlock()
		return nil
	}), nil
}

func (c *cluster) closes(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed[id]
}

func (c *cluster) register(tb testing.TB, ids ...string) {
	tb.Helper()
	for _, id := range ids {
		c.node(id)
		if err := c.reg.Register(context.Background(), registry.Node{ID: id, Role: registry.RoleCloud, GRPCAddr: id + ":3109"}); err != nil {
			tb.Fatal(err)
		}
	}
}

func (c *cluster) deregister(tb testing.TB, id string) {
	tb.Helper()
	if err := c.reg.Deregister(context.Background(), registry.RoleCloud, id); err != nil {
		tb.Fatal(err)
	}
}

func (c *cluster) releaseAll() {
	c.mu.Lock()
	all := make([]*fakeNode, 0, len(c.nodes))
	for _, n := range c.nodes {
		all = append(all, n)
	}
	c.mu.Unlock()
	for _, n := range all {
		n.release()
	}
}

func testConfig() Config {
	return Config{
		RoomBatchWindow: 5 * time.Millisecond,
		RoomBatchSize:   64,
		NodeQueue:       1024,
		MaxAge:          time.Minute,
		CallTimeout:     time.Minute, // a held fake call must not time out mid-test
		NoMerge:         true,        // batches are observed call by call; merging has its own test
	}
}

// runningJob is a Job with Run going; stop ends Run (idempotent).
type runningJob struct {
	*Job
	stop func()
}

// startJob runs a job over the cluster's registry and waits until it knows
// the registered nodes. Cleanup releases held nodes and stops Run.
func startJob(tb testing.TB, cl *cluster, cfg Config, dial Dialer) *runningJob {
	tb.Helper()
	if dial == nil {
		dial = cl.dial
	}
	j, err := New(cfg, cl.reg, dial, zap.NewNop(), nil)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cl.releaseAll()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Run: %v", err)
				}
			case <-time.After(waitFor):
				tb.Errorf("Run did not return after cancel")
			}
		})
	}
	tb.Cleanup(stop)
	select {
	case <-j.Ready():
	case <-time.After(waitFor):
		tb.Fatal("job never became ready")
	}
	nodes, err := cl.reg.Nodes(context.Background(), registry.RoleCloud)
	if err != nil {
		tb.Fatal(err)
	}
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	waitNodes(tb, j, ids...)
	return &runningJob{Job: j, stop: stop}
}

// waitNodes waits until the job delivers to exactly ids.
func waitNodes(tb testing.TB, j *Job, ids ...string) {
	tb.Helper()
	eventually(tb, fmt.Sprintf("job nodes = %v", ids), func() bool {
		j.mu.RLock()
		defer j.mu.RUnlock()
		if len(j.nodes) != len(ids) {
			return false
		}
		for _, id := range ids {
			if j.nodes[id] == nil {
				return false
			}
		}
		return true
	})
}

func handle(tb testing.TB, j *Job, m *pb.PushMsg) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := j.Handle(ctx, m); err != nil {
		tb.Fatalf("Handle(%v): %v", m, err)
	}
}

func nowMs() int64 { return time.Now().UnixMilli() }

func pushMsg(id, server string, keys []string, op int32, msg string) *pb.PushMsg {
	return &pb.PushMsg{Version: 1, Id: id, CreatedAt: nowMs(), Type: pb.PushMsg_PUSH, Operation: op, Server: server, Keys: keys, Msg: []byte(msg)}
}

func roomMsg(id, room string, op int32, msg string) *pb.PushMsg {
	return &pb.PushMsg{Version: 1, Id: id, CreatedAt: nowMs(), Type: pb.PushMsg_ROOM, Operation: op, Room: room, Msg: []byte(msg)}
}

func broadcastMsg(id string, op, speed int32, msg string) *pb.PushMsg {
	return &pb.PushMsg{Version: 1, Id: id, CreatedAt: nowMs(), Type: pb.PushMsg_BROADCAST, Operation: op, Speed: speed, Msg: []byte(msg)}
}
