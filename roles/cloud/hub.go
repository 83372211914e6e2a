package cloud

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/internal/deadline"
	"github.com/imcloud/imcloud/internal/logthin"
	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/store"
	"github.com/imcloud/imcloud/transport"
	"github.com/imcloud/imcloud/transport/ws"
)

// SessionStore is what the hub needs from the session store.
type SessionStore interface {
	Bind(ctx context.Context, s store.Session) error
	Refresh(ctx context.Context, s store.Session) error
	Unbind(ctx context.Context, s store.Session) (bool, error)
	UnbindMany(ctx context.Context, ss []store.Session) error
}

// Config tunes the hub; roles fills it from the cloud section.
type Config struct {
	NodeID           string
	HandshakeTimeout time.Duration
	HeartbeatTimeout time.Duration
	WriteTimeout     time.Duration
	StoreTimeout     time.Duration // bound on each session-store call; default 3s
	MaxBody          int
	SendQueue        int
	Buckets          int
	WSOrigins        []string
	WSSubprotocols   []string      // selected when a client offers one (ws.AcceptOptions.Subprotocols)
	DedupWindow      time.Duration // repeats of a push id within it are dropped; 0: off
	// RefreshEvery is the least time between two refreshes of a session's
	// bindings by its heartbeats (0: every heartbeat). A store that lost
	// the bindings is handled by RefreshAll.
	RefreshEvery time.Duration
	// KeepReaders keeps a reader goroutine waiting on every connection
	// instead of parking idle readers in an epoll instance (park.go).
	KeepReaders bool
}

// Hub owns every session of this node.
type Hub struct {
	cfg     Config
	log     *zap.Logger
	metrics *Metrics
	store   SessionStore
	seed    maphash.Seed
	buckets []*bucket
	counts  *roomCounts // member count of every room, over all buckets
	dedup   *dedup

	// RoomCount, when set, answers heartbeat counts (cluster-wide figures);
	// otherwise the local count is used.
	roomCount atomic.Pointer[func(room string) int32]

	// storeGen changes when the store may have lost bindings (RefreshAll);
	// a session whose last refresh is from an older generation refreshes
	// at its next heartbeat, however recent that refresh was.
	storeGen atomic.Uint64
	// rebindState is RefreshAll's: rebindIdle, rebindRunning, rebindAgain.
	rebindState atomic.Int32

	conns atomic.Int64
	ipMu  sync.Mutex
	ips   map[string]int

	wgMu    sync.Mutex     // orders wg.Add against Shutdown's Wait
	wg      sync.WaitGroup // handshakes and session reader goroutines
	pending closerSet      // connections still in their handshake
	workers *workers       // the goroutines handshakes and store calls run on
	poller  *poller        // where idle readers park; nil: they never do

	// The unbinder's queue (unbind.go); unbindMu orders sends against the
	// close at Shutdown.
	unbindMu     sync.RWMutex
	unbinds      chan *Session
	unbindClosed bool
	unbindsDone  chan struct{}

	bcast broadcasts // paced broadcasts and those queued behind them

	// slowLog thins "slow client disconnected": a large push over a poor
	// network drops thousands at once (the metric counts each).
	slowLog logthin.Gate

	shutdown atomic.Bool
	// holding turns new clients away (Hold, until Open): a node that is not
	// registered yet must not bind sessions nobody can route to.
	holding atomic.Bool
}

type bucket struct {
	mu       sync.RWMutex
	sessions map[string]*Session
	rooms    map[string]*room
	counts   *roomCounts // the hub's, kept in step by join and leave
}

// roomCounts is the node's member count of every room, over all buckets:
// a heartbeat reply or a push answer reads one count instead of visiting
// every bucket (cold in the cache on a large node). Updated under the
// bucket's write lock, read without it.
type roomCounts struct {
	mu sync.Mutex
	m  map[string]int32
}

func (c *roomCounts) add(id string, delta int32) {
	c.mu.Lock()
	if n := c.m[id] + delta; n > 0 {
		c.m[id] = n
	} else {
		delete(c.m, id)
	}
	c.mu.Unlock()
}

func (c *roomCounts) get(id string) int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id]
}

