package roles

import (
	"context"
	"errors"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud/roles/logic"
	"github.com/imcloud/imcloud/store"
	"github.com/imcloud/imcloud/store/memory"
)

// TestStoreOnlineSkipsDepartedNodes: the report of a node that left the
// registry is not counted, though it has not expired yet; before the
// registry is known, every report counts.
func TestStoreOnlineSkipsDepartedNodes(t *testing.T) {
	ctx := context.Background()
	st := memory.New(time.Minute)
	for _, r := range []store.NodeOnline{
		{Node: "a", Conns: 3, IPs: 2, Rooms: map[string]int32{"live://1": 2, "live://2": 1}},
		{Node: "b", Conns: 5, IPs: 5, Rooms: map[string]int32{"live://1": 5}},
		{Node: "dead", Conns: 7, IPs: 1, Rooms: map[string]int32{"live://1": 4, "live://3": 3}},
	} {
		if err := st.ReportOnline(ctx, r, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		live func(string) (bool, bool)
		want logic.Snapshot
	}{
		{"no registry view", nil, logic.Snapshot{Conns: 15, IPs: 8, Rooms: map[string]int32{"live://1": 11, "live://2": 1, "live://3": 3}}},
		{"registry not known yet", func(string) (bool, bool) { return false, false },
			logic.Snapshot{Conns: 15, IPs: 8, Rooms: map[string]int32{"live://1": 11, "live://2": 1, "live://3": 3}}},
		{"one node departed", func(n string) (bool, bool) { return n != "dead", true },
			logic.Snapshot{Conns: 8, IPs: 7, Rooms: map[string]int32{"live://1": 7, "live://2": 1}}},
		{"no node live", func(string) (bool, bool) { return false, true }, logic.Snapshot{Rooms: map[string]int32{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			so := &storeOnline{online: st, maxAge: time.Second, live: tt.live}
			got, err := so.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got.Conns != tt.want.Conns || got.IPs != tt.want.IPs || !maps.Equal(got.Rooms, tt.want.Rooms) {
				t.Fatalf("Snapshot = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// gatedOnline is a store.Online whose AllOnline waits for release, counts
// its calls and fails.
type gatedOnline struct {
	calls   atomic.Int32
	release chan struct{}
}

func (g *gatedOnline) ReportOnline(context.Context, store.NodeOnline, time.Duration) error {
	return nil
}

func (g *gatedOnline) AllOnline(ctx context.Context) ([]store.NodeOnline, error) {
	g.calls.Add(1)
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return nil, errors.New("store: i/o timeout")
}

// TestStoreOnlineSharesLookups: while the store hangs, concurrent callers
// share one lookup instead of queueing one behind another's timeout, a
// caller whose ctx ends stops waiting, and the failure is the answer for a
// moment without asking the store again.
func TestStoreOnlineSharesLookups(t *testing.T) {
	g := &gatedOnline{release: make(chan struct{})}
	so := &storeOnline{online: g, maxAge: time.Second}
	const callers = 10
	errs := make(chan error, callers)
	for range callers {
		go func() {
			_, err := so.Snapshot(context.Background())
			errs <- err
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	impatient := make(chan error, 1)
	go func() { _, err := so.Snapshot(ctx); impatient <- err }()
	deadline := time.Now().Add(10 * time.Second)
	for g.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-impatient; !errors.Is(err, context.Canceled) {
		t.Errorf("caller whose ctx ended: %v", err)
	}
	close(g.release)
	for range callers {
		if err := <-errs; err == nil {
			t.Error("a caller got no error from a failed lookup")
		}
	}
	if _, err := so.Snapshot(context.Background()); err == nil {
		t.Error("no error right after a failed lookup")
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("%d store calls for %d callers and a retry within the backoff, want 1", n, callers+2)
	}
}
