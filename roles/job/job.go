package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/internal/logthin"
	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/registry"
)

// Config tunes delivery; roles fills it from the job section.
type Config struct {
	RoomBatchWindow time.Duration // longest a room message waits to be batched; 0 sends at once
	RoomBatchSize   int           // messages that flush a room batch early
	RoomBatchBytes  int           // bytes that flush a room batch early; default 16 KiB
	NodeQueue       int           // deliveries queued per node
	MaxAge          time.Duration // older pushes are dropped
	CallTimeout     time.Duration // bound on one call to a node; default 5s
	Retries         int           // further attempts after a failed call; default 3
	EnqueueTimeout  time.Duration // how long Handle waits on a full node queue before dropping (once per episode, see node.enqueue); default 1s
	// NoMerge keeps every room batch a call of its own, even when several
	// of one room queue up for a busy node (tests of the batcher use it).
	NoMerge bool
}

// Watcher follows the cloud nodes (registry.Watcher).
type Watcher interface {
	Watch(ctx context.Context, role string) (<-chan []registry.Node, error)
}

// Job routes queue messages to cloud nodes.
type Job struct {
	cfg     Config
	log     *zap.Logger
	metrics *Metrics
	watch   Watcher
	dial    Dialer
	now     func() time.Time
	old     logthin.Gate // "push dropped: too old" lines: a backlog comes at once

	mu    sync.RWMutex
	nodes map[string]*node

	roomsMu sync.Mutex
	rooms   map[string]*roomBatch

	ready chan struct{} // closed once the first node list is in
	once  sync.Once
}

// New creates a job. Run must be running for deliveries to happen.
func New(cfg Config, w Watcher, dial Dialer, log *zap.Logger, m *Metrics) (*Job, error) {
	if cfg.RoomBatchSize < 1 || cfg.NodeQueue < 1 || cfg.RoomBatchWindow < 0 {
		return nil, errors.New("job: room batch size and node queue must be positive, the window not negative")
	}
	if cfg.RoomBatchBytes <= 0 {
		cfg.RoomBatchBytes = 16 * 1024
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	} else if cfg.Retries == 0 {
		cfg.Retries = 3
	}
	if cfg.EnqueueTimeout <= 0 {
		cfg.EnqueueTimeout = time.Second
	}
	if m == nil {
		var err error
		if m, err = NewMetrics(nil); err != nil {
			return nil, err
		}
	}
	return &Job{
		cfg: cfg, log: log, metrics: m, watch: w, dial: dial, now: time.Now,
		nodes: map[string]*node{}, rooms: map[string]*roomBatch{}, ready: make(chan struct{}),
		old: logthin.Gate{Every: thinEvery},
	}, nil
}

// Ready is closed once the job knows the cloud nodes.
func (j *Job) Ready() <-chan struct{} { return j.ready }

// Run follows the registry until ctx ends, then stops every node worker
// after it has drained its queue.
func (j *Job) Run(ctx context.Context) error {
	ch, err := registry.WatchWait(ctx, j.watch, registry.RoleCloud, j.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("job: watch cloud nodes: %w", err)
	}
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			j.flushRooms()
			j.stopAll()
			return nil
		case list, ok := <-ch:
			if !ok {
				j.flushRooms()
				j.stopAll()
				return nil
			}
			j.setNodes(ctx, list)
			j.once.Do(func() { close(j.ready) })
		case <-sweep.C:
			j.sweepRooms()
		}
	}
}