func (c *roomCounts) snapshot() map[string]int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int32, len(c.m))
	for id, n := range c.m {
		out[id] = n
	}
	return out
}

type room struct {
	id      string
	members []*Session
}

// New creates a hub.
func New(cfg Config, st SessionStore, log *zap.Logger, m *Metrics) (*Hub, error) {
	if cfg.Buckets < 1 || cfg.SendQueue < 1 || cfg.MaxBody < 1 {
		return nil, fmt.Errorf("cloud: buckets, send queue and max body must be positive")
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = 3 * time.Second
	}
	if m == nil {
		var err error
		if m, err = NewMetrics(nil); err != nil {
			return nil, err
		}
	}
	h := &Hub{cfg: cfg, log: log, metrics: m, store: st, seed: maphash.MakeSeed(), ips: map[string]int{},
		dedup: newDedup(cfg.DedupWindow, time.Now), slowLog: logthin.Gate{Every: time.Second}}
	h.workers = newWorkers(h.wg.Done)
	h.counts = &roomCounts{m: map[string]int32{}}
	h.buckets = make([]*bucket, cfg.Buckets)
	for i := range h.buckets {
		h.buckets[i] = &bucket{sessions: map[string]*Session{}, rooms: map[string]*room{}, counts: h.counts}
	}
	h.unbinds, h.unbindsDone = make(chan *Session, unbindQueue), make(chan struct{})
	go h.runUnbinds()
	if !cfg.KeepReaders {
		p, err := newPoller()
		if err != nil {
			log.Info("idle readers cannot park, every connection keeps a reader goroutine", zap.Error(err))
		} else {
			h.poller = p
			go p.run(h.resume)
		}
	}
	return h, nil
}

// SetRoomCounter makes heartbeat replies use fn (cluster-wide counts).
func (h *Hub) SetRoomCounter(fn func(room string) int32) { h.roomCount.Store(&fn) }

func (h *Hub) bucketFor(key string) *bucket {
	return h.buckets[maphash.String(h.seed, key)%uint64(len(h.buckets))]
}

// Hold makes the hub turn new clients away until Open: TCP connections are
// closed at once and WebSocket upgrades answered 503, while other requests
// on the WebSocket port (admin endpoints) are still served.
func (h *Hub) Hold() { h.holding.Store(true) }

// Open lets new clients in after Hold.
func (h *Hub) Open() { h.holding.Store(false) }

// track counts a new connection goroutine unless the hub is shutting down.
func (h *Hub) track() bool {
	h.wgMu.Lock()
	defer h.wgMu.Unlock()
	if h.shutdown.Load() {
		return false
	}
	h.wg.Add(1)
	return true
}

// add makes s the session for its key and puts it in room; it returns the
// session it replaced, if any, already out of its room. It refuses (false)
// once Shutdown has begun: the check is made under the bucket lock that
// Shutdown's farewell pass also takes, so no session slips past it.
func (h *Hub) add(s *Session, roomID string) (*Session, bool) {
	b := h.bucketFor(s.key)
	b.mu.Lock()
	if h.shutdown.Load() {
		b.mu.Unlock()
		return nil, false
	}
	old := b.sessions[s.key]
	if old != nil {
		b.leave(old)
	}
	b.sessions[s.key] = s
	if roomID != "" {
		b.join(s, roomID)
	}
	b.mu.Unlock()
	if old == nil {
		h.conns.Add(1)
	}
	h.ipMu.Lock()
	h.ips[s.ip]++
	h.ipMu.Unlock()
	return old, true
}

// remove takes s out of the hub; it reports whether s was still the
// session for its key (false once a newer connection replaced it).
func (h *Hub) remove(s *Session) bool {
	b := h.bucketFor(s.key)
	b.mu.Lock()
	current := b.sessions[s.key] == s
	if current {
		delete(b.sessions, s.key)
		b.leave(s)
	}
	b.mu.Unlock()
	if current {
		h.conns.Add(-1)
	}
	h.ipMu.Lock()
	if h.ips[s.ip]--; h.ips[s.ip] <= 0 {
		delete(h.ips, s.ip)
	}
	h.ipMu.Unlock()
	return current
}

