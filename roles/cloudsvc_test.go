package roles

import (
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imcloud/imcloud/registry"
	"github.com/imcloud/imcloud/registry/memory"
	"github.com/imcloud/imcloud/store"
	storememory "github.com/imcloud/imcloud/store/memory"
)

// flakyOnline is an online store whose calls fail while down is set.
type flakyOnline struct {
	store.Online
	down atomic.Bool
}

var errDown = errors.New("store down")

func (f *flakyOnline) ReportOnline(ctx context.Context, r store.NodeOnline, ttl time.Duration) error {
	if f.down.Load() {
		return errDown
	}
	return f.Online.ReportOnline(ctx, r, ttl)
}

func (f *flakyOnline) AllOnline(ctx context.Context) ([]store.NodeOnline, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Online.AllOnline(ctx)
}

// TestReportRebindsAfterStoreTrouble: a store that failed may come back
// empty, and the node's own report, written by the first good cycle,
// cannot tell; so the first good cycle after a failure has every session
// rebind, and a cycle without trouble does not.
func TestReportRebindsAfterStoreTrouble(t *testing.T) {
	cfg := Default()
	// Addresses as published, so no listener is needed.
	cfg.Cloud.PublicTCPAddr, cfg.Cloud.PublicWSAddr, cfg.Cloud.AdvertiseAddr = "127.0.0.1:1", "ws://127.0.0.1:2/sub", "127.0.0.1:3"
	st := storememory.New(time.Minute)
	online := &flakyOnline{Online: st}
	core, logs := observer.New(zapcore.InfoLevel)
	b := &backends{registrar: memory.New(), sessions: st, online: online, shared: true}
	c, err := newCloudService(&cfg, RoleCloud, "n1", zap.New(core), b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rebinds := func() int {
		return logs.FilterMessage("session store answers again; rebinding every session").Len() +
			logs.FilterMessage("this node's online report is gone from the store; rebinding every session").Len()
	}
	ctx := context.Background()
	steps := []struct {
		name        string
		down, empty bool
		wantRebinds int
	}{
		{"first report", false, false, 0},
		{"steady", false, false, 0},
		{"store down", true, false, 0},
		{"still down", true, false, 0},
		{"back", false, false, 1},
		{"steady again", false, false, 1},
		{"down again", true, false, 1},
		// Both signs at once (a failure, and the report gone): one rebind.
		{"back empty", false, true, 2},
		{"steady at last", false, false, 2},
	}
	for _, s := range steps {
		online.down.Store(s.down)
		if s.empty {
			online.Online = storememory.New(time.Minute)
		}
		var wg sync.WaitGroup
		c.report(ctx, &wg)
		wg.Wait()
		if got := rebinds(); got != s.wantRebinds {
			t.Fatalf("after %q: %d rebind announcements, want %d", s.name, got, s.wantRebinds)
		}
	}
}

// hungRegistrar is a registry that does not answer updates (etcd down).
type hungRegistrar struct {
	*memory.Registry
	updates atomic.Int32
}

func (h *hungRegistrar) Update(ctx context.Context, _ registry.Node) error {
	h.updates.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

// TestReportWithoutRegistry: a registry that does not answer costs the
// store none of its reports, and updates do not pile up.
func TestReportWithoutRegistry(t *testing.T) {
	cfg := Default()
	cfg.Cloud.PublicTCPAddr, cfg.Cloud.PublicWSAddr, cfg.Cloud.AdvertiseAddr = "127.0.0.1:1", "ws://127.0.0.1:2/sub", "127.0.0.1:3"
	cfg.Cloud.OnlineReportInterval = time.Hour // the update waits that long
	st := storememory.New(time.Minute)
	reg := &hungRegistrar{Registry: memory.New()}
	b := &backends{registrar: reg, sessions: st, online: st, shared: true}
	c, err := newCloudService(&cfg, RoleCloud, "n1", zap.NewNop(), b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		done := make(chan struct{})
		go func() { c.report(ctx, &wg); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("report waited for the registry")
		}
		reports, err := st.AllOnline(ctx)
		if err != nil || len(reports) != 1 || reports[0].Node != "n1" {
			t.Fatalf("store reports %v, %v; want n1's", reports, err)
		}
	}
	// The one update runs on its own goroutine: wait for it to begin.
	for end := time.Now().Add(20 * time.Second); reg.updates.Load() == 0 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	if n := reg.updates.Load(); n != 1 {
		t.Errorf("%d registry updates under way, want 1 (no pile-up)", n)
	}
	cancel()
	wg.Wait()
}

func (h *hungRegistrar) Deregister(ctx context.Context, _, _ string) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestStopWithoutRegistry: a registry that does not answer gets a second of
// the stop, which is still a clean one: the record expires with its lease.
func TestStopWithoutRegistry(t *testing.T) {
	cfg := Default()
	cfg.Cloud.PublicTCPAddr, cfg.Cloud.PublicWSAddr, cfg.Cloud.AdvertiseAddr = "127.0.0.1:1", "ws://127.0.0.1:2/sub", "127.0.0.1:3"
	st := storememory.New(time.Minute)
	b := &backends{registrar: &hungRegistrar{Registry: memory.New()}, sessions: st, online: st, shared: true}
	c, err := newCloudService(&cfg, RoleCloud, "n1", zap.NewNop(), b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ReportOnline(t.Context(), store.NodeOnline{Node: "n1", Conns: 1}, time.Minute); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if ctx.Err() != nil {
		t.Error("Stop used up its whole deadline")
	}
	reports, err := st.AllOnline(t.Context())
	if err != nil || len(reports) != 1 || reports[0].Conns != 0 {
		t.Errorf("online reports after Stop: %v, %v; want n1's withdrawn (empty)", reports, err)
	}
}

func TestOtherRoomCounts(t *testing.T) {
	reports := []store.NodeOnline{
		{Node: "self", Rooms: map[string]int32{"live://1": 100}},
		{Node: "b", Rooms: map[string]int32{"live://1": 2, "live://2": 3}},
		{Node: "dead", Rooms: map[string]int32{"live://1": 40}},
	}
	set := func(ids ...string) liveFunc {
		return func(node string) (bool, bool) { return slices.Contains(ids, node), true }
	}
	tests := []struct {
		name    string
		reports []store.NodeOnline
		peers   liveFunc
		want    map[string]int32
		wantOwn bool
	}{
		{"registry unknown: every other report", reports, nil, map[string]int32{"live://1": 42, "live://2": 3}, true},
		{"a departed node left out", reports, set("self", "b"), map[string]int32{"live://1": 2, "live://2": 3}, true},
		{"own report missing", reports[1:], set("self", "b", "dead"), map[string]int32{"live://1": 42, "live://2": 3}, false},
		{"nothing reported", nil, set("self"), map[string]int32{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, own := otherRoomCounts(tt.reports, "self", tt.peers)
			if !maps.Equal(got, tt.want) || own != tt.wantOwn {
				t.Fatalf("otherRoomCounts = %v, own %v; want %v, own %v", got, own, tt.want, tt.wantOwn)
			}
		})
	}
}

// TestFollowPeers: the node's view of its peers follows the registry.
func TestFollowPeers(t *testing.T) {
	reg := memory.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"n1", "n2"} {
		if err := reg.Register(ctx, registry.Node{ID: id, Role: registry.RoleCloud}); err != nil {
			t.Fatal(err)
		}
	}
	c := &cloudService{log: zap.NewNop(), b: &backends{watcher: reg}}
	// Checked before followPeers starts: the memory registry hands it the
	// first list at once, so afterwards the check would race it.
	if live, known := c.peerLive("n1"); live || known {
		t.Errorf("peerLive before the first list = %v, %v; want false, false", live, known)
	}
	done := make(chan struct{})
	go func() { defer close(done); c.followPeers(ctx) }()
	peers := func() []string {
		p := c.peers.Load()
		if p == nil {
			return nil
		}
		return slices.Sorted(maps.Keys(*p))
	}
	waitFor(t, "both nodes seen", func() bool { return slices.Equal(peers(), []string{"n1", "n2"}) })
	if live, known := c.peerLive("n3"); live || !known {
		t.Errorf("peerLive(n3) = %v, %v; want false, true", live, known)
	}
	if err := reg.Deregister(ctx, registry.RoleCloud, "n2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n2 gone", func() bool { return slices.Equal(peers(), []string{"n1"}) })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("followPeers did not return after its context ended")
	}
}

// TestWatchStalls: a process that did not run for longer than its lease
// tells its clients to reconnect; one that keeps running does not.
func TestWatchStalls(t *testing.T) {
	cfg := Default()
	cfg.Cloud.PublicTCPAddr, cfg.Cloud.PublicWSAddr, cfg.Cloud.AdvertiseAddr = "127.0.0.1:1", "ws://127.0.0.1:2/sub", "127.0.0.1:3"
	st := storememory.New(time.Minute)
	core, logs := observer.New(zapcore.WarnLevel)
	b := &backends{registrar: memory.New(), sessions: st, online: st}
	c, err := newCloudService(&cfg, RoleCloud, "n1", zap.New(core), b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Ticks every 10ms against a 2s lease: no tick is that late unless the
	// machine is far past busy.
	go func() { c.watchStalls(ctx, 10*time.Millisecond, 2*time.Second); close(done) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
	if n := logs.Len(); n != 0 {
		t.Fatalf("%d stall warnings without a stall", n)
	}
	// A stall: the ticker's goroutine cannot run while the process is
	// stopped; here the lease is shorter than the tick.
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { c.watchStalls(ctx, 50*time.Millisecond, 10*time.Millisecond); close(done) }()
	waitFor(t, "the stall noticed", func() bool { return logs.Len() > 0 })
	cancel()
	<-done
}

// TestDuplicateNodeIDIsConfigError: a node id a live twin holds is given
// up on after the wait, as a configuration error (exit 2, no restart).
func TestDuplicateNodeIDIsConfigError(t *testing.T) {
	cfg := Default()
	cfg.Cloud.TCPAddr, cfg.Cloud.WSAddr, cfg.Cloud.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Registry.Etcd.TTL = 50 * time.Millisecond // the wait is 3 TTLs
	reg := memory.New()
	twin := registry.Node{ID: "n1", Role: registry.RoleCloud, GRPCAddr: "127.0.0.1:9"}
	if err := reg.Register(t.Context(), twin); err != nil {
		t.Fatal(err)
	}
	st := storememory.New(time.Minute)
	b := &backends{registrar: reg, sessions: st, online: st}
	c, err := newCloudService(&cfg, RoleCloud, "n1", zap.NewNop(), b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start(t.Context())
	if err == nil {
		_ = c.Stop(t.Context())
		t.Fatal("started beside a live node with its id")
	}
	if !errors.Is(err, ErrConfig) || !errors.Is(err, registry.ErrDuplicateID) {
		t.Fatalf("Start: %v, want ErrConfig and ErrDuplicateID", err)
	}
}

// TestWildcardAddressWarned: a listener on all interfaces with no address
// of its own configured would publish 0.0.0.0 in the registry: warned,
// naming the key to set.
func TestWildcardAddressWarned(t *testing.T) {
	cfg := Default()
	cfg.Cloud.TCPAddr, cfg.Cloud.WSAddr, cfg.Cloud.GRPCAddr = "0.0.0.0:0", "0.0.0.0:0", "127.0.0.1:0"
	cfg.Cloud.PublicWSAddr = "ws://im1.example.com:3102/sub"
	logs := startWarnLogged(t, &cfg, true)
	var keys []string
	for _, e := range logs.FilterMessageSnippet("wildcard address").All() {
		keys = append(keys, e.ContextMap()["key"].(string))
	}
	if !slices.Equal(keys, []string{"cloud.public_tcp_addr"}) {
		t.Errorf("warned for %v, want only cloud.public_tcp_addr", keys)
	}
}

// TestWildcardPublished: in "all" (nothing shared) the gRPC address is
// dialled in process only, but nodes/weighted still tells clients the
// client addresses: a wildcard there is warned too.
func TestWildcardPublished(t *testing.T) {
	any4 := &net.TCPAddr{IP: net.IPv4zero, Port: 3101}
	any6 := &net.TCPAddr{IP: net.IPv6unspecified, Port: 3102}
	lo := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3109}
	keys := func(ws [][2]string) []string {
		var k []string
		for _, w := range ws {
			k = append(k, w[0])
		}
		return k
	}
	var cc CloudConfig
	if got := keys(wildcardPublished(cc, any4, any6, any4, false)); !slices.Equal(got, []string{"cloud.public_tcp_addr", "cloud.public_ws_addr"}) {
		t.Errorf("all: warned for %v", got)
	}
	if got := keys(wildcardPublished(cc, any4, any6, any4, true)); !slices.Equal(got, []string{"cloud.advertise_addr", "cloud.public_tcp_addr", "cloud.public_ws_addr"}) {
		t.Errorf("shared: warned for %v", got)
	}
	if got := wildcardPublished(cc, lo, lo, lo, true); len(got) != 0 {
		t.Errorf("loopback: warned for %v", got)
	}
	cc.PublicTCPAddr, cc.PublicWSAddr, cc.AdvertiseAddr = "im1:3101", "ws://im1:3102/sub", "10.0.0.1:3109"
	if got := wildcardPublished(cc, any4, any6, any4, true); len(got) != 0 {
		t.Errorf("addresses set: warned for %v", got)
	}
}

// TestShortStoreTTLWarned: bindings are refreshed by heartbeats, so a
// store.ttl within cloud.heartbeat_timeout lets a client that heartbeats
// as seldom as allowed drop out of the store: warned at start.
func TestShortStoreTTLWarned(t *testing.T) {
	for _, tt := range []struct {
		ttl  time.Duration
		warn bool
	}{{20 * time.Minute, false}, {8 * time.Minute, true}, {time.Minute, true}} {
		t.Run(tt.ttl.String(), func(t *testing.T) {
			cfg := Default()
			cfg.Cloud.TCPAddr, cfg.Cloud.WSAddr, cfg.Cloud.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			cfg.Store.TTL = tt.ttl
			logs := startWarnLogged(t, &cfg, false)
			if got := logs.FilterMessageSnippet("store.ttl is not longer than cloud.heartbeat_timeout").Len() == 1; got != tt.warn {
				t.Errorf("warned %v, want %v", got, tt.warn)
			}
		})
	}
}

// startWarnLogged starts a cloud service on cfg over memory backends
// (shared: as if other processes used them too) until the test ends, and
// returns what it logged at warn level and above.
func startWarnLogged(t *testing.T, cfg *Config, shared bool) *observer.ObservedLogs {
	t.Helper()
	st := storememory.New(cfg.Store.TTL)
	core, logs := observer.New(zapcore.WarnLevel)
	b := &backends{registrar: memory.New(), sessions: st, online: st, shared: shared}
	c, err := newCloudService(cfg, RoleCloud, "n1", zap.New(core), b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return logs
}

// lossyOnline is an online store that can be down, and can come back
// empty (a Redis restarted without persistence); safe for concurrent use.
type lossyOnline struct {
	mu   sync.Mutex
	cur  store.Online
	down bool
}

func (l *lossyOnline) get() (store.Online, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return nil, errDown
	}
	return l.cur, nil
}

func (l *lossyOnline) ReportOnline(ctx context.Context, r store.NodeOnline, ttl time.Duration) error {
	o, err := l.get()
	if err != nil {
		return err
	}
	return o.ReportOnline(ctx, r, ttl)
}

func (l *lossyOnline) AllOnline(ctx context.Context) ([]store.NodeOnline, error) {
	o, err := l.get()
	if err != nil {
		return nil, err
	}
	return o.AllOnline(ctx)
}

// TestStoreBackRebindsWithinProbe: a node whose store failed tries it
// again every storeProbeEvery, so a store that comes back (maybe empty) has
// the sessions bound again within that, not at the next report cycle
// (cloud.online_report_interval, 5 s by default, during which pushes by mid
// to this node's users answered "sessions":0 and reached nobody); the
// probes log no failures of their own.
func TestStoreBackRebindsWithinProbe(t *testing.T) {
	cfg := Default()
	cfg.Cloud.PublicTCPAddr, cfg.Cloud.PublicWSAddr, cfg.Cloud.AdvertiseAddr = "127.0.0.1:1", "ws://127.0.0.1:2/sub", "127.0.0.1:3"
	cfg.Cloud.OnlineReportInterval = time.Hour // no cycle but the first within the test
	online := &lossyOnline{cur: storememory.New(time.Minute), down: true}
	core, logs := observer.New(zapcore.InfoLevel)
	b := &backends{registrar: memory.New(), sessions: storememory.New(time.Minute), online: online, shared: true}
	c, err := newCloudService(&cfg, RoleCloud, "n1", zap.New(core), b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }() // its first cycle finds the store down
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	const failed, back = "reading other nodes' online reports failed", "session store answers again; rebinding every session"
	time.Sleep(4 * storeProbeEvery)
	if n := logs.FilterMessage(failed).Len(); n != 1 {
		t.Errorf("%d failures logged over the first cycle and %d probes, want 1", n, 4)
	}
	online.mu.Lock()
	online.down = false // back, and empty
	online.mu.Unlock()
	up := time.Now()
	for logs.FilterMessage(back).Len() == 0 {
		if d := time.Since(up); d > 30*time.Second {
			t.Fatalf("no rebind %v after the store came back (the next report cycle is an hour away)", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r, err := online.AllOnline(ctx); err != nil || len(r) != 1 || r[0].Node != "n1" {
		t.Errorf("reports after the store came back: %v, %v; want n1's", r, err)
	}
	t.Logf("sessions rebound %v after the store came back", time.Since(up).Round(time.Millisecond))
}

// failingSessions fails every call while down; a key bound elsewhere is
// ErrMoved when moved.
type failingSessions struct {
	store.Sessions
	err error
}

func (f failingSessions) Bind(ctx context.Context, ss store.Session) error {
	if f.err != nil {
		return f.err
	}
	return f.Sessions.Bind(ctx, ss)
}

// TestHubStoreFailureProbes: a store outage that no report cycle saw but a
// session's bind did (a Redis restarted empty between cycles) is probed at
// once: the node finds its report gone and has every session bound again,
// instead of waiting for the next cycle. A key moved elsewhere is no
// failure.
func TestHubStoreFailureProbes(t *testing.T) {
	cfg := Default()
	cfg.Cloud.PublicTCPAddr, cfg.Cloud.PublicWSAddr, cfg.Cloud.AdvertiseAddr = "127.0.0.1:1", "ws://127.0.0.1:2/sub", "127.0.0.1:3"
	cfg.Cloud.OnlineReportInterval = time.Hour // no cycle but the first within the test
	online := &lossyOnline{cur: storememory.New(time.Minute)}
	core, logs := observer.New(zapcore.InfoLevel)
	b := &backends{registrar: memory.New(), sessions: storememory.New(time.Minute), online: online, shared: true}
	c, err := newCloudService(&cfg, RoleCloud, "n1", zap.New(core), b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ns := noteSessions{failingSessions{Sessions: b.sessions, err: store.ErrMoved}, c}
	if err := ns.Bind(context.Background(), store.Session{Key: "k", Node: "n1"}); !errors.Is(err, store.ErrMoved) || c.sessionsFailed.Load() {
		t.Fatalf("a moved key: %v, failure noted %v; want ErrMoved passed on, no failure", err, c.sessionsFailed.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "the first report", func() bool {
		r, err := online.AllOnline(ctx)
		return err == nil && len(r) == 1
	})
	// The store restarts empty between cycles; a bind sees it fail.
	online.mu.Lock()
	online.cur = storememory.New(time.Minute)
	online.mu.Unlock()
	ns = noteSessions{failingSessions{Sessions: b.sessions, err: errDown}, c}
	if err := ns.Bind(ctx, store.Session{Key: "k", Node: "n1"}); !errors.Is(err, errDown) {
		t.Fatalf("Bind: %v", err)
	}
	const gone = "this node's online report is gone from the store; rebinding every session"
	waitFor(t, "the rebind (the next report cycle is an hour away)", func() bool { return logs.FilterMessage(gone).Len() == 1 })
}

// countingRegistrar counts Update calls.
type countingRegistrar struct {
	*memory.Registry
	updates atomic.Int64
}

func (r *countingRegistrar) Update(ctx context.Context, n registry.Node) error {
	r.updates.Add(1)
	return r.Registry.Update(ctx, n)
}

// hungOnline is an online store that never answers: every call waits for
// its context.
type hungOnline struct{}

func (hungOnline) ReportOnline(ctx context.Context, _ store.NodeOnline, _ time.Duration) error {
	<-ctx.Done()
	return ctx.Err()
}

func (hungOnline) AllOnline(ctx context.Context) ([]store.NodeOnline, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestHungStoreProbesKeepCycles: a store that hangs holds each probe as
// long as a report cycle; the probes must not take the place of due cycles,
// whose registry updates went on at about half their rate.
func TestHungStoreProbesKeepCycles(t *testing.T) {
	cfg := Default()
	cfg.Cloud.PublicTCPAddr, cfg.Cloud.PublicWSAddr, cfg.Cloud.AdvertiseAddr = "127.0.0.1:1", "ws://127.0.0.1:2/sub", "127.0.0.1:3"
	cfg.Cloud.OnlineReportInterval = 200 * time.Millisecond
	reg := &countingRegistrar{Registry: memory.New()}
	b := &backends{registrar: reg, sessions: storememory.New(time.Minute), online: hungOnline{}, shared: true}
	c, err := newCloudService(&cfg, RoleCloud, "n1", zap.NewNop(), b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	const span = 4 * time.Second
	time.Sleep(span)
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	due := int64(span / cfg.Cloud.OnlineReportInterval)
	if got := reg.updates.Load(); got < due*8/10 {
		t.Errorf("%d registry updates in %v, want about %d (one per cycle)", got, span, due)
	}
}