// setNodes starts workers for new nodes and stops gone ones in the
// background: what was queued for a node that left is skipped, as DESIGN
// says, and a hung node cannot hold up the registry loop.
func (j *Job) setNodes(ctx context.Context, list []registry.Node) {
	want := make(map[string]registry.Node, len(list))
	for _, n := range list {
		want[n.ID] = n
	}
	j.mu.Lock()
	var gone []*node
	for id, n := range j.nodes {
		if w, ok := want[id]; !ok || w.GRPCAddr != n.info.GRPCAddr {
			gone = append(gone, n)
			delete(j.nodes, id)
		}
	}
	for id, info := range want {
		if n, ok := j.nodes[id]; ok {
			n.info = info
			continue
		}
		client, closer, err := j.dial(ctx, info)
		if err != nil {
			j.log.Error("cannot reach cloud node", zap.String("node", id), zap.Error(err))
			continue
		}
		n := newNode(j, info, client, closer)
		j.nodes[id] = n
		go n.run()
		j.log.Info("cloud node joined", zap.String("node", id), zap.String("grpc", info.GRPCAddr))
	}
	j.metrics.Nodes.Set(float64(len(j.nodes)))
	j.mu.Unlock()
	for _, n := range gone {
		j.log.Info("cloud node left", zap.String("node", n.info.ID))
		go n.stop(false)
	}
}

// stopAll stops every node worker after it delivered what is queued
// (shutdown: in-flight pushes finish).
func (j *Job) stopAll() {
	j.mu.Lock()
	all := j.nodes
	j.nodes = map[string]*node{}
	j.metrics.Nodes.Set(0)
	j.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range all {
		wg.Add(1)
		go func() { defer wg.Done(); n.stop(true) }()
	}
	wg.Wait()
}

// Handle routes m without reporting when it is delivered.
func (j *Job) Handle(ctx context.Context, m *pb.PushMsg) error {
	return j.HandleAsync(ctx, m, nil)
}

// HandleAsync implements queue.Handler: it routes m and calls done (if not
// nil) once every target node accepted it or was skipped, so the queue
// commits only what cloud nodes took.
func (j *Job) HandleAsync(ctx context.Context, m *pb.PushMsg, done func()) error {
	if done == nil {
		done = func() {}
	}
	if j.tooOld(m.GetCreatedAt()) {
		j.metrics.Dropped.WithLabelValues("too_old").Inc()
		now := j.now()
		j.old.Log(j.log, zap.WarnLevel, now, "push dropped: too old", zap.String("id", m.GetId()), zap.Duration("age", now.Sub(time.UnixMilli(m.GetCreatedAt()))))
		done()
		return nil
	}
	if m.GetOperation() < protocol.MinBusinessOp {
		j.metrics.Dropped.WithLabelValues("bad_op").Inc()
		j.log.Warn("push dropped: operation below 1000", zap.String("id", m.GetId()), zap.Int32("op", m.GetOperation()))
		done()
		return nil
	}
	j.metrics.Consumed.WithLabelValues(m.GetType().String()).Inc()
	frame := protocol.EncodePush(m.GetOperation(), m.GetMsg())
	switch m.GetType() {
	case pb.PushMsg_PUSH:
		n := j.node(m.GetServer())
		if n == nil {
			j.metrics.Dropped.WithLabelValues("node_gone").Inc()
			j.log.Debug("push skipped: node not registered", zap.String("id", m.GetId()), zap.String("node", m.GetServer()))
			done()
			return nil
		}
		req := &pb.PushKeysReq{Id: m.GetId(), Keys: m.GetKeys(), Operation: m.GetOperation(), Frame: frame}
		return n.enqueue(ctx, task{done: done, created: m.GetCreatedAt(), call: func(ctx context.Context, c CloudClient) error {
			_, err := c.PushKeys(ctx, req)
			return err
		}})
	case pb.PushMsg_ROOM:
		if m.GetRoom() == "" {
			j.metrics.Dropped.WithLabelValues("no_room").Inc()
			done()
			return nil
		}
		return j.addRoom(ctx, m.GetRoom(), m.GetId(), m.GetCreatedAt(), frame, done)
	case pb.PushMsg_BROADCAST:
		return j.toEach(ctx, done, task{created: m.GetCreatedAt()}, nil, func(conns []int64) []func(context.Context, CloudClient) error {
			speeds := speedShares(m.GetSpeed(), conns)
			calls := make([]func(context.Context, CloudClient) error, len(conns))
			for i := range calls {
				req := &pb.BroadcastReq{Id: m.GetId(), Operation: m.GetOperation(), Frame: frame, Speed: speeds[i]}
				calls[i] = func(ctx context.Context, c CloudClient) error {
					_, err := c.Broadcast(ctx, req)
					return err
				}
			}
			return calls
		})
	default:
		j.metrics.Dropped.WithLabelValues("bad_type").Inc()
		j.log.Warn("push dropped: unknown type", zap.String("id", m.GetId()), zap.Int32("type", int32(m.GetType())))
		done()
		return nil
	}
}

