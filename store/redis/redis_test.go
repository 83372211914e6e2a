package redis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/imcloud/imcloud/store"
	"github.com/imcloud/imcloud/store/redis/redistest"
	"github.com/imcloud/imcloud/store/storetest"
)

// testPrefix returns a key prefix unique to t and this run.
func testPrefix(t testing.TB) string {
	name := strings.NewReplacer("/", "-", " ", "_", ":", "_").Replace(t.Name())
	return fmt.Sprintf("imtest:%s:%d:", name, rand.Uint32())
}

// newStore returns a Store on addr with a prefix unique to t, closed when t
// ends; edit may change the config first.
func newStore(t testing.TB, addr string, edit ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{Addr: addr, Prefix: testPrefix(t), TTL: time.Hour}
	for _, e := range edit {
		e(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rawClient is a plain client to inspect the server.
func rawClient(t testing.TB, addr string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestContract(t *testing.T) {
	addr := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) (store.Sessions, store.Online) {
		s := newStore(t, addr)
		return s, s
	})
}

func TestNew(t *testing.T) {
	// No network in New: an address nobody listens on is fine.
	s, err := New(Config{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.Close()
	if s.prefix != DefaultPrefix || s.ttl != DefaultTTL || s.opTimeout != 3*DefaultTimeout {
		t.Errorf("defaults: prefix %q ttl %v op timeout %v", s.prefix, s.ttl, s.opTimeout)
	}
	if got := s.midKey(-42); got != "imcloud:mid:-42" {
		t.Errorf("midKey = %q", got)
	}
	if got := s.keyKey("k"); got != "imcloud:key:k" {
		t.Errorf("keyKey = %q", got)
	}
	bad := []Config{
		{},
		{Addr: "x:1", TTL: -time.Second},
		{Addr: "x:1", DialTimeout: -1},
		{Addr: "x:1", ReadTimeout: -1},
		{Addr: "x:1", WriteTimeout: -1},
		{Addr: "x:1", DB: -1},
		{Addr: "x:1", PoolSize: -1},
	}
	for _, cfg := range bad {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("New(%+v) accepted a bad config", cfg)
		}
	}
}

func TestKeyLayoutAndTTL(t *testing.T) {
	addr := redistest.Start(t)
	const ttl = time.Hour
	s := newStore(t, addr, func(c *Config) { c.TTL = ttl })
	raw := rawClient(t, addr)
	ctx := t.Context()
	sess := store.Session{Mid: 7, Key: "k1", Node: "node-a"}
	if err := s.Bind(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if got := raw.Get(ctx, s.prefix+"key:k1").Val(); got != "7@node-a" {
		t.Errorf("key:k1 = %q, want 7@node-a", got)
	}
	if got := raw.HGetAll(ctx, s.prefix+"mid:7").Val(); !maps.Equal(got, map[string]string{"k1": "node-a"}) {
		t.Errorf("mid:7 = %v", got)
	}
	for _, k := range []string{s.prefix + "key:k1", s.prefix + "mid:7"} {
		if d := raw.PTTL(ctx, k).Val(); d <= ttl-time.Minute || d > ttl {
			t.Errorf("PTTL %s = %v, want about %v", k, d, ttl)
		}
	}

	// Refresh extends: shorten the TTLs by hand, then refresh.
	for _, k := range []string{s.prefix + "key:k1", s.prefix + "mid:7"} {
		raw.Expire(ctx, k, 10*time.Second)
	}
	if err := s.Refresh(ctx, sess); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{s.prefix + "key:k1", s.prefix + "mid:7"} {
		if d := raw.PTTL(ctx, k).Val(); d <= ttl-time.Minute {
			t.Errorf("after Refresh, PTTL %s = %v, want about %v", k, d, ttl)
		}
	}

	// A refresh from another node extends nothing of ours.
	for _, k := range []string{s.prefix + "key:k1", s.prefix + "mid:7"} {
		raw.Expire(ctx, k, 10*time.Second)
	}
	if err := s.Refresh(ctx, store.Session{Mid: 7, Key: "k1", Node: "node-b"}); !errors.Is(err, store.ErrMoved) {
		t.Fatalf("foreign Refresh: %v, want %v", err, store.ErrMoved)
	}
	if d := raw.PTTL(ctx, s.prefix+"mid:7").Val(); d > 10*time.Second {
		t.Errorf("a foreign Refresh extended mid:7 to %v", d)
	}
	if d := raw.PTTL(ctx, s.prefix+"key:k1").Val(); d > 10*time.Second {
		t.Errorf("a foreign Refresh extended key:k1 to %v", d)
	}
	if got := raw.Get(ctx, s.prefix+"key:k1").Val(); got != "7@node-a" {
		t.Errorf("a foreign Refresh moved key:k1 to %q", got)
	}

	// Online report layout.
	r := store.NodeOnline{Node: "node-a", Conns: 3, IPs: 2, Rooms: map[string]int32{"live://1": 3}}
	if err := s.ReportOnline(ctx, r, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := raw.Get(ctx, s.prefix+"online:node-a").Val(); got != `{"conns":3,"ips":2,"rooms":{"live://1":3}}` {
		t.Errorf("online:node-a = %s", got)
	}
	if d := raw.PTTL(ctx, s.prefix+"online:node-a").Val(); d <= 20*time.Second || d > 30*time.Second {
		t.Errorf("PTTL online:node-a = %v, want about 30s", d)
	}
	score := raw.ZScore(ctx, s.prefix+"online-nodes", "node-a").Val()
	if exp := time.UnixMilli(int64(score)); time.Until(exp) < 20*time.Second || time.Until(exp) > 31*time.Second {
		t.Errorf("online-nodes score of node-a expires at %v, want in about 30s", exp)
	}

	// Unbind removes both, and the hash goes with its last field.
	if removed, err := s.Unbind(ctx, sess); err != nil || !removed {
		t.Fatalf("Unbind = %v, %v", removed, err)
	}
	if n := raw.Exists(ctx, s.prefix+"key:k1", s.prefix+"mid:7").Val(); n != 0 {
		t.Errorf("after Unbind %d of key:k1, mid:7 exist", n)
	}
}

func TestExpiry(t *testing.T) {
	addr := redistest.Start(t)
	s := newStore(t, addr, func(c *Config) { c.TTL = time.Second })
	ctx := t.Context()
	sess := store.Session{Mid: 1, Key: "k", Node: "a"}
	bound := func() (byMid, byKey bool) {
		m, err := s.KeysByMids(ctx, []int64{sess.Mid})
		if err != nil {
			t.Fatal(err)
		}
		k, err := s.NodesByKeys(ctx, []string{sess.Key})
		if err != nil {
			t.Fatal(err)
		}
		return len(m) == 1, len(k) == 1
	}
	if err := s.Bind(ctx, sess); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "bindings expire", func() bool {
		m, k := bound()
		return !m && !k
	})
	// A heartbeat after expiry re-binds.
	if err := s.Refresh(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if m, k := bound(); !m || !k {
		// Only possible if a whole second passed; say so rather than flake.
		t.Logf("re-bound binding already gone (mid %v, key %v): slow machine", m, k)
	}
	// Another node may take over the expired key with a heartbeat.
	eventually(t, 15*time.Second, "re-bound bindings expire", func() bool {
		m, k := bound()
		return !m && !k
	})
	other := sess
	other.Node = "b"
	if err := s.Refresh(ctx, other); err != nil {
		t.Fatal(err)
	}
	got, err := s.KeysByMids(ctx, []int64{sess.Mid})
	if err != nil {
		t.Fatal(err)
	}
	if n := got[sess.Mid][sess.Key]; n != "b" && len(got) != 0 {
		t.Errorf("after expiry, a heartbeat from b left the mid on %q", n)
	}
}

func TestOnlineExpiry(t *testing.T) {
	addr := redistest.Start(t)
	s := newStore(t, addr)
	raw := rawClient(t, addr)
	ctx := t.Context()
	if err := s.ReportOnline(ctx, store.NodeOnline{Node: "short", Conns: 1}, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.ReportOnline(ctx, store.NodeOnline{Node: "long", Conns: 2}, time.Hour); err != nil {
		t.Fatal(err)
	}
	nodes := func() string {
		all, err := s.AllOnline(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range all {
			names = append(names, r.Node)
		}
		return strings.Join(names, ",")
	}
	if got := nodes(); got != "long,short" && got != "long" {
		t.Fatalf("AllOnline = %s", got)
	}
	eventually(t, 15*time.Second, "the short report expires", func() bool { return nodes() == "long" })
	if members := raw.ZRange(ctx, s.onlineNodes, 0, -1).Val(); len(members) != 1 || members[0] != "long" {
		t.Errorf("index still holds %v, want [long]", members)
	}
	// A report whose key vanished (e.g. deleted by hand) is dropped too.
	raw.Del(ctx, s.onlinePrefix+"long")
	if got := nodes(); got != "" {
		t.Errorf("AllOnline = %q after the report was deleted", got)
	}
	if n := raw.ZCard(ctx, s.onlineNodes).Val(); n != 0 {
		t.Errorf("index holds %d nodes, want 0", n)
	}
}

// TestStaleFieldsPruned: a device whose key expired while another device of
// the user keeps the hash alive is not returned for long.
func TestStaleFieldsPruned(t *testing.T) {
	addr := redistest.Start(t)
	s := newStore(t, addr)
	raw := rawClient(t, addr)
	ctx := t.Context()
	live := store.Session{Mid: 5, Key: "live", Node: "a"}
	gone := store.Session{Mid: 5, Key: "gone", Node: "a"}
	moved := store.Session{Mid: 5, Key: "moved", Node: "a"}
	for _, sess := range []store.Session{live, gone, moved} {
		if err := s.Bind(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	raw.Del(ctx, s.keyKey("gone"))                                                      // expired
	if err := s.Bind(ctx, store.Session{Mid: 6, Key: "moved", Node: "b"}); err != nil { // reused by another user elsewhere
		t.Fatal(err)
	}
	if err := s.Refresh(ctx, live); err != nil {
		t.Fatal(err)
	}
	got, err := s.KeysByMids(ctx, []int64{5, 6})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]map[string]string{5: {"live": "a"}, 6: {"moved": "b"}}
	if !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("KeysByMids = %v, want %v", got, want)
	}
}

// countHook counts commands and pipelines sent through a client.
type countHook struct{ cmds, pipelines, pipelinedCmds atomic.Int64 }

func (h *countHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *countHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.pipelines.Add(1)
		h.pipelinedCmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func TestKeysByMidsOneRoundTrip(t *testing.T) {
	const users = 1000
	addr := redistest.Start(t)
	s := newStore(t, addr)
	ctx := t.Context()
	mids := make([]int64, users+10) // the last 10 unbound
	want := make(map[int64]map[string]string, users)
	keys := make([]string, 0, users)
	for i := range mids {
		mids[i] = int64(1_000_000 + i)
		if i >= users {
			continue
		}
		key := fmt.Sprintf("k%d", i)
		node := fmt.Sprintf("node-%d", i%7)
		if err := s.Bind(ctx, store.Session{Mid: mids[i], Key: key, Node: node}); err != nil {
			t.Fatal(err)
		}
		want[mids[i]] = map[string]string{key: node}
		keys = append(keys, key)
	}
	h := &countHook{}
	s.client.AddHook(h)

	got, err := s.KeysByMids(ctx, mids)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("KeysByMids returned %d mids, want %d (or the keys differ)", len(got), len(want))
	}
	if c, p, pc := h.cmds.Load(), h.pipelines.Load(), h.pipelinedCmds.Load(); c != 0 || p != 1 || pc != int64(len(mids)) {
		t.Errorf("KeysByMids sent %d commands and %d pipelines of %d commands; want 0, 1 of %d", c, p, pc, len(mids))
	}

	*h = countHook{}
	nodes, err := s.NodesByKeys(ctx, append(keys, "unknown"))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != users || nodes["k1"] != "node-1" {
		t.Errorf("NodesByKeys returned %d keys (k1 -> %q), want %d", len(nodes), nodes["k1"], users)
	}
	if c, p := h.cmds.Load(), h.pipelines.Load(); c != 1 || p != 0 {
		t.Errorf("NodesByKeys sent %d commands and %d pipelines; want one MGET", c, p)
	}
}

// TestConcurrentRebind races a reconnect elsewhere against the stale
// node's disconnect, with compare-and-delete in Lua deciding.
func TestConcurrentRebind(t *testing.T) {
	addr := redistest.Start(t)
	s := newStore(t, addr, func(c *Config) { c.PoolSize = 8 })
	ctx := t.Context()
	const rounds = 200

	t.Run("reconnect vs stale unbind", func(t *testing.T) {
		// The key is on A; B binds it while A's disconnect unbinds for A.
		// Whatever the order, the key ends on B.
		for i := range rounds {
			key := fmt.Sprintf("r%d", i)
			onA := store.Session{Mid: int64(i + 1), Key: key, Node: "a"}
			onB := store.Session{Mid: int64(i + 1), Key: key, Node: "b"}
			if err := s.Bind(ctx, onA); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			var bindErr, unbindErr error
			wg.Go(func() { <-start; bindErr = s.Bind(ctx, onB) })
			wg.Go(func() { <-start; _, unbindErr = s.Unbind(ctx, onA) })
			close(start)
			wg.Wait()
			if bindErr != nil || unbindErr != nil {
				t.Fatal(bindErr, unbindErr)
			}
			byKey, err := s.NodesByKeys(ctx, []string{key})
			if err != nil {
				t.Fatal(err)
			}
			byMid, err := s.KeysByMids(ctx, []int64{onB.Mid})
			if err != nil {
				t.Fatal(err)
			}
			if byKey[key] != "b" || byMid[onB.Mid][key] != "b" {
				t.Fatalf("round %d: key -> %q, mid -> %v; want both on b", i, byKey[key], byMid[onB.Mid])
			}
		}
	})

	t.Run("two binds vs unbind for A", func(t *testing.T) {
		// Binds to A and B race an unbind for A. The two bindings always
		// agree, and the key is gone only if the unbind removed A's binding.
		for i := range rounds {
			key := fmt.Sprintf("t%d", i)
			mid := int64(10_000 + i)
			onA := store.Session{Mid: mid, Key: key, Node: "a"}
			onB := store.Session{Mid: mid, Key: key, Node: "b"}
			var wg sync.WaitGroup
			start := make(chan struct{})
			var removed bool
			errs := make([]error, 3)
			wg.Go(func() { <-start; errs[0] = s.Bind(ctx, onA) })
			wg.Go(func() { <-start; errs[1] = s.Bind(ctx, onB) })
			wg.Go(func() { <-start; removed, errs[2] = s.Unbind(ctx, onA) })
			close(start)
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			byKey, err := s.NodesByKeys(ctx, []string{key})
			if err != nil {
				t.Fatal(err)
			}
			byMid, err := s.KeysByMids(ctx, []int64{mid})
			if err != nil {
				t.Fatal(err)
			}
			k, m := byKey[key], byMid[mid][key]
			if k != m {
				t.Fatalf("round %d: key -> %q but mid -> %q", i, k, m)
			}
			if k == "" && !removed {
				t.Fatalf("round %d: binding gone though Unbind removed nothing", i)
			}
		}
	})
}

// callAll calls every method of s and returns the errors by name.
func callAll(ctx context.Context, s *Store) map[string]error {
	sess := store.Session{Mid: 1, Key: "k", Node: "a"}
	errs := map[string]error{}
	errs["Ping"] = s.Ping(ctx)
	errs["Bind"] = s.Bind(ctx, sess)
	errs["Refresh"] = s.Refresh(ctx, sess)
	// Before Unbind, which would load the script both use: after a SCRIPT
	// FLUSH this one finds it missing.
	errs["UnbindMany"] = s.UnbindMany(ctx, []store.Session{sess})
	_, errs["Unbind"] = s.Unbind(ctx, sess)
	_, errs["KeysByMids"] = s.KeysByMids(ctx, []int64{1, 2})
	_, errs["NodesByKeys"] = s.NodesByKeys(ctx, []string{"k"})
	errs["ReportOnline"] = s.ReportOnline(ctx, store.NodeOnline{Node: "a"}, time.Minute)
	_, errs["AllOnline"] = s.AllOnline(ctx)
	return errs
}

func TestOutage(t *testing.T) {
	srv := redistest.NewServer(t)
	s := newStore(t, srv.Addr, func(c *Config) {
		c.DialTimeout, c.ReadTimeout, c.WriteTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
		c.PoolSize = 4
	})
	ctx := t.Context()
	for name, err := range callAll(ctx, s) {
		if err != nil {
			t.Fatalf("%s before the outage: %v", name, err)
		}
	}

	srv.Stop()
	// Twice: first with pooled connections to the dead server, then after
	// go-redis has seen the failures.
	for round := range 2 {
		start := time.Now()
		for name, err := range callAll(ctx, s) {
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("round %d: %s during the outage: %v, want store.ErrUnavailable", round, name, err)
			}
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("round %d: 8 calls during the outage took %v", round, d)
		}
	}

	srv.Start()
	eventually(t, 20*time.Second, "the store recovers", func() bool { return s.Ping(ctx) == nil })
	for name, err := range callAll(ctx, s) {
		if err != nil {
			t.Errorf("%s after recovery: %v", name, err)
		}
	}
	sess := store.Session{Mid: 99, Key: "after", Node: "a"}
	if err := s.Bind(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if got, err := s.NodesByKeys(ctx, []string{"after"}); err != nil || got["after"] != "a" {
		t.Fatalf("after recovery NodesByKeys = %v, %v", got, err)
	}
}

// TestHungServer: a server that accepts connections and never answers must
// not hang calls past the timeouts or the caller's deadline.
func TestHungServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})

	t.Run("timeouts", func(t *testing.T) {
		s := newStore(t, l.Addr().String(), func(c *Config) {
			c.DialTimeout, c.ReadTimeout, c.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
		})
		start := time.Now()
		for name, err := range callAll(context.Background(), s) {
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s: %v, want store.ErrUnavailable", name, err)
			}
		}
		// 8 calls of at most 600ms each.
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("8 calls took %v", d)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		s := newStore(t, l.Addr().String(), func(c *Config) {
			c.DialTimeout, c.ReadTimeout, c.WriteTimeout = 10*time.Second, 10*time.Second, 10*time.Second
		})
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := s.KeysByMids(ctx, []int64{1})
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("KeysByMids with a 200ms deadline took %v", d)
		}
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want store.ErrUnavailable and context.DeadlineExceeded", err)
		}
	})
}

func TestErrors(t *testing.T) {
	addr := redistest.Start(t)
	s := newStore(t, addr)
	raw := rawClient(t, addr)
	ctx := t.Context()

	// A Redis error reply keeps its identity under store.ErrUnavailable.
	raw.Set(ctx, s.midKey(3), "not a hash", 0)
	_, err := s.KeysByMids(ctx, []int64{3})
	var rerr goredis.Error
	if !errors.Is(err, store.ErrUnavailable) || !errors.As(err, &rerr) || !strings.HasPrefix(rerr.Error(), "WRONGTYPE") {
		t.Errorf("KeysByMids of a string: %v, want store.ErrUnavailable wrapping WRONGTYPE", err)
	}

	// The caller's cancellation is not an outage.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for name, err := range callAll(cancelled, s) {
		if !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s cancelled: %v, want context.Canceled only", name, err)
		}
	}

	// Invalid arguments are plain errors and store nothing.
	invalid := map[string]error{
		"bind without key":     s.Bind(ctx, store.Session{Mid: 1, Node: "a"}),
		"bind without node":    s.Bind(ctx, store.Session{Mid: 1, Key: "k"}),
		"refresh without node": s.Refresh(ctx, store.Session{Mid: 1, Key: "k"}),
		"report without node":  s.ReportOnline(ctx, store.NodeOnline{}, time.Second),
		"report without ttl":   s.ReportOnline(ctx, store.NodeOnline{Node: "a"}, 0),
	}
	for name, err := range invalid {
		if err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: %v, want a plain error", name, err)
		}
	}
	if keys := raw.Keys(ctx, s.prefix+"*").Val(); len(keys) != 1 {
		t.Errorf("keys under the prefix: %v, want only the planted mid", keys)
	}

	// Closed: unavailable.
	s.Close()
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping after Close: %v", err)
	}
}