// current returns the session now bound to key, if any.
func (h *Hub) current(key string) *Session {
	b := h.bucketFor(key)
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.sessions[key]
}

func (h *Hub) changeRoom(s *Session, roomID string) {
	b := h.bucketFor(s.key)
	b.mu.Lock()
	if b.sessions[s.key] == s {
		b.leave(s)
		if roomID != "" {
			b.join(s, roomID)
		}
	}
	b.mu.Unlock()
}

func (b *bucket) join(s *Session, id string) {
	r := b.rooms[id]
	if r == nil {
		r = &room{id: id}
		b.rooms[id] = r
	}
	s.room, s.roomIdx = r, len(r.members)
	r.members = append(r.members, s)
	b.counts.add(id, 1)
}

func (b *bucket) leave(s *Session) {
	r := s.room
	if r == nil {
		return
	}
	last := len(r.members) - 1
	moved := r.members[last]
	r.members[s.roomIdx], moved.roomIdx = moved, s.roomIdx
	r.members[last] = nil
	r.members = r.members[:last]
	if len(r.members) == 0 {
		delete(b.rooms, r.id)
	}
	s.room = nil
	b.counts.add(r.id, -1)
}

// PushKeys queues frame to the named sessions that accept op and returns
// how many it reached.
func (h *Hub) PushKeys(keys []string, op int32, frame []byte) int {
	out := transport.Out{Data: frame, Push: true}
	n := 0
	for _, k := range keys {
		if s := h.current(k); s != nil && s.Accepts(op) && s.send(out) {
			n++
		}
	}
	h.metrics.Deliveries.WithLabelValues("keys").Add(float64(n))
	return n
}

// PushRoom queues frames (one or more encoded frames back to back) to every
// member of roomID, unfiltered, and returns how many members it reached.
func (h *Hub) PushRoom(roomID string, frames []byte) int {
	members := int(h.RoomCount(roomID))
	if members == 0 {
		// Nobody here: no message to frame, no bucket to walk. A member
		// whose join completed before this push is counted already.
		return 0
	}
	out := transport.Out{Data: frames, Push: true, WSMessage: ws.PushMessage(frames)}
	n := h.fanOut(func() int { return members }, func(b *bucket) int {
		n := 0
		b.mu.RLock()
		if r := b.rooms[roomID]; r != nil {
			for _, s := range r.members {
				if s.send(out) {
					n++
				}
			}
		}
		b.mu.RUnlock()
		return n
	})
	h.metrics.Deliveries.WithLabelValues("room").Add(float64(n))
	return n
}

// fanOutMin is the smallest fan-out spread over several goroutines: below
// it, starting them costs more than the writes they would share.
const fanOutMin = 256

// fanOut runs f on every bucket and returns the sum of f's results once
// every call returned. With several processors and members() (what f will
// reach, about; not asked on one processor) at least fanOutMin, the buckets are spread over up to GOMAXPROCS goroutines (the
// caller's among them): a pass over a large room is mostly write system
// calls, and they run in parallel. A session lives in one bucket, so each session
// is still written by one goroutine, and since fanOut returns only when all
// are done, the next push cannot overtake this one. A bucket's read lock is
// held while its members are written to, but those writes never block.
func (h *Hub) fanOut(members func() int, f func(*bucket) int) int {
	w := min(runtime.GOMAXPROCS(0), len(h.buckets))
	if w > 1 && members() < fanOutMin {
		w = 1
	}
	part := func(first int) int {
		n := 0
		for j := first; j < len(h.buckets); j += w {
			n += f(h.buckets[j])
		}
		return n
	}
	if w <= 1 {
		return part(0)
	}
	var others atomic.Int64
	var wg sync.WaitGroup
	for i := 1; i < w; i++ {
		wg.Go(func() { others.Add(int64(part(i))) })
	}
	n := part(0)
	wg.Wait()
	return n + int(others.Load())
}

// RoomCount is this node's member count of roomID.
func (h *Hub) RoomCount(roomID string) int32 { return h.counts.get(roomID) }

