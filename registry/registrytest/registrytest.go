package registrytest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/imcloud/imcloud/registry"
)

// waitFor bounds every wait in the suite; generous so a real backend passes.
const waitFor = 10 * time.Second

// Run runs the registry contract suite. newReg is called once per subtest
// and returns a registrar and a watcher on the same registry (the same value
// for the memory backend); the factory owns closing them (t.Cleanup).
//
// The contract: Nodes lists a role's nodes sorted by ID with every field
// kept and Updated stamped; registering a registered id fails with
// registry.ErrDuplicateID and updating an unregistered one with
// registry.ErrNotRegistered; Update and Deregister are seen by Nodes and by
// every watch; Watch sends the current list at once, a slow reader ends up
// with the latest list, and the channel is closed after its ctx ends; roles
// are separate namespaces; a node without an id or a role, or a role with a
// slash, is refused with registry.ErrInvalid.
func Run(t *testing.T, newReg func(t *testing.T) (registry.Registrar, registry.Watcher)) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, r registry.Registrar, w registry.Watcher)
	}{
		{"RegisterNodesSorted", testRegisterSorted},
		{"DuplicateID", testDuplicate},
		{"UpdateSeen", testUpdate},
		{"DeregisterSeen", testDeregister},
		{"WatchFirstImmediate", testWatchFirst},
		{"WatchSlowReaderGetsLatest", testSlowReader},
		{"WatchClosedAfterCancel", testWatchClosed},
		{"RolesSeparate", testRoles},
		{"Invalid", testInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, w := newReg(t)
			tt.fn(t, r, w)
		})
	}
}

// uniqueRole returns a role name no other subtest or run uses.
func uniqueRole(t *testing.T, name string) string {
	t.Helper()
	return fmt.Sprintf("rt-%s-%d-%d", name, time.Now().UnixNano(), rand.Uint32())
}

// node returns a node with every field set.
func node(role, id string, conns int64) registry.Node {
	return registry.Node{
		ID:       id,
		Role:     role,
		Region:   "eu-1",
		GRPCAddr: "10.0.0.1:3109",
		Addrs:    []registry.Addr{{TCP: "10.0.0.1:3101", WS: "ws://10.0.0.1:3102/sub"}, {TCP: "[::1]:3101"}},
		Weight:   10,
		Conns:    conns,
		IPs:      conns / 2,
	}
}

// register registers n and deregisters it when the test ends.
func register(t *testing.T, r registry.Registrar, n registry.Node) {
	t.Helper()
	if err := r.Register(t.Context(), n); err != nil {
		t.Fatalf("Register(%s/%s): %v", n.Role, n.ID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := r.Deregister(ctx, n.Role, n.ID); err != nil {
			t.Errorf("cleanup Deregister(%s/%s): %v", n.Role, n.ID, err)
		}
	})
}

// watch starts a watch of role that ends with the test.
func watch(t *testing.T, w registry.Watcher, role string) <-chan []registry.Node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := w.Watch(ctx, role)
	if err != nil {
		t.Fatalf("Watch(%s): %v", role, err)
	}
	return ch
}

// next receives one list from ch, failing the test if none comes within
// waitFor or ch is closed.
func next(t *testing.T, ch <-chan []registry.Node) []registry.Node {
	t.Helper()
	select {
	case list, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed early")
		}
		return list
	case <-time.After(waitFor):
		t.Fatalf("no node list within %v", waitFor)
		return nil
	}
}

// until receives lists from ch until one satisfies ok and returns it.
func until(t *testing.T, ch <-chan []registry.Node, what string, ok func([]registry.Node) bool) []registry.Node {
	t.Helper()
	deadline := time.After(waitFor)
	var last []registry.Node
	for {
		select {
		case list, open := <-ch:
			if !open {
				t.Fatalf("watch channel closed before %s; last list %v", what, ids(last))
			}
			if ok(list) {
				return list
			}
			last = list
		case <-deadline:
			t.Fatalf("watch did not show %s within %v; last list %v", what, waitFor, ids(last))
		}
	}
}

// nodes calls Nodes and fails the test on error.
func nodes(t *testing.T, w registry.Watcher, role string) []registry.Node {
	t.Helper()
	list, err := w.Nodes(t.Context(), role)
	if err != nil {
		t.Fatalf("Nodes(%s): %v", role, err)
	}
	return list
}

func ids(list []registry.Node) []string {
	out := make([]string, len(list))
	for i, n := range list {
		out[i] = n.ID
	}
	return out
}

func find(list []registry.Node, id string) (registry.Node, bool) {
	for _, n := range list {
		if n.ID == id {
			return n, true
		}
	}
	return registry.Node{}, false
}

// sameFields compares n with want ignoring Updated.
func sameFields(n, want registry.Node) bool {
	n.Updated, want.Updated = 0, 0
	return reflect.DeepEqual(n, want)
}