// TestScriptCacheLost: after Redis forgets its scripts (SCRIPT FLUSH, or a
// restart) the next call loads them again.
func TestScriptCacheLost(t *testing.T) {
	addr := redistest.Start(t)
	s := newStore(t, addr)
	raw := rawClient(t, addr)
	ctx := t.Context()
	for range 2 {
		if err := raw.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		for name, err := range callAll(ctx, s) {
			if err != nil {
				t.Errorf("%s after SCRIPT FLUSH: %v", name, err)
			}
		}
	}
}

func TestPasswordAndDB(t *testing.T) {
	srv := redistest.NewServer(t, "--requirepass", "secret")
	ctx := t.Context()
	s := newStore(t, srv.Addr, func(c *Config) { c.Password, c.DB = "secret", 3 })
	if err := s.Bind(ctx, store.Session{Mid: 1, Key: "k", Node: "a"}); err != nil {
		t.Fatalf("Bind with the password: %v", err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Password: "secret", DB: 3, Protocol: 2, DisableIdentity: true})
	defer raw.Close()
	if got := raw.Get(ctx, s.keyKey("k")).Val(); got != "1@a" {
		t.Errorf("key in db 3 = %q, want 1@a", got)
	}
	wrong := newStore(t, srv.Addr, func(c *Config) { c.Password = "wrong" })
	if err := wrong.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping with a wrong password: %v, want store.ErrUnavailable", err)
	}
}

// TestPoolStats: the pool's figures follow the calls made: the first call
// dials, the next ones reuse the idle connection.
func TestPoolStats(t *testing.T) {
	s := newStore(t, redistest.Start(t))
	if p := s.PoolStats(); p != (PoolStats{}) {
		t.Fatalf("before any call: %+v, want zeros", p)
	}
	for range 5 {
		if err := s.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	p := s.PoolStats()
	if p.TotalConns < 1 || p.IdleConns < 1 || p.Misses < 1 || p.Hits+p.Misses < 5 || p.Timeouts != 0 {
		t.Fatalf("after 5 calls: %+v", p)
	}
}