// NodeQueues returns, per cloud node the job delivers to, how many
// deliveries wait in its queue (the one in progress not counted).
func (j *Job) NodeQueues() map[string]int {
	j.mu.RLock()
	defer j.mu.RUnlock()
	out := make(map[string]int, len(j.nodes))
	for id, n := range j.nodes {
		out[id] = len(n.ch)
	}
	return out
}

// tooOld reports whether a push created at created (unix ms; 0: unknown)
// is older than max_age.
func (j *Job) tooOld(created int64) bool {
	return j.cfg.MaxAge > 0 && created > 0 && j.now().Sub(time.UnixMilli(created)) > j.cfg.MaxAge
}

func (j *Job) node(id string) *node {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.nodes[id]
}

// toEach enqueues a call on every node: call, or when perNode is set what
// perNode makes of every node's last reported connection count (one call
// per count, in the same order). done runs once every node finished its
// call. proto gives the tasks their room and created fields; a task with a
// room is a room batch, which a node may merge with the next batches of the
// same room queued behind it.
func (j *Job) toEach(ctx context.Context, done func(), proto task, call func(context.Context, CloudClient) error,
	perNode func(conns []int64) []func(context.Context, CloudClient) error) error {
	j.mu.RLock()
	all := make([]*node, 0, len(j.nodes))
	var conns []int64
	for _, n := range j.nodes {
		all = append(all, n)
		if perNode != nil {
			conns = append(conns, n.info.Conns)
		}
	}
	j.mu.RUnlock()
	if len(all) == 0 {
		// Nobody can be in a room with no cloud node, but a job that sees
		// none while nodes run (a registry problem) should show it.
		j.metrics.Dropped.WithLabelValues("no_nodes").Inc()
		done()
		return nil
	}
	var calls []func(context.Context, CloudClient) error
	if perNode != nil {
		calls = perNode(conns)
	}
	var left atomic.Int32
	left.Store(int32(len(all)))
	finished := func() {
		if left.Add(-1) == 0 {
			done()
		}
	}
	for i, n := range all {
		c := call
		if calls != nil {
			c = calls[i]
		}
		if err := n.enqueue(ctx, task{call: c, done: finished, room: proto.room, created: proto.created}); err != nil {
			return err
		}
	}
	return nil
}

