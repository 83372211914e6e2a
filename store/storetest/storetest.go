package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud/store"
)

// reportTTL is the online report TTL the suite uses: long enough that no
// report expires during a run.
const reportTTL = time.Minute

// Run runs the store contract suite. newStore is called once per subtest and
// returns the sessions and online halves of one store (the same value for
// the memory backend); the factory owns closing it (t.Cleanup). The store's
// binding TTL must be long enough (a minute or more) that nothing the suite
// binds expires during it.
//
// The contract: Bind is seen by KeysByMids and NodesByKeys, for many mids in
// one call; unknown mids and keys are absent; anonymous sessions (mid <= 0)
// are bound by key only; a key bound for another mid leaves the previous
// mid's keys; Unbind is compare-and-delete on the node (and the mid) and
// reports whether it removed the key binding; Refresh keeps a binding,
// re-binds a missing one and never takes over a key another node or mid
// holds (it answers store.ErrMoved); ReportOnline replaces the node's report
// and AllOnline returns every node's latest report.
func Run(t *testing.T, newStore func(t *testing.T) (store.Sessions, store.Online)) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Sessions, o store.Online)
	}{
		{"BindLookup", testBindLookup},
		{"ManyMids", testManyMids},
		{"UnbindCompareAndDelete", testCompareAndDelete},
		{"Unbind", testUnbind},
		{"UnbindMany", testUnbindMany},
		{"Refresh", testRefresh},
		{"KeyTakenByAnotherMid", testKeyTaken},
		{"Anonymous", testAnonymous},
		{"ConcurrentBinds", testConcurrent},
		{"OnlineReports", testOnline},
		{"OnlineReplaced", testOnlineReplaced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, o := newStore(t)
			tt.fn(t, s, o)
		})
	}
}

// fixture hands out names and mids unique to one subtest and run, and
// unbinds every session it bound when the test ends.
type fixture struct {
	t      *testing.T
	s      store.Sessions
	prefix string
	mid    int64

	mu    sync.Mutex
	bound []store.Session
}

func newFixture(t *testing.T, s store.Sessions) *fixture {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	f := &fixture{
		t:      t,
		s:      s,
		prefix: fmt.Sprintf("st-%s-%d-%d-", name, time.Now().UnixNano(), rand.Uint32()),
		// Mids far from real ones and from other runs: 2^52 + a random block.
		mid: 1<<52 + rand.Int64N(1<<40)<<10,
	}
	t.Cleanup(f.cleanup)
	return f
}

// name returns a key or node name unique to this fixture.
func (f *fixture) name(s string) string { return f.prefix + s }

// mids returns n mids unique to this fixture (at most 1024 per fixture).
func (f *fixture) mids(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = f.mid
		f.mid++
	}
	return out
}

func (f *fixture) bind(sess store.Session) {
	f.t.Helper()
	if err := f.s.Bind(f.t.Context(), sess); err != nil {
		f.t.Fatalf("Bind(%+v): %v", sess, err)
	}
	f.track(sess)
}

func (f *fixture) track(sess store.Session) {
	f.mu.Lock()
	f.bound = append(f.bound, sess)
	f.mu.Unlock()
}

func (f *fixture) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, sess := range f.bound {
		if _, err := f.s.Unbind(ctx, sess); err != nil {
			f.t.Errorf("cleanup Unbind(%+v): %v", sess, err)
		}
	}
}

func (f *fixture) keysByMids(mids ...int64) map[int64]map[string]string {
	f.t.Helper()
	got, err := f.s.KeysByMids(f.t.Context(), mids)
	if err != nil {
		f.t.Fatalf("KeysByMids: %v", err)
	}
	return got
}

func (f *fixture) nodesByKeys(keys ...string) map[string]string {
	f.t.Helper()
	got, err := f.s.NodesByKeys(f.t.Context(), keys)
	if err != nil {
		f.t.Fatalf("NodesByKeys: %v", err)
	}
	return got
}

func (f *fixture) unbind(sess store.Session) bool {
	f.t.Helper()
	removed, err := f.s.Unbind(f.t.Context(), sess)
	if err != nil {
		f.t.Fatalf("Unbind(%+v): %v", sess, err)
	}
	return removed
}

// equal compares maps treating nil and empty alike.
func equal[M ~map[K]V, K comparable, V any](got, want M) bool {
	if len(got) == 0 && len(want) == 0 {
		return true
	}
	return reflect.DeepEqual(got, want)
}

