package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/imcloud/imcloud/registry"
	"github.com/imcloud/imcloud/registry/registrytest"
)

func TestContract(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) (registry.Registrar, registry.Watcher) {
		r := New()
		return r, r
	})
}

func TestUpdatedStamp(t *testing.T) {
	r := New()
	now := time.UnixMilli(1_700_000_000_000)
	r.now = func() time.Time { return now }
	ctx := t.Context()
	n := registry.Node{ID: "a", Role: registry.RoleCloud, Updated: 5}
	if err := r.Register(ctx, n); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	n.Conns = 3
	if err := r.Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	got, _ := r.Nodes(ctx, registry.RoleCloud)
	if len(got) != 1 || got[0].Updated != 1_700_000_001_000 || got[0].Conns != 3 {
		t.Fatalf("Nodes = %+v, want one node updated at 1700000001000 with 3 conns", got)
	}
}

func TestInvalid(t *testing.T) {
	r := New()
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name string
		call func() error
		is   error // nil: any error
	}{
		{"register without id", func() error { return r.Register(t.Context(), registry.Node{Role: "cloud"}) }, nil},
		{"register without role", func() error { return r.Register(t.Context(), registry.Node{ID: "a"}) }, nil},
		{"update without id", func() error { return r.Update(t.Context(), registry.Node{Role: "cloud"}) }, nil},
		{"register cancelled", func() error { return r.Register(cancelled, registry.Node{ID: "a", Role: "cloud"}) }, context.Canceled},
		{"update cancelled", func() error { return r.Update(cancelled, registry.Node{ID: "a", Role: "cloud"}) }, context.Canceled},
		{"deregister cancelled", func() error { return r.Deregister(cancelled, "cloud", "a") }, context.Canceled},
		{"nodes cancelled", func() error { _, err := r.Nodes(cancelled, "cloud"); return err }, context.Canceled},
		{"watch cancelled", func() error { _, err := r.Watch(cancelled, "cloud"); return err }, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
		})
	}
	if got, _ := r.Nodes(t.Context(), "cloud"); len(got) != 0 {
		t.Fatalf("invalid calls registered %v", got)
	}
}

// TestCopies checks that callers never share memory with the registry.
func TestCopies(t *testing.T) {
	r := New()
	ctx := t.Context()
	n := registry.Node{ID: "a", Role: "cloud", Addrs: []registry.Addr{{TCP: "x:1"}}}
	if err := r.Register(ctx, n); err != nil {
		t.Fatal(err)
	}
	n.Addrs[0].TCP = "changed by caller"
	ch, err := r.Watch(ctx, "cloud")
	if err != nil {
		t.Fatal(err)
	}
	fromWatch := <-ch
	fromWatch[0].Addrs[0].TCP = "changed by watcher"
	got, _ := r.Nodes(ctx, "cloud")
	got[0].Addrs[0].TCP = "changed by reader"
	got, _ = r.Nodes(ctx, "cloud")
	if got[0].Addrs[0].TCP != "x:1" {
		t.Fatalf("registry record changed to %q", got[0].Addrs[0].TCP)
	}
}

// TestReplaceLatest checks that an unread list is replaced, not queued.
func TestReplaceLatest(t *testing.T) {
	r := New()
	ctx := t.Context()
	ch, err := r.Watch(ctx, "cloud")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := r.Register(ctx, registry.Node{ID: fmt.Sprint(i), Role: "cloud"}); err != nil {
			t.Fatal(err)
		}
	}
	if len(ch) != 1 {
		t.Fatalf("%d lists buffered, want 1", len(ch))
	}
	if got := <-ch; len(got) != 5 {
		t.Fatalf("buffered list has %d nodes, want the latest with 5", len(got))
	}
	if err := r.Deregister(ctx, "cloud", "absent"); err != nil {
		t.Fatal(err)
	}
	if len(ch) != 0 {
		t.Fatal("a no-op Deregister notified watchers")
	}
}

// TestNoLeakedGoroutines relies on synctest: the bubble fails with a
// deadlock if anything a watch started is still blocked at the end, and a
// cancelled watch must leave nothing behind in the registry.
func TestNoLeakedGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New()
		ctx, cancel := context.WithCancel(t.Context())
		var chs []<-chan []registry.Node
		for _, role := range []string{"cloud", "cloud", "job"} {
			ch, err := r.Watch(ctx, role)
			if err != nil {
				t.Fatal(err)
			}
			chs = append(chs, ch)
		}
		if err := r.Register(t.Context(), registry.Node{ID: "a", Role: "cloud"}); err != nil {
			t.Fatal(err)
		}
		cancel()
		synctest.Wait()
		for i, ch := range chs {
			for range ch { // drain; must end because the channel is closed
			}
			if _, ok := <-ch; ok {
				t.Fatalf("watch %d still open", i)
			}
		}
		r.mu.Lock()
		left := len(r.watches)
		r.mu.Unlock()
		if left != 0 {
			t.Fatalf("%d roles still have watches after cancel", left)
		}
		// Changes after every watch ended must not block.
		if err := r.Update(t.Context(), registry.Node{ID: "a", Role: "cloud", Conns: 1}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestConcurrent hammers the registry for the race detector.
func TestConcurrent(t *testing.T) {
	r := New()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var watchers, writers sync.WaitGroup
	for w := range 4 {
		wctx, wcancel := context.WithCancel(ctx)
		ch, err := r.Watch(wctx, "cloud")
		if err != nil {
			t.Fatal(err)
		}
		watchers.Go(func() {
			defer wcancel()
			i := 0
			for range ch { // ends when the watch is cancelled
				if i++; i == 25+w {
					wcancel() // some watches end early, mid-stream
				}
			}
		})
	}
	for g := range 4 {
		writers.Go(func() {
			for i := range 200 {
				n := registry.Node{ID: fmt.Sprintf("%d-%d", g, i%5), Role: "cloud", Conns: int64(i)}
				if err := r.Register(ctx, n); err != nil && !errors.Is(err, registry.ErrDuplicateID) {
					t.Error(err)
				}
				if err := r.Update(ctx, n); err != nil && !errors.Is(err, registry.ErrNotRegistered) {
					t.Error(err)
				}
				if i%3 == 0 {
					_ = r.Deregister(ctx, "cloud", n.ID)
				}
			}
		})
	}
	writers.Wait()
	cancel()
	watchers.Wait()
}