// speedShares splits a broadcast's speed, a cap on the whole cluster's
// sessions per second, among the nodes: each node's share is in proportion
// to the connections it last reported, so all of them finish at about the
// same time and together stay within the cap (give or take rounding up). A
// node that reported none (new, or its report not yet in) gets an even
// share rather than a crawl. 0 is no cap.
func speedShares(speed int32, conns []int64) []int32 {
	out := make([]int32, len(conns))
	if speed <= 0 || len(conns) == 0 {
		return out
	}
	var total int64
	for _, c := range conns {
		total += max(c, 0)
	}
	even := ceilDiv(int64(speed), int64(len(conns)))
	for i, c := range conns {
		share := even
		if c > 0 {
			share = ceilDiv(int64(speed)*c, total)
		}
		out[i] = int32(max(share, 1))
	}
	return out
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// task is one call to a node; done runs after it succeeded or was given up.
type task struct {
	call func(context.Context, CloudClient) error
	done func()
	room *pb.BroadcastRoomReq // a room batch (read-only, shared by every node)
	// created is the push's creation time (unix ms; 0: unknown), for a room
	// batch that of its oldest message: a task that waited in a node queue
	// past max_age (a node or this job frozen meanwhile) is dropped, not
	// delivered late.
	created int64
}

// node is one cloud node's delivery queue and its worker.
type node struct {
	j      *Job
	info   registry.Node
	client CloudClient
	closer io.Closer
	ch     chan task
	quit   chan struct{} // closed by stop: the worker exits, blocked enqueuers give up
	done   chan struct{} // closed when the worker has exited
	ctx    context.Context
	cancel context.CancelFunc // cancelled when the node leaves: in-flight calls end
	log    *zap.Logger
	// failedLog thins out "delivery failed" lines: a node that died fails
	// every delivery until its lease expires and it leaves the list.
	failedLog logthin.Gate

	mu      sync.RWMutex // held shared while enqueueing, exclusively by stop
	stopped bool

	saturated  atomic.Bool  // its queue stayed full: deliveries are dropped until it drains to half
	overflowed atomic.Int64 // deliveries dropped in the current saturated episode
}

func newNode(j *Job, info registry.Node, c CloudClient, closer io.Closer) *node {
	ctx, cancel := context.WithCancel(context.Background())
	return &node{
		j: j, info: info, client: c, closer: closer,
		ch:   make(chan task, j.cfg.NodeQueue),
		quit: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
		log:       j.log.With(zap.String("node", info.ID)),
		failedLog: logthin.Gate{Every: thinEvery},
	}
}

// enqueue hands t to the node's worker; a node that has left skips t.
//
// A node whose queue stays full for EnqueueTimeout loses t (counted) rather
// than stalling the rest, and is then saturated: later deliveries to it are
// dropped at once, without waiting, until its worker has worked the queue
// down to half. So a hung node that is still registered costs the other
// nodes one wait per episode, not one per message: room and broadcast
// deliveries, which go to every node, keep their pace everywhere else.
func (n *node) enqueue(ctx context.Context, t task) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.stopped {
		n.skip(t)
		return nil
	}
	if n.saturated.Load() {
		if len(n.ch) > cap(n.ch)/2 {
			n.overflow(t)
			return nil
		}
		if n.saturated.CompareAndSwap(true, false) {
			n.log.Info("cloud node takes deliveries again", zap.Int64("dropped", n.overflowed.Swap(0)))
		}
	}
	select {
	case n.ch <- t:
		return nil
	default:
	}
	timer := time.NewTimer(n.j.cfg.EnqueueTimeout)
	defer timer.Stop()
	select {
	case n.ch <- t:
		return nil
	case <-n.quit:
		n.skip(t)
		return nil
	case <-timer.C:
		if !n.saturated.Swap(true) {
			n.log.Warn("cloud node queue full: dropping deliveries to it until it catches up",
				zap.Int("node_queue", cap(n.ch)), zap.Duration("waited", n.j.cfg.EnqueueTimeout))
		}
		n.overflow(t)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// overflow gives t up because the node's queue is full.
func (n *node) overflow(t task) {
	n.j.metrics.Dropped.WithLabelValues("node_queue_full").Inc()
	n.overflowed.Add(1)
	t.done()
}

// skip gives t up because the node left the registry.
func (n *node) skip(t task) {
	n.j.metrics.Dropped.WithLabelValues("node_gone").Inc()
	t.done()
}

func (n *node) run() {
	defer close(n.done)
	var held []task // taken from the queue while merging, delivered next, in order
	for {
		var t task
		if len(held) > 0 {
			t, held = held[0], held[1:]
		} else {
			select {
			case t = <-n.ch:
			case <-n.quit:
				return
			}
		}
		if n.expired(t, 0) {
			t.done()
			continue
		}
		if t.room != nil && !n.j.cfg.NoMerge {
			t, held = n.merge(t, held)
		}
		n.deliver(t)
	}
}

// maxMerge bounds the frames one merged room delivery carries.
const maxMerge = 64 << 10

// merge folds into t the batches of the same room that queued up behind it
// while the node was busy (typically during the previous pass over a large
// room), so one pass writes several messages per connection in one write.
// Other tasks are returned in held, in their order; per-room order holds.
func (n *node) merge(t task, held []task) (task, []task) {
	var reqs []*pb.BroadcastRoomReq
	var dones []func()
	size := len(t.room.GetFrames())
	created := t.created
	take := func(o task) bool {
		if o.room == nil || o.room.GetRoom() != t.room.GetRoom() || size+len(o.room.GetFrames()) > maxMerge {
			return false
		}
		if n.expired(o, 0) {
			o.done()
			return true // dropped, rather than making the merge as old as it
		}
		reqs = append(reqs, o.room)
		dones = append(dones, o.done)
		created = oldest(created, o.created)
		size += len(o.room.GetFrames())
		return true
	}
	kept := held[:0]
	for i, o := range held {
		if len(kept) > 0 || !take(o) { // stop merging at the first task that stays
			kept = append(kept, held[i:]...)
			break
		}
	}
	held = kept
	for len(held) == 0 {
		select {
		case o := <-n.ch:
			if !take(o) {
				held = append(held, o)
			}
			continue
		default:
		}
		break
	}
	if len(reqs) == 0 {
		return t, held
	}
	n.j.metrics.Merged.Add(float64(len(reqs)))
	merged := &pb.BroadcastRoomReq{Room: t.room.GetRoom(), Frames: make([]byte, 0, size)}
	merged.Frames = append(merged.Frames, t.room.GetFrames()...)
	merged.Ids = append(merged.Ids, t.room.GetIds()...)
	for _, r := range reqs {
		merged.Frames = append(merged.Frames, r.GetFrames()...)
		merged.Ids = append(merged.Ids, r.GetIds()...)
	}
	first := t.done
	return task{
		room:    merged,
		created: created,
		call: func(ctx context.Context, c CloudClient) error {
			_, err := c.BroadcastRoom(ctx, merged)
			return err
		},
		done: func() {
			first()
			for _, d := range dones {
				d()
			}
		},
	}, held
}

// expired reports whether t waited past max_age (taken from the queue, or
// before a further attempt), counting and logging the drop; the caller
// gives t up.
func (n *node) expired(t task, attempts int) bool {
	if !n.j.tooOld(t.created) {
		return false
	}
	n.j.metrics.Dropped.WithLabelValues("too_old").Inc()
	n.j.old.Log(n.log, zap.WarnLevel, n.j.now(), "push dropped: too old by the time its node could take it", zap.Int("attempts", attempts))
	return true
}

// deliver makes one call with bounded retries and backoff; it gives up at
// once when the node leaves.
func (n *node) deliver(t task) {
	defer t.done()
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if n.expired(t, attempt) {
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.j.cfg.CallTimeout)
		err := t.call(ctx, n.client)
		cancel()
		if err == nil {
			n.j.metrics.Calls.WithLabelValues("ok").Inc()
			return
		}
		if n.ctx.Err() != nil {
			n.j.metrics.Dropped.WithLabelValues("node_gone").Inc()
			return
		}
		if attempt >= n.j.cfg.Retries {
			n.j.metrics.Calls.WithLabelValues("failed").Inc()
			n.failedLog.Log(n.log, zap.ErrorLevel, n.j.now(), "delivery failed, skipped", zap.Int("attempts", attempt+1), zap.Error(err))
			return
		}
		n.j.metrics.Calls.WithLabelValues("retry").Inc()
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-n.ctx.Done():
			timer.Stop()
			n.j.metrics.Dropped.WithLabelValues("node_gone").Inc()
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// stop ends the worker and closes the client. With deliver (the job is
// shutting down) what is queued is still delivered; without (the node left
// the registry) it is skipped and a call in flight is cancelled.
func (n *node) stop(deliver bool) {
	if !deliver {
		n.cancel()
	}
	close(n.quit)
	n.mu.Lock() // waits out enqueuers; none sends after this
	n.stopped = true
	n.mu.Unlock()
	<-n.done
	for {
		select {
		case t := <-n.ch:
			if deliver {
				n.deliver(t)
			} else {
				n.skip(t)
			}
			continue
		default:
		}
		break
	}
	n.cancel()
	if n.closer != nil {
		if err := n.closer.Close(); err != nil {
			n.log.Debug("closing node client", zap.Error(err))
		}
	}
}