func testBindLookup(t *testing.T, s store.Sessions, _ store.Online) {
	f := newFixture(t, s)
	ids := f.mids(3)
	mid, other, unknown := ids[0], ids[1], ids[2]
	k1, k2, k3 := f.name("k1"), f.name("k2"), f.name("k3")
	nodeA, nodeB := f.name("node-a"), f.name("node-b")
	f.bind(store.Session{Mid: mid, Key: k1, Node: nodeA, Room: "live://1"})
	f.bind(store.Session{Mid: mid, Key: k2, Node: nodeB}) // the same user on a second device
	f.bind(store.Session{Mid: other, Key: k3, Node: nodeA})

	tests := []struct {
		name string
		mids []int64
		want map[int64]map[string]string
	}{
		{"two devices", []int64{mid}, map[int64]map[string]string{mid: {k1: nodeA, k2: nodeB}}},
		{"two users", []int64{mid, other}, map[int64]map[string]string{mid: {k1: nodeA, k2: nodeB}, other: {k3: nodeA}}},
		{"unknown absent", []int64{unknown, other}, map[int64]map[string]string{other: {k3: nodeA}}},
		{"only unknown", []int64{unknown}, nil},
		{"none", nil, nil},
		{"repeated mid", []int64{other, other}, map[int64]map[string]string{other: {k3: nodeA}}},
	}
	for _, tt := range tests {
		t.Run("mids/"+tt.name, func(t *testing.T) {
			if got := f.keysByMids(tt.mids...); !equal(got, tt.want) {
				t.Errorf("KeysByMids(%v) = %v, want %v", tt.mids, got, tt.want)
			}
		})
	}
	keyTests := []struct {
		name string
		keys []string
		want map[string]string
	}{
		{"all", []string{k1, k2, k3}, map[string]string{k1: nodeA, k2: nodeB, k3: nodeA}},
		{"unknown absent", []string{k2, f.name("nope")}, map[string]string{k2: nodeB}},
		{"none", nil, nil},
	}
	for _, tt := range keyTests {
		t.Run("keys/"+tt.name, func(t *testing.T) {
			if got := f.nodesByKeys(tt.keys...); !equal(got, tt.want) {
				t.Errorf("NodesByKeys(%v) = %v, want %v", tt.keys, got, tt.want)
			}
		})
	}
}

func testManyMids(t *testing.T, s store.Sessions, _ store.Online) {
	const users = 500
	f := newFixture(t, s)
	mids := f.mids(users + 10) // the last 10 are never bound
	want := make(map[int64]map[string]string, users)
	var keys []string
	for i, mid := range mids[:users] {
		want[mid] = make(map[string]string)
		for d := range 1 + i%2 { // every other user has two devices
			key := f.name(fmt.Sprintf("u%d-d%d", i, d))
			node := f.name(fmt.Sprintf("node-%d", (i+d)%4))
			f.bind(store.Session{Mid: mid, Key: key, Node: node})
			want[mid][key] = node
			keys = append(keys, key)
		}
	}
	got := f.keysByMids(mids...)
	if len(got) != users {
		t.Errorf("KeysByMids returned %d mids, want %d", len(got), users)
	}
	for mid, w := range want {
		if !maps.Equal(got[mid], w) {
			t.Errorf("mid %d: %v, want %v", mid, got[mid], w)
		}
	}
	nodes := f.nodesByKeys(keys...)
	if len(nodes) != len(keys) {
		t.Errorf("NodesByKeys returned %d keys, want %d", len(nodes), len(keys))
	}
}

func testCompareAndDelete(t *testing.T, s store.Sessions, _ store.Online) {
	f := newFixture(t, s)
	mid := f.mids(1)[0]
	key := f.name("k")
	onA := store.Session{Mid: mid, Key: key, Node: f.name("node-a")}
	onB := store.Session{Mid: mid, Key: key, Node: f.name("node-b")}
	f.bind(onA)
	f.bind(onB) // the client reconnected to node B with the same key

	if f.unbind(onA) {
		t.Error("Unbind of the stale session on node A reported a removal")
	}
	if got := f.nodesByKeys(key); got[key] != onB.Node {
		t.Errorf("after stale Unbind, key -> %q, want %q", got[key], onB.Node)
	}
	if got := f.keysByMids(mid); got[mid][key] != onB.Node {
		t.Errorf("after stale Unbind, mid -> %v, want %s -> %s", got[mid], key, onB.Node)
	}

	if !f.unbind(onB) {
		t.Error("Unbind on the right node reported no removal")
	}
	if got := f.nodesByKeys(key); len(got) != 0 {
		t.Errorf("after Unbind, NodesByKeys = %v, want empty", got)
	}
	if got := f.keysByMids(mid); len(got) != 0 {
		t.Errorf("after Unbind, KeysByMids = %v, want empty", got)
	}
}