func testRegisterSorted(t *testing.T, r registry.Registrar, w registry.Watcher) {
	tests := []struct {
		name  string
		order []string // registration order
	}{
		{"reverse", []string{"c", "b", "a"}},
		{"mixed", []string{"node-2:3109", "node-10:3109", "node-1:3109", "node-3:3109"}},
		{"single", []string{"only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			role := uniqueRole(t, "sorted")
			before := time.Now().UnixMilli()
			want := make(map[string]registry.Node)
			for i, id := range tt.order {
				n := node(role, id, int64(i))
				want[id] = n
				register(t, r, n)
			}
			after := time.Now().UnixMilli()
			got := nodes(t, w, role)
			sorted := append([]string(nil), tt.order...)
			slices.Sort(sorted)
			if fmt.Sprint(ids(got)) != fmt.Sprint(sorted) {
				t.Fatalf("Nodes ids = %v, want %v", ids(got), sorted)
			}
			for _, n := range got {
				if !sameFields(n, want[n.ID]) {
					t.Errorf("node %s = %+v, want %+v", n.ID, n, want[n.ID])
				}
				if n.Updated < before-1000 || n.Updated > after+1000 {
					t.Errorf("node %s Updated = %d, want about now (%d..%d)", n.ID, n.Updated, before, after)
				}
			}
		})
	}
}

func testDuplicate(t *testing.T, r registry.Registrar, w registry.Watcher) {
	role := uniqueRole(t, "dup")
	register(t, r, node(role, "n1", 1))
	err := r.Register(t.Context(), node(role, "n1", 99))
	if !errors.Is(err, registry.ErrDuplicateID) {
		t.Fatalf("second Register: %v, want %v", err, registry.ErrDuplicateID)
	}
	got := nodes(t, w, role)
	if len(got) != 1 || got[0].Conns != 1 {
		t.Fatalf("after refused Register, Nodes = %+v, want the first record only", got)
	}
}

func testUpdate(t *testing.T, r registry.Registrar, w registry.Watcher) {
	role := uniqueRole(t, "update")
	register(t, r, node(role, "n1", 1))
	register(t, r, node(role, "n2", 2))
	chs := []<-chan []registry.Node{watch(t, w, role), watch(t, w, role)}
	first := nodes(t, w, role)

	upd := node(role, "n1", 42)
	upd.Weight = 5
	if err := r.Update(t.Context(), upd); err != nil {
		t.Fatalf("Update: %v", err)
	}
	for i, ch := range chs {
		list := until(t, ch, "n1 with 42 conns", func(l []registry.Node) bool {
			n, ok := find(l, "n1")
			return ok && n.Conns == 42
		})
		if fmt.Sprint(ids(list)) != "[n1 n2]" {
			t.Errorf("watch %d list = %v, want [n1 n2]", i, ids(list))
		}
	}
	got, _ := find(nodes(t, w, role), "n1")
	if !sameFields(got, upd) {
		t.Errorf("after Update, n1 = %+v, want %+v", got, upd)
	}
	if was, _ := find(first, "n1"); got.Updated < was.Updated {
		t.Errorf("Updated went back from %d to %d", was.Updated, got.Updated)
	}

	err := r.Update(t.Context(), node(role, "absent", 1))
	if !errors.Is(err, registry.ErrNotRegistered) {
		t.Errorf("Update of an unregistered node: %v, want %v", err, registry.ErrNotRegistered)
	}
	if _, ok := find(nodes(t, w, role), "absent"); ok {
		t.Error("a refused Update registered the node")
	}
}

func testDeregister(t *testing.T, r registry.Registrar, w registry.Watcher) {
	role := uniqueRole(t, "dereg")
	register(t, r, node(role, "n1", 1))
	register(t, r, node(role, "n2", 2))
	ch := watch(t, w, role)
	if err := r.Deregister(t.Context(), role, "n1"); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	until(t, ch, "n1 gone", func(l []registry.Node) bool {
		_, ok := find(l, "n1")
		return !ok && len(l) == 1
	})
	if got := ids(nodes(t, w, role)); fmt.Sprint(got) != "[n2]" {
		t.Errorf("Nodes after Deregister = %v, want [n2]", got)
	}
	for _, id := range []string{"n1", "never"} {
		if err := r.Deregister(t.Context(), role, id); err != nil {
			t.Errorf("Deregister of unknown %s: %v, want nil", id, err)
		}
	}
	// A deregistered id can be registered again.
	register(t, r, node(role, "n1", 3))
	until(t, ch, "n1 back", func(l []registry.Node) bool { return len(l) == 2 })
}