// Rooms returns every room on this node with its member count.
func (h *Hub) Rooms() map[string]int32 { return h.counts.snapshot() }

// Online returns this node's connection and distinct client IP counts.
func (h *Hub) Online() (conns, ips int64) {
	h.ipMu.Lock()
	ips = int64(len(h.ips))
	h.ipMu.Unlock()
	return h.conns.Load(), ips
}

func (h *Hub) heartbeatCount(roomID string) int32 {
	if roomID == "" {
		return 0
	}
	if fn := h.roomCount.Load(); fn != nil {
		return (*fn)(roomID)
	}
	return h.RoomCount(roomID)
}

// slowConsumer drops s, closed (s.slow set) because its send queue
// overflowed or a write to it timed out.
func (h *Hub) slowConsumer(s *Session, why string) {
	h.metrics.SlowClients.Inc()
	h.slowLog.Log(h.log, zap.WarnLevel, time.Now(), "slow client disconnected", zap.String("why", why),
		zap.String("key", s.key), zap.Int64("mid", s.mid), zap.String("remote", s.conn.RemoteAddr()),
		zap.Int("send_queue", h.cfg.SendQueue), zap.Duration("write_timeout", h.cfg.WriteTimeout))
	// Closing may wait on the transport; the fan-out that noticed must not.
	// What is queued in the kernel for it (up to megabytes) is dropped, not
	// kept in kernel memory until the client reads it or times out; the
	// reset this sends is all it gets (a close frame would sit behind that
	// data, and be dropped with it).
	transport.DiscardOnClose(s.conn)
	go s.closeConn()
}

func heartbeatBody(n int32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	return b[:]
}

func reply(req protocol.Frame, op int32, body []byte) transport.Out {
	return transport.Out{Data: protocol.Encode(req.Ver, op, req.Seq, body)}
}

// Shutdown says goodbye to every session and waits, until ctx ends, for
// their queues to drain and their goroutines to finish; stragglers are cut.
func (h *Hub) Shutdown(ctx context.Context) error {
	// The unbinds of the last sessions get the last second, even when the
	// drain runs out its time.
	unbindCtx := ctx
	ctx, cancel := deadline.Reserve(ctx, time.Second)
	defer cancel()
	h.wgMu.Lock()
	h.shutdown.Store(true)
	h.wgMu.Unlock()
	h.pending.closeAll()
	h.workers.stop()
	h.each(func(s *Session) { s.farewell(transport.CloseGoingAway, "server shutting down") })
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		h.each(func(s *Session) { s.kill() })
		<-done
		err = fmt.Errorf("cloud: shutdown: %w", ctx.Err())
	}
	// No session is left to park or to queue an unbind.
	if h.poller != nil {
		h.poller.close()
	}
	// Cut short, what is still queued may be left to store.ttl.
	h.stopUnbinds(unbindCtx)
	return err
}

// DisconnectAll says goodbye (op 6 with reason) to every session and
// closes it once its queue is written; clients reconnect. It returns how
// many sessions it reached.
func (h *Hub) DisconnectAll(reason string) int {
	n := 0
	h.each(func(s *Session) { s.farewell(transport.CloseGoingAway, reason); n++ })
	return n
}

func (h *Hub) each(fn func(*Session)) {
	var all []*Session
	for _, b := range h.buckets {
		b.mu.RLock()
		for _, s := range b.sessions {
			all = append(all, s)
		}
		b.mu.RUnlock()
	}
	for _, s := range all {
		fn(s)
	}
}

func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// closerSet is a set of connections (transport.Conn or net.Conn) guarded by
// a mutex: cheaper than a sync.Map for a set that every connect adds to
// and removes from once.
type closerSet struct {
	mu sync.Mutex
	m  map[io.Closer]struct{}
}

func (s *closerSet) add(c io.Closer) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[io.Closer]struct{})
	}
	s.m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *closerSet) remove(c io.Closer) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *closerSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// closeAll closes every member.
func (s *closerSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.m {
		if r, ok := c.(transport.CloseReasoner); ok { // a WebSocket not yet authenticated
			r.SetCloseReason(transport.CloseGoingAway, "server shutting down")
		}
		_ = c.Close()
	}
}