func testUnbind(t *testing.T, s store.Sessions, _ store.Online) {
	f := newFixture(t, s)
	mid := f.mids(1)[0]
	node := f.name("node")
	keep := store.Session{Mid: mid, Key: f.name("keep"), Node: node}
	drop := store.Session{Mid: mid, Key: f.name("drop"), Node: node}
	f.bind(keep)
	f.bind(drop)

	tests := []struct {
		name string
		sess store.Session
		want bool
	}{
		{"bound", drop, true},
		{"twice", drop, false},
		{"never bound", store.Session{Mid: mid, Key: f.name("never"), Node: node}, false},
		{"other mid, same node", store.Session{Mid: f.mids(1)[0], Key: f.name("nokey"), Node: node}, false},
	}
	for _, tt := range tests {
		if got := f.unbind(tt.sess); got != tt.want {
			t.Errorf("%s: Unbind = %v, want %v", tt.name, got, tt.want)
		}
	}
	want := map[int64]map[string]string{mid: {keep.Key: node}}
	if got := f.keysByMids(mid); !equal(got, want) {
		t.Errorf("the other device's binding changed: %v, want %v", got, want)
	}
}

// testUnbindMany: each session of the batch is compare-and-deleted, as
// Unbind would: bindings another node took are kept.
func testUnbindMany(t *testing.T, s store.Sessions, _ store.Online) {
	f := newFixture(t, s)
	ids := f.mids(2)
	nodeA, nodeB := f.name("node-a"), f.name("node-b")
	gone1 := store.Session{Mid: ids[0], Key: f.name("gone-1"), Node: nodeA}
	gone2 := store.Session{Mid: ids[0], Key: f.name("gone-2"), Node: nodeA}
	moved := store.Session{Mid: ids[1], Key: f.name("moved"), Node: nodeA}
	for _, sess := range []store.Session{gone1, gone2, moved} {
		f.bind(sess)
	}
	onB := moved
	onB.Node = nodeB
	f.bind(onB)
	if err := s.UnbindMany(t.Context(), nil); err != nil {
		t.Fatalf("UnbindMany of nothing: %v", err)
	}
	if err := s.UnbindMany(t.Context(), []store.Session{gone1, gone2, moved}); err != nil {
		t.Fatalf("UnbindMany: %v", err)
	}
	want := map[int64]map[string]string{ids[1]: {moved.Key: nodeB}}
	if got := f.keysByMids(ids...); !equal(got, want) {
		t.Errorf("after UnbindMany, KeysByMids = %v, want %v", got, want)
	}
	if got := f.nodesByKeys(gone1.Key, gone2.Key, moved.Key); len(got) != 1 || got[moved.Key] != nodeB {
		t.Errorf("after UnbindMany, NodesByKeys = %v, want only %s on %s", got, moved.Key, nodeB)
	}
	if err := s.UnbindMany(t.Context(), []store.Session{{Mid: 1, Key: "", Node: nodeA}}); err == nil {
		t.Error("UnbindMany of a session without a key succeeded")
	}
}