func testWatchFirst(t *testing.T, r registry.Registrar, w registry.Watcher) {
	tests := []struct {
		name string
		ids  []string
	}{
		{"empty role", nil},
		{"three nodes", []string{"b", "a", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			role := uniqueRole(t, "first")
			for _, id := range tt.ids {
				register(t, r, node(role, id, 1))
			}
			want := append([]string{}, tt.ids...)
			slices.Sort(want)
			start := time.Now()
			list := next(t, watch(t, w, role))
			if fmt.Sprint(ids(list)) != fmt.Sprint(want) {
				t.Errorf("first list = %v, want %v", ids(list), want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("first list took %v, want it at once", d)
			}
		})
	}
}

func testSlowReader(t *testing.T, r registry.Registrar, w registry.Watcher) {
	const updates = 20
	role := uniqueRole(t, "slow")
	register(t, r, node(role, "n1", 0))
	ch := watch(t, w, role)
	next(t, ch)
	for i := 1; i <= updates; i++ { // nobody reads meanwhile
		if err := r.Update(t.Context(), node(role, "n1", int64(i))); err != nil {
			t.Fatalf("Update %d: %v", i, err)
		}
	}
	until(t, ch, "the latest update", func(l []registry.Node) bool {
		return len(l) == 1 && l[0].Conns == updates
	})
}

func testWatchClosed(t *testing.T, r registry.Registrar, w registry.Watcher) {
	role := uniqueRole(t, "closed")
	register(t, r, node(role, "n1", 1))
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := w.Watch(ctx, role)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	next(t, ch)
	cancel()
	// Changes after cancel must not block the registry nor reopen anything.
	if err := r.Update(t.Context(), node(role, "n1", 2)); err != nil {
		t.Fatalf("Update after cancel: %v", err)
	}
	deadline := time.After(waitFor)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("watch channel still open %v after cancel", waitFor)
		}
	}
}

func testRoles(t *testing.T, r registry.Registrar, w registry.Watcher) {
	roleA, roleB := uniqueRole(t, "a"), uniqueRole(t, "b")
	register(t, r, node(roleA, "same-id", 1))
	register(t, r, node(roleB, "same-id", 2)) // one id in two roles is no duplicate
	register(t, r, node(roleA, "only-a", 3))
	chB := watch(t, w, roleB)
	next(t, chB)

	tests := []struct {
		role  string
		ids   string
		conns int64
	}{
		{roleA, "[only-a same-id]", 1},
		{roleB, "[same-id]", 2},
	}
	for _, tt := range tests {
		got := nodes(t, w, tt.role)
		if fmt.Sprint(ids(got)) != tt.ids {
			t.Errorf("Nodes(%s) = %v, want %s", tt.role, ids(got), tt.ids)
		}
		if n, _ := find(got, "same-id"); n.Conns != tt.conns || n.Role != tt.role {
			t.Errorf("Nodes(%s) same-id = %+v, want conns %d", tt.role, n, tt.conns)
		}
	}
	if err := r.Deregister(t.Context(), roleA, "same-id"); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	if got := ids(nodes(t, w, roleB)); fmt.Sprint(got) != "[same-id]" {
		t.Errorf("Deregister in %s changed %s: %v", roleA, roleB, got)
	}
	// A change in role B is seen by B's watch; A's changes never carry B's nodes.
	if err := r.Update(t.Context(), node(roleB, "same-id", 7)); err != nil {
		t.Fatalf("Update: %v", err)
	}
	list := until(t, chB, "the update in its role", func(l []registry.Node) bool {
		return len(l) == 1 && l[0].Conns == 7
	})
	if list[0].Role != roleB {
		t.Errorf("watch of %s got a node of role %s", roleB, list[0].Role)
	}
}

// testInvalid: a node without an id or a role, and a role with a slash,
// are refused with ErrInvalid by every call, and nothing is registered.
func testInvalid(t *testing.T, r registry.Registrar, w registry.Watcher) {
	role := uniqueRole(t, "invalid")
	tests := []struct {
		name     string
		role, id string
	}{
		{"no id", role, ""},
		{"no role", "", "n1"},
		{"role with a slash", role + "/x", "n1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := node(tt.role, tt.id, 1)
			if err := r.Register(t.Context(), n); !errors.Is(err, registry.ErrInvalid) {
				t.Errorf("Register: %v, want %v", err, registry.ErrInvalid)
			}
			if err := r.Update(t.Context(), n); !errors.Is(err, registry.ErrInvalid) {
				t.Errorf("Update: %v, want %v", err, registry.ErrInvalid)
			}
			if tt.id == "" {
				return
			}
			if _, err := w.Nodes(t.Context(), tt.role); !errors.Is(err, registry.ErrInvalid) {
				t.Errorf("Nodes: %v, want %v", err, registry.ErrInvalid)
			}
			if _, err := w.Watch(t.Context(), tt.role); !errors.Is(err, registry.ErrInvalid) {
				t.Errorf("Watch: %v, want %v", err, registry.ErrInvalid)
			}
		})
	}
	if got := nodes(t, w, role); len(got) != 0 {
		t.Errorf("nodes registered after invalid calls: %+v", got)
	}
}
