package etcd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imcloud/imcloud/registry"
	"github.com/imcloud/imcloud/registry/etcd/etcdtest"
	"github.com/imcloud/imcloud/registry/memory"
	"github.com/imcloud/imcloud/registry/registrytest"
)

// testTTL is the lease TTL of the backend-specific tests.
const testTTL = 2 * time.Second

// waitFor bounds every poll.
const waitFor = 15 * time.Second

// uniquePrefix returns a key prefix no other test or run uses.
func uniquePrefix(t testing.TB) string {
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return fmt.Sprintf("/imcloud-test/%s-%d-%d", name, time.Now().UnixNano(), rand.Uint32())
}

// newReg returns a Registry on srv, closed when the test ends.
func newReg(t testing.TB, srv *etcdtest.Server, prefix string, log *zap.Logger) *Registry {
	t.Helper()
	if log == nil {
		log = zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel))
	}
	r, err := New(Config{Endpoints: []string{srv.Endpoint}, Prefix: prefix, TTL: testTTL, DialTimeout: time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// observed returns a logger recording Info and above, also written to t.
func observed(t testing.TB) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	tl := zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel))
	return zap.New(zapcore.NewTee(core, tl.Core())), logs
}

// rawClient returns a plain etcd client, closed when the test ends.
func rawClient(t testing.TB, srv *etcdtest.Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func node(id string, conns int64) registry.Node {
	return registry.Node{ID: id, Role: registry.RoleCloud, GRPCAddr: "127.0.0.1:3109", Weight: 1, Conns: conns}
}

// poll calls cond until it returns true, failing after waitFor.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitFor)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pollNodes polls w's Nodes until they read want.
func pollNodes(t testing.TB, w registry.Watcher, want string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		got := nodesNow(w)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Nodes = %s after %v, want %s", got, waitFor, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nodesNow returns the ids and conns of the role's nodes, or an error string.
func nodesNow(w registry.Watcher) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	list, err := w.Nodes(ctx, registry.RoleCloud)
	if err != nil {
		return "error: " + err.Error()
	}
	return listString(list)
}

func listString(list []registry.Node) string {
	parts := make([]string, len(list))
	for i, n := range list {
		parts[i] = fmt.Sprintf("%s:%d", n.ID, n.Conns)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// keyLease returns the lease the key is under, 0 if the key is absent.
func keyLease(t testing.TB, cli *clientv3.Client, key string) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

func countLogs(logs *observer.ObservedLogs, msg string) int {
	return logs.FilterMessage(msg).Len()
}

func TestContract(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	registrytest.Run(t, func(t *testing.T) (registry.Registrar, registry.Watcher) {
		r := newReg(t, srv, uniquePrefix(t), nil)
		return r, r
	})
}

// TestContractSeparate runs the suite with registrar and watcher on two
// clients, as a cloud node and a job process are.
func TestContractSeparate(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	registrytest.Run(t, func(t *testing.T) (registry.Registrar, registry.Watcher) {
		prefix := uniquePrefix(t)
		return newReg(t, srv, prefix, nil), newReg(t, srv, prefix, nil)
	})
}

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string // error substring; "" for success
	}{
		{"no endpoints", Config{}, "no endpoints"},
		{"blank endpoints", Config{Endpoints: []string{" ", ""}}, "no endpoints"},
		{"ttl too short", Config{Endpoints: []string{"127.0.0.1:1"}, TTL: 500 * time.Millisecond}, "ttl"},
		{"negative dial timeout", Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: -time.Second}, "dial timeout"},
		{"defaults", Config{Endpoints: []string{"127.0.0.1:1"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.cfg, nil)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("New: %v, want an error with %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.prefix != DefaultPrefix || r.ttl != DefaultTTL {
				t.Errorf("prefix %q ttl %v, want %q %v", r.prefix, r.ttl, DefaultPrefix, DefaultTTL)
			}
			if got := r.nodeKey("cloud", "n1"); got != "/imcloud/nodes/cloud/n1" {
				t.Errorf("key = %q", got)
			}
		})
	}
	r, err := New(Config{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/x/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := r.nodeKey("cloud", "n1"); got != "/x/nodes/cloud/n1" {
		t.Errorf("key with prefix /x/ = %q", got)
	}
}

// TestUnreachable checks that calls fail, not hang, without etcd.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	r, err := New(Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.reqTimeout = 500 * time.Millisecond
	ctx := t.Context()
	if err := r.Register(ctx, node("n1", 1)); err == nil {
		t.Error("Register without etcd succeeded")
	}
	if _, err := r.Nodes(ctx, registry.RoleCloud); err == nil {
		t.Error("Nodes without etcd succeeded")
	}
	if _, err := r.Watch(ctx, registry.RoleCloud); err == nil {
		t.Error("Watch without etcd succeeded")
	}
	if err := r.Update(ctx, node("n1", 1)); !errors.Is(err, registry.ErrNotRegistered) {
		t.Errorf("Update: %v, want ErrNotRegistered", err)
	}
}

func TestInvalidAndClosed(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	r := newReg(t, srv, uniquePrefix(t), nil)
	ctx := t.Context()
	for _, n := range []registry.Node{{Role: "cloud"}, {ID: "a"}, {ID: "a", Role: "clo/ud"}} {
		if err := r.Register(ctx, n); err == nil {
			t.Errorf("Register(%+v) succeeded", n)
		}
	}
	if _, err := r.Watch(ctx, "a/b"); err == nil {
		t.Error("Watch of a role with a slash succeeded")
	}
	if err := r.Register(ctx, node("n1", 1)); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := r.Watch(wctx, registry.RoleCloud)
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select { // Close ends the watch although its ctx is live
	case _, ok := <-ch:
		if ok {
			t.Fatal("watch sent a list after Close")
		}
	case <-time.After(waitFor):
		t.Fatal("watch channel open after Close")
	}
	if err := r.Register(ctx, node("n2", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Register after Close: %v, want ErrClosed", err)
	}
	if _, err := r.Nodes(ctx, registry.RoleCloud); !errors.Is(err, ErrClosed) {
		t.Errorf("Nodes after Close: %v, want ErrClosed", err)
	}
	if err := r.Deregister(ctx, registry.RoleCloud, "n1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Deregister after Close: %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCrashedHolderExpires: a registry that goes away without deregistering
// (Close stops the keepalive, like a crash) disappears within the TTL.
func TestCrashedHolderExpires(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	prefix := uniquePrefix(t)
	holder, watcher := newReg(t, srv, prefix, nil), newReg(t, srv, prefix, nil)
	if err := holder.Register(t.Context(), node("n1", 1)); err != nil {
		t.Fatal(err)
	}
	ch := watchFirst(t, t.Context(), watcher, "[n1:1]")
	// The keepalive keeps it past the TTL.
	time.Sleep(testTTL + time.Second)
	if got := nodesNow(watcher); got != "[n1:1]" {
		t.Fatalf("after a TTL with keepalive, Nodes = %s", got)
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case list := <-ch:
		if len(list) != 0 {
			t.Fatalf("list after crash = %s, want empty", listString(list))
		}
	case <-time.After(waitFor):
		t.Fatalf("crashed node still listed after %v", waitFor)
	}
	// etcd checks expiry with some slack; the lease may have up to a TTL left.
	if d := time.Since(start); d > 2*testTTL+2*time.Second {
		t.Errorf("crashed node disappeared after %v, want about the TTL %v", d, testTTL)
	}
	if got := nodesNow(watcher); got != "[]" {
		t.Errorf("Nodes = %s, want []", got)
	}
}

// TestDuplicateAcrossRegistries: a second process cannot take a live id;
// RegisterWait gets it once the first one's lease expires.
func TestDuplicateAcrossRegistries(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	prefix := uniquePrefix(t)
	first := newReg(t, srv, prefix, nil)
	log, logs := observed(t)
	second := newReg(t, srv, prefix, log)
	if err := first.Register(t.Context(), node("n1", 1)); err != nil {
		t.Fatal(err)
	}
	err := second.Register(t.Context(), node("n1", 2))
	if !errors.Is(err, registry.ErrDuplicateID) {
		t.Fatalf("Register in a second registry: %v, want ErrDuplicateID", err)
	}
	if err := second.Update(t.Context(), node("n1", 2)); !errors.Is(err, registry.ErrNotRegistered) {
		t.Errorf("Update in the second registry: %v, want ErrNotRegistered", err)
	}
	if err := second.Deregister(t.Context(), registry.RoleCloud, "n1"); err != nil {
		t.Errorf("Deregister of a node held elsewhere: %v", err)
	}
	if got := nodesNow(second); got != "[n1:1]" {
		t.Fatalf("Nodes = %s, want the first record untouched", got)
	}

	// RegisterWait gives up on a live twin after heldFor, and when ctx ends
	// first with both causes.
	if err := registry.RegisterWait(t.Context(), second, node("n1", 2), 1500*time.Millisecond, log); !errors.Is(err, registry.ErrDuplicateID) {
		t.Fatalf("RegisterWait while held: %v, want ErrDuplicateID", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	err = registry.RegisterWait(ctx, second, node("n1", 2), time.Minute, log)
	cancel()
	if !errors.Is(err, registry.ErrDuplicateID) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RegisterWait while held: %v, want ErrDuplicateID and DeadlineExceeded", err)
	}

	// The first process "crashes" (its lease is no longer kept alive).
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	before := countLogs(logs, "node id still held, waiting for the old lease to expire")
	ctx, cancel = context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	start := time.Now()
	if err := registry.RegisterWait(ctx, second, node("n1", 2), waitFor, log); err != nil {
		t.Fatalf("RegisterWait: %v", err)
	}
	t.Logf("RegisterWait took %v", time.Since(start))
	if got := nodesNow(second); got != "[n1:2]" {
		t.Fatalf("Nodes = %s, want the second record", got)
	}
	if countLogs(logs, "node id still held, waiting for the old lease to expire") <= before {
		t.Error("RegisterWait did not log that the id was still held")
	}
}

// TestRegisterWaitMemory covers RegisterWait's loop without etcd.
func TestRegisterWaitMemory(t *testing.T) {
	t.Parallel()
	r := memory.New()
	log, logs := observed(t)
	n := node("n1", 1)
	if err := r.Register(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(1500*time.Millisecond, func() { _ = r.Deregister(context.Background(), n.Role, n.ID) })
	n.Conns = 2
	if err := registry.RegisterWait(t.Context(), r, n, time.Minute, log); err != nil {
		t.Fatal(err)
	}
	if got := nodesNow(r); got != "[n1:2]" {
		t.Errorf("Nodes = %s", got)
	}
	held := logs.FilterMessage("node id still held, waiting for the old lease to expire").All()
	if len(held) < 2 {
		t.Fatalf("%d 'still held' logs, want one per attempt (2 or more)", len(held))
	}
	if f := held[0].ContextMap(); f["id"] != "n1" || f["role"] != "cloud" || f["attempt"] != int64(1) {
		t.Errorf("log fields = %v", f)
	}
	// Other errors are returned at once, without a retry.
	counted := &countingRegistrar{Registrar: r}
	if err := registry.RegisterWait(t.Context(), counted, registry.Node{Role: "cloud"}, time.Minute, nil); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("RegisterWait of an invalid node: %v", err)
	}
	if counted.calls != 1 {
		t.Errorf("RegisterWait of an invalid node called Register %d times, want 1", counted.calls)
	}
}

// countingRegistrar counts Register calls (from one goroutine).
type countingRegistrar struct {
	registry.Registrar
	calls int
}

func (c *countingRegistrar) Register(ctx context.Context, n registry.Node) error {
	c.calls++
	return c.Registrar.Register(ctx, n)
}

// TestDeregisterImmediate: the key is gone when Deregister returns, and the
// id can be taken again at once, here or elsewhere.
func TestDeregisterImmediate(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	prefix := uniquePrefix(t)
	r, other := newReg(t, srv, prefix, nil), newReg(t, srv, prefix, nil)
	cli := rawClient(t, srv)
	ctx := t.Context()
	if err := r.Register(ctx, node("n1", 1)); err != nil {
		t.Fatal(err)
	}
	lease := keyLease(t, cli, r.nodeKey(registry.RoleCloud, "n1"))
	if err := r.Deregister(ctx, registry.RoleCloud, "n1"); err != nil {
		t.Fatal(err)
	}
	if got := nodesNow(other); got != "[]" {
		t.Fatalf("Nodes right after Deregister = %s, want []", got)
	}
	ttl, err := cli.TimeToLive(ctx, lease)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL != -1 {
		t.Errorf("lease TTL after Deregister = %d, want -1 (revoked)", ttl.TTL)
	}
	if err := r.Update(ctx, node("n1", 2)); !errors.Is(err, registry.ErrNotRegistered) {
		t.Errorf("Update after Deregister: %v, want ErrNotRegistered", err)
	}
	if err := other.Register(ctx, node("n1", 3)); err != nil {
		t.Fatalf("Register elsewhere right after Deregister: %v", err)
	}
	if err := other.Deregister(ctx, registry.RoleCloud, "n1"); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(ctx, node("n1", 4)); err != nil {
		t.Fatalf("Register again here: %v", err)
	}
	if got := nodesNow(other); got != "[n1:4]" {
		t.Fatalf("Nodes = %s, want [n1:4]", got)
	}
}

// TestLeaseRevokedReregisters: a lease lost while etcd runs (revoked from
// outside) is replaced by a new one, with the latest record.
func TestLeaseRevokedReregisters(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	log, logs := observed(t)
	r := newReg(t, srv, uniquePrefix(t), log)
	cli := rawClient(t, srv)
	ctx := t.Context()
	key := r.nodeKey(registry.RoleCloud, "n1")
	if err := r.Register(ctx, node("n1", 1)); err != nil {
		t.Fatal(err)
	}
	old := keyLease(t, cli, key)
	if _, err := cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	// Whether the keeper has noticed yet or not, the update is not lost.
	if err := r.Update(ctx, node("n1", 5)); err != nil && !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Update after the lease was revoked: %v, want nil or ErrLeaseLost", err)
	}
	poll(t, "re-registration with the updated record", func() bool {
		l := keyLease(t, cli, key)
		return l != 0 && l != old && nodesNow(r) == "[n1:5]"
	})
	if countLogs(logs, "registry/etcd: lease lost, re-registering") == 0 ||
		countLogs(logs, "registry/etcd: node re-registered") == 0 {
		t.Error("lease loss and re-registration not logged")
	}
	// The new lease is kept alive, and updates work again.
	time.Sleep(testTTL + time.Second)
	if err := r.Update(ctx, node("n1", 6)); err != nil {
		t.Fatalf("Update after re-registration: %v", err)
	}
	if got := nodesNow(r); got != "[n1:6]" {
		t.Fatalf("Nodes = %s, want [n1:6]", got)
	}
}

// TestTakenByOtherNotOverwritten: when the id is taken by another lease
// while ours is lost, the keeper logs errors and waits; it takes the id back
// only once the other holder is gone.
func TestTakenByOtherNotOverwritten(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	log, logs := observed(t)
	r := newReg(t, srv, uniquePrefix(t), log)
	cli := rawClient(t, srv)
	ctx := t.Context()
	key := r.nodeKey(registry.RoleCloud, "n1")
	if err := r.Register(ctx, node("n1", 1)); err != nil {
		t.Fatal(err)
	}
	ours := keyLease(t, cli, key)
	// Someone else writes the key under their lease, then ours is revoked.
	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, key, `{"id":"n1","role":"cloud","conns":99}`, clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	if err := r.Update(ctx, node("n1", 2)); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Update of a key under another lease: %v, want ErrLeaseLost", err)
	}
	if _, err := cli.Revoke(ctx, ours); err != nil {
		t.Fatal(err)
	}
	const held = "registry/etcd: node id taken by another lease, not overwriting; retrying"
	poll(t, "an error log about the id being held", func() bool { return countLogs(logs, held) >= 2 })
	e := logs.FilterMessage(held).All()[0]
	if e.Level != zapcore.ErrorLevel || e.ContextMap()["holder_lease"] != leaseHex(g.ID) {
		t.Errorf("log %v %v, want an error naming holder lease %s", e.Level, e.ContextMap(), leaseHex(g.ID))
	}
	if got := nodesNow(r); got != "[n1:99]" {
		t.Fatalf("Nodes = %s, want the other holder's record", got)
	}
	// The other holder goes: the keeper takes the id back with our record.
	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	pollNodes(t, r, "[n1:2]")
	if l := keyLease(t, cli, key); l == g.ID || l == ours || l == 0 {
		t.Errorf("key under lease %x, want a new lease of ours", l)
	}
}

// TestEtcdRestart: across an etcd outage longer than the TTL, Nodes fails,
// a running watch keeps its last list, and afterwards the registration is
// back by itself (with the record of an Update that failed meanwhile) and
// the watch sees later changes.
func TestEtcdRestart(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	prefix := uniquePrefix(t)
	log, logs := observed(t)
	cloud := newReg(t, srv, prefix, log)
	job := newReg(t, srv, prefix, log)
	ctx := t.Context()
	if err := cloud.Register(ctx, node("n1", 1)); err != nil {
		t.Fatal(err)
	}
	ch := watchFirst(t, ctx, job, "[n1:1]")

	srv.Stop()
	down := time.Now()
	short, cancel := context.WithTimeout(ctx, time.Second)
	if _, err := job.Nodes(short, registry.RoleCloud); err == nil {
		t.Error("Nodes succeeded while etcd is down")
	}
	cancel()
	short, cancel = context.WithTimeout(ctx, time.Second)
	if err := cloud.Update(short, node("n1", 7)); err == nil {
		t.Error("Update succeeded while etcd is down")
	}
	cancel()
	// Longer than the TTL: the client gives the lease up.
	for time.Since(down) < 2*testTTL+time.Second {
		select {
		case list := <-ch:
			t.Errorf("watch sent %s while etcd was down, want the last list kept", listString(list))
		case <-time.After(100 * time.Millisecond):
		}
	}
	srv.Start()

	pollNodes(t, job, "[n1:7]")
	if countLogs(logs, "registry/etcd: node re-registered") == 0 {
		t.Error("re-registration not logged")
	}
	// A change made after the restart reaches the watch started before it.
	if err := cloud.Register(ctx, node("n2", 2)); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(waitFor)
	for done := false; !done; {
		select {
		case list, ok := <-ch:
			if !ok {
				t.Fatal("watch closed")
			}
			if len(list) == 0 {
				t.Fatal("watch sent an empty list")
			}
			done = listString(list) == "[n1:7 n2:2]"
		case <-deadline:
			t.Fatalf("watch did not see n2 within %v", waitFor)
		}
	}
	// The registration stays: its new lease is kept alive.
	time.Sleep(testTTL + time.Second)
	if got := nodesNow(job); got != "[n1:7 n2:2]" {
		t.Fatalf("Nodes = %s after another TTL", got)
	}
}

// TestShortRestart: an outage shorter than the TTL keeps the lease.
func TestShortRestart(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	r := newReg(t, srv, uniquePrefix(t), nil)
	cli := rawClient(t, srv)
	ctx := t.Context()
	key := r.nodeKey(registry.RoleCloud, "n1")
	if err := r.Register(ctx, node("n1", 1)); err != nil {
		t.Fatal(err)
	}
	lease := keyLease(t, cli, key)
	srv.Stop()
	srv.Start()
	time.Sleep(testTTL + time.Second)
	if got := keyLease(t, cli, key); got == 0 {
		t.Fatal("key gone after a short restart")
	} else if got != lease {
		t.Logf("key moved from lease %x to %x (restart took longer than the TTL)", lease, got)
	}
	if err := r.Update(ctx, node("n1", 2)); err != nil {
		t.Fatalf("Update after a short restart: %v", err)
	}
}

// TestWatchCompacted: a watch resuming from a compacted revision reloads and
// sends the current list.
func TestWatchCompacted(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	log, logs := observed(t)
	r := newReg(t, srv, uniquePrefix(t), log)
	ctx := t.Context()
	if err := r.Register(ctx, node("n1", 0)); err != nil {
		t.Fatal(err)
	}
	m, rev, err := r.load(ctx, registry.RoleCloud)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if err := r.Update(ctx, node("n1", int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	cli := rawClient(t, srv)
	cur, err := cli.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, cur.Header.Revision); err != nil {
		t.Fatal(err)
	}
	ch, err := r.follow(ctx, registry.RoleCloud, m, rev) // stale state, compacted revision
	if err != nil {
		t.Fatal(err)
	}
	if got := listString(<-ch); got != "[n1:0]" {
		t.Fatalf("first list %s, want the stale state", got)
	}
	select {
	case list := <-ch:
		if got := listString(list); got != "[n1:5]" {
			t.Fatalf("list after compaction = %s, want [n1:5]", got)
		}
	case <-time.After(waitFor):
		t.Fatal("no list after compaction")
	}
	if countLogs(logs, "registry/etcd: watch interrupted, reloading") == 0 {
		t.Error("compaction did not interrupt the watch")
	}
	// And it keeps following.
	if err := r.Update(ctx, node("n1", 6)); err != nil {
		t.Fatal(err)
	}
	select {
	case list := <-ch:
		if got := listString(list); got != "[n1:6]" {
			t.Fatalf("list = %s, want [n1:6]", got)
		}
	case <-time.After(waitFor):
		t.Fatal("no list after the reload")
	}
}

// TestBadRecordSkipped: a value that is not a node is skipped, not fatal.
func TestBadRecordSkipped(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	r := newReg(t, srv, uniquePrefix(t), zap.NewNop())
	cli := rawClient(t, srv)
	ctx := t.Context()
	if err := r.Register(ctx, node("n1", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, r.nodeKey(registry.RoleCloud, "junk"), "not json"); err != nil {
		t.Fatal(err)
	}
	ch := watchFirst(t, ctx, r, "[n1:1]")
	if _, err := cli.Put(ctx, r.nodeKey(registry.RoleCloud, "junk2"), "{"); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(ctx, node("n2", 2)); err != nil {
		t.Fatal(err)
	}
	poll(t, "n2 in the watch", func() bool {
		select {
		case list := <-ch:
			return listString(list) == "[n1:1 n2:2]"
		default:
			return false
		}
	})
	if got := nodesNow(r); got != "[n1:1 n2:2]" {
		t.Fatalf("Nodes = %s", got)
	}
}

// TestNoLeakedGoroutines runs alone (not parallel): after Close no goroutine
// of this package or of the etcd client is left.
func TestNoLeakedGoroutines(t *testing.T) {
	srv := etcdtest.Start(t)
	r := newReg(t, srv, uniquePrefix(t), nil)
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if err := r.Register(ctx, node(id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	var chs []<-chan []registry.Node
	wctx, cancel := context.WithCancel(ctx)
	for range 3 {
		ch, err := r.Watch(wctx, registry.RoleCloud)
		if err != nil {
			t.Fatal(err)
		}
		chs = append(chs, ch)
	}
	early, cancelEarly := context.WithCancel(ctx)
	ech, err := r.Watch(early, registry.RoleCloud)
	if err != nil {
		t.Fatal(err)
	}
	cancelEarly()
	for range ech { // closed after its ctx ends
	}
	if err := r.Deregister(ctx, registry.RoleCloud, "a"); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range chs {
		for range ch { // closed by Close
		}
	}
	cancel()
	poll(t, "no goroutines left", func() bool { return leaked() == "" })
}

// leaked returns the stacks of goroutines in this package or the etcd
// client.
func leaked() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "registry/etcd.(*Registry)") || strings.Contains(g, "go.etcd.io/etcd/client/v3.") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// TestConcurrent hammers one registry from several goroutines for the race
// detector; the final state must match what is left registered.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	r := newReg(t, srv, uniquePrefix(t), nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var watchers, writers sync.WaitGroup
	for range 3 {
		ch, err := r.Watch(ctx, registry.RoleCloud)
		if err != nil {
			t.Fatal(err)
		}
		watchers.Go(func() {
			for range ch { // ends with ctx
			}
		})
	}
	for g := range 4 {
		writers.Go(func() {
			for i := range 30 {
				n := node(fmt.Sprintf("%d-%d", g, i%3), int64(i))
				if err := r.Register(ctx, n); err != nil && !errors.Is(err, registry.ErrDuplicateID) {
					t.Error(err)
				}
				if err := r.Update(ctx, n); err != nil && !errors.Is(err, registry.ErrNotRegistered) {
					t.Error(err)
				}
				if i%4 == 0 {
					if err := r.Deregister(ctx, n.Role, n.ID); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	writers.Wait()
	list, err := r.Nodes(ctx, registry.RoleCloud)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	held := len(r.regs)
	r.mu.Unlock()
	if len(list) != held {
		t.Errorf("etcd lists %d nodes, the registry holds %d", len(list), held)
	}
	cancel()
	watchers.Wait()
}

// TestWatchAfterHistoryReset: etcd restarted without its data (a new
// cluster, revisions from 1 again) is noticed by a watch, which reloads and
// follows the new history, instead of waiting, without a word, for the new
// cluster's revision to reach the old one.
func TestWatchAfterHistoryReset(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	log, logs := observed(t)
	prefix := uniquePrefix(t)
	watcher := newReg(t, srv, prefix, log)
	watcher.historyEvery = 100 * time.Millisecond
	nodes := newReg(t, srv, prefix, nil)
	ctx := t.Context()
	if err := nodes.Register(ctx, node("n1", 0)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 30; i++ { // the old history runs well ahead of the new
		if err := nodes.Update(ctx, node("n1", int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	ch := watchFirst(t, ctx, watcher, "[n1:30]")
	srv.Stop()
	srv.Wipe()
	srv.Start()
	// n1's keeper registers it again in the new cluster; n2 is new there.
	deadline := time.Now().Add(waitFor)
	for nodes.Register(ctx, node("n2", 0)) != nil {
		if time.Now().After(deadline) {
			t.Fatal("n2 not registered in the new cluster")
		}
		time.Sleep(50 * time.Millisecond)
	}
	timeout := time.After(waitFor)
	for {
		select {
		case list := <-ch:
			if got := listString(list); strings.Contains(got, "n2:") && strings.Contains(got, "n1:") {
				if countLogs(logs, "registry/etcd: watch interrupted, reloading") == 0 {
					t.Error("the reset was not logged")
				}
				return
			}
		case <-timeout:
			t.Fatal("the watch did not follow the new cluster")
		}
	}
}

// TestWatchKeepsNodesAcrossHistoryReset: after etcd comes back without its
// data, the live nodes need a moment to notice and register again. A watch
// that notices first must not send a list without them meanwhile (job and
// logic would drop every push for that moment: "no cloud nodes"), while a
// node that does not come back leaves once the grace is over.
func TestWatchKeepsNodesAcrossHistoryReset(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	log, logs := observed(t)
	prefix := uniquePrefix(t)
	watcher := newReg(t, srv, prefix, log)
	watcher.historyEvery = 100 * time.Millisecond
	watcher.resetGrace = 3 * time.Second
	live := newReg(t, srv, prefix, nil)
	// Notices the reset late: by its keepalive, or a history check in an hour.
	live.historyEvery = time.Hour
	gone, err := New(Config{Endpoints: []string{srv.Endpoint}, Prefix: prefix, TTL: testTTL, DialTimeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := live.Register(ctx, node("n1", 1)); err != nil {
		t.Fatal(err)
	}
	if err := gone.Register(ctx, node("n3", 3)); err != nil {
		t.Fatal(err)
	}
	ch := watchFirst(t, ctx, watcher, "[n1:1 n3:3]")
	srv.Stop()
	_ = gone.Close() // n3's process dies while etcd is down: it never registers again
	srv.Wipe()
	back := time.Now() // the watch may notice the new cluster before Start returns
	srv.Start()

	var lists []string
	timeout := time.After(waitFor)
	for {
		select {
		case list := <-ch:
			got := listString(list)
			lists = append(lists, got)
			if !strings.Contains(got, "n1:") {
				t.Fatalf("the watch sent %s %v after etcd came back empty, while n1 was registering again (lists %v)",
					got, time.Since(back).Round(time.Millisecond), lists)
			}
			if strings.Contains(got, "n3:") {
				continue
			}
			if d := time.Since(back); d < watcher.resetGrace-500*time.Millisecond {
				t.Fatalf("n3 dropped %v after etcd came back, before the %v grace", d, watcher.resetGrace)
			}
			if countLogs(logs, "registry/etcd: watch interrupted, reloading") == 0 {
				t.Error("the reset was not logged")
			}
			return
		case <-timeout:
			t.Fatalf("n3 still listed %v after etcd came back (lists %v)", waitFor, lists)
		}
	}
}

// TestWatchLogsEtcdOutage: a watch says once that etcd does not answer and
// once that it answers again (job and logic logged nothing about an etcd
// outage: their watches just waited).
func TestWatchLogsEtcdOutage(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	log, logs := observed(t)
	watcher := newReg(t, srv, uniquePrefix(t), log)
	watcher.historyEvery = 100 * time.Millisecond
	ch, err := watcher.Watch(t.Context(), registry.RoleCloud)
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	const down, back = "registry/etcd: etcd does not answer; the watch keeps the last node list", "registry/etcd: etcd answers again"
	time.Sleep(300 * time.Millisecond)
	if n := countLogs(logs, down) + countLogs(logs, back); n != 0 {
		t.Fatalf("%d outage logs while etcd runs", n)
	}
	srv.Stop()
	poll(t, "the outage logged", func() bool { return countLogs(logs, down) > 0 })
	time.Sleep(1500 * time.Millisecond) // further failed checks
	srv.Start()
	poll(t, "the recovery logged", func() bool { return countLogs(logs, back) > 0 })
	if d, b := countLogs(logs, down), countLogs(logs, back); d != 1 || b != 1 {
		t.Errorf("logged %d times that etcd does not answer and %d that it answers again, want once each", d, b)
	}
}

// watchFirst watches the cloud role on r and requires the first list to
// be want (listString's form).
func watchFirst(t *testing.T, ctx context.Context, r *Registry, want string) <-chan []registry.Node {
	t.Helper()
	ch, err := r.Watch(ctx, registry.RoleCloud)
	if err != nil {
		t.Fatal(err)
	}
	if got := listString(<-ch); got != want {
		t.Fatalf("first list %s, want %s", got, want)
	}
	return ch
}