func testRefresh(t *testing.T, s store.Sessions, _ store.Online) {
	f := newFixture(t, s)
	ids := f.mids(2)
	nodeA, nodeB := f.name("node-a"), f.name("node-b")

	bound := store.Session{Mid: ids[0], Key: f.name("bound"), Node: nodeA}
	f.bind(bound)
	if err := s.Refresh(t.Context(), bound); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if got := f.nodesByKeys(bound.Key); got[bound.Key] != nodeA {
		t.Errorf("after Refresh, key -> %q, want %q", got[bound.Key], nodeA)
	}

	// A binding lost meanwhile (expired, or removed) is re-bound.
	lost := store.Session{Mid: ids[1], Key: f.name("lost"), Node: nodeA}
	f.track(lost)
	if err := s.Refresh(t.Context(), lost); err != nil {
		t.Fatalf("Refresh of an unbound session: %v", err)
	}
	want := map[int64]map[string]string{lost.Mid: {lost.Key: nodeA}}
	if got := f.keysByMids(lost.Mid); !equal(got, want) {
		t.Errorf("Refresh did not re-bind: KeysByMids = %v, want %v", got, want)
	}

	// The old connection's heartbeat must not take the key back from B,
	// and learns that it was replaced.
	moved := store.Session{Mid: ids[0], Key: f.name("moved"), Node: nodeA}
	f.bind(moved)
	onB := moved
	onB.Node = nodeB
	f.bind(onB)
	if err := s.Refresh(t.Context(), moved); !errors.Is(err, store.ErrMoved) {
		t.Fatalf("Refresh from the old node: %v, want %v", err, store.ErrMoved)
	}
	if got := f.nodesByKeys(moved.Key); got[moved.Key] != nodeB {
		t.Errorf("Refresh from the old node moved the key to %q, want it on %q", got[moved.Key], nodeB)
	}
	if got := f.keysByMids(moved.Mid); got[moved.Mid][moved.Key] != nodeB {
		t.Errorf("Refresh from the old node moved mid's key to %q, want it on %q", got[moved.Mid][moved.Key], nodeB)
	}
}

// testKeyTaken: a key bound for another user leaves the previous user's
// keys, on the same node or another, and the previous session can neither
// renew nor remove what is now the new user's.
func testKeyTaken(t *testing.T, s store.Sessions, _ store.Online) {
	tests := []struct {
		name      string
		sameNode  bool
		otherKeys int // devices the previous user keeps
	}{
		{"same node", true, 0},
		{"other node", false, 0},
		{"same node, previous user has another device", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, s)
			ids := f.mids(2)
			nodeA, nodeB := f.name("node-a"), f.name("node-b")
			key := f.name("k")
			prev := store.Session{Mid: ids[0], Key: key, Node: nodeA}
			next := store.Session{Mid: ids[1], Key: key, Node: nodeB}
			if tt.sameNode {
				next.Node = nodeA
			}
			f.bind(prev)
			want := map[int64]map[string]string{next.Mid: {key: next.Node}}
			if tt.otherKeys > 0 {
				other := store.Session{Mid: prev.Mid, Key: f.name("other"), Node: nodeB}
				f.bind(other)
				want[prev.Mid] = map[string]string{other.Key: nodeB}
			}
			f.bind(next)
			if got := f.keysByMids(prev.Mid, next.Mid); !equal(got, want) {
				t.Errorf("after the key changed users, KeysByMids = %v, want %v", got, want)
			}
			if err := s.Refresh(t.Context(), prev); !errors.Is(err, store.ErrMoved) {
				t.Errorf("Refresh of the previous user's session: %v, want %v", err, store.ErrMoved)
			}
			if f.unbind(prev) {
				t.Error("Unbind of the previous user's session removed the key binding")
			}
			if got := f.nodesByKeys(key); got[key] != next.Node {
				t.Errorf("NodesByKeys = %v, want %s on %s", got, key, next.Node)
			}
			if got := f.keysByMids(prev.Mid, next.Mid); !equal(got, want) {
				t.Errorf("after the previous session's Refresh and Unbind, KeysByMids = %v, want %v", got, want)
			}
		})
	}
}

// testAnonymous: a session of mid 0 (or below) is bound by key only.
func testAnonymous(t *testing.T, s store.Sessions, _ store.Online) {
	f := newFixture(t, s)
	node := f.name("node")
	for _, mid := range []int64{0, -5} {
		sess := store.Session{Mid: mid, Key: f.name(fmt.Sprint("anon", mid)), Node: node}
		f.bind(sess)
		if err := s.Refresh(t.Context(), sess); err != nil {
			t.Fatalf("Refresh(%+v): %v", sess, err)
		}
		if got := f.nodesByKeys(sess.Key); got[sess.Key] != node {
			t.Errorf("mid %d: NodesByKeys = %v, want %s on %s", mid, got, sess.Key, node)
		}
		if got := f.keysByMids(mid); len(got) != 0 {
			t.Errorf("mid %d: KeysByMids = %v, want nothing (anonymous)", mid, got)
		}
		// The key taken by a user: the anonymous session is replaced.
		user := store.Session{Mid: f.mids(1)[0], Key: sess.Key, Node: node}
		f.bind(user)
		if err := s.Refresh(t.Context(), sess); !errors.Is(err, store.ErrMoved) {
			t.Errorf("mid %d: Refresh after a user took the key: %v, want %v", mid, err, store.ErrMoved)
		}
		if got := f.keysByMids(user.Mid); got[user.Mid][sess.Key] != node {
			t.Errorf("KeysByMids(%d) = %v, want %s on %s", user.Mid, got, sess.Key, node)
		}
		if !f.unbind(user) {
			t.Errorf("Unbind(%+v) removed nothing", user)
		}
	}
}

// testConcurrent runs binds, lookups and unbinds from several goroutines;
// it is meant for the race detector and checks the end state.
func testConcurrent(t *testing.T, s store.Sessions, _ store.Online) {
	const workers, per = 8, 25
	f := newFixture(t, s)
	mids := f.mids(workers)
	node := f.name("node")
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			ctx := t.Context()
			for i := range per {
				sess := store.Session{Mid: mids[w], Key: f.name(fmt.Sprintf("w%d-%d", w, i)), Node: node}
				if err := s.Bind(ctx, sess); err != nil {
					errs <- err
					return
				}
				f.track(sess)
				if _, err := s.KeysByMids(ctx, mids); err != nil {
					errs <- err
					return
				}
				if i%2 == 1 {
					if _, err := s.Unbind(ctx, sess); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := f.keysByMids(mids...)
	for w, mid := range mids {
		if len(got[mid]) != per/2+per%2 {
			t.Errorf("worker %d: %d keys left, want %d", w, len(got[mid]), per/2+per%2)
		}
	}
}

// online returns the reports of nodes with the fixture's prefix, by node.
func online(t *testing.T, o store.Online, prefix string) map[string]store.NodeOnline {
	t.Helper()
	all, err := o.AllOnline(t.Context())
	if err != nil {
		t.Fatalf("AllOnline: %v", err)
	}
	out := make(map[string]store.NodeOnline)
	for _, r := range all {
		if !strings.HasPrefix(r.Node, prefix) {
			continue
		}
		if _, dup := out[r.Node]; dup {
			t.Errorf("AllOnline returned node %s twice", r.Node)
		}
		out[r.Node] = r
	}
	return out
}

func report(t *testing.T, o store.Online, r store.NodeOnline) {
	t.Helper()
	if err := o.ReportOnline(t.Context(), r, reportTTL); err != nil {
		t.Fatalf("ReportOnline(%s): %v", r.Node, err)
	}
}

// sameReport compares reports treating nil and empty room maps alike.
func sameReport(a, b store.NodeOnline) bool {
	return a.Node == b.Node && a.Conns == b.Conns && a.IPs == b.IPs && equal(a.Rooms, b.Rooms)
}

func testOnline(t *testing.T, s store.Sessions, o store.Online) {
	f := newFixture(t, s)
	reports := []store.NodeOnline{
		{Node: f.name("node-a"), Conns: 3, IPs: 2, Rooms: map[string]int32{"live://1": 2, "live://2": 1}},
		{Node: f.name("node-b"), Conns: 7, IPs: 7, Rooms: map[string]int32{"live://1": 5, "chat://x y": 2}},
		{Node: f.name("node-c"), Conns: 0, IPs: 0, Rooms: nil}, // no rooms at all
	}
	for _, r := range reports {
		report(t, o, r)
	}
	got := online(t, o, f.prefix)
	if len(got) != len(reports) {
		t.Fatalf("AllOnline has %d of our nodes, want %d: %v", len(got), len(reports), got)
	}
	for _, want := range reports {
		if r := got[want.Node]; !sameReport(r, want) {
			t.Errorf("report of %s = %+v, want %+v", want.Node, r, want)
		}
	}
}

func testOnlineReplaced(t *testing.T, s store.Sessions, o store.Online) {
	f := newFixture(t, s)
	node := f.name("node")
	report(t, o, store.NodeOnline{Node: node, Conns: 9, IPs: 4, Rooms: map[string]int32{"live://old": 9}})
	newer := store.NodeOnline{Node: node, Conns: 2, IPs: 1, Rooms: map[string]int32{"live://new": 2}}
	report(t, o, newer)
	got := online(t, o, f.prefix)
	if len(got) != 1 || !sameReport(got[node], newer) {
		t.Fatalf("after a newer report, AllOnline = %+v, want only %+v", got, newer)
	}
}
