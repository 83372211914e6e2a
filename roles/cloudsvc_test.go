package roles

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

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
		return logs.FilterMessage("session store answers again; sessions rebind at their next heartbeat").Len()
	}
	ctx := context.Background()
	steps := []struct {
		name        string
		down        bool
		wantRebinds int
	}{
		{"first report", false, 0},
		{"steady", false, 0},
		{"store down", true, 0},
		{"still down", true, 0},
		{"back", false, 1},
		{"steady again", false, 1},
	}
	for _, s := range steps {
		online.down.Store(s.down)
		c.report(ctx)
		if got := rebinds(); got != s.wantRebinds {
			t.Fatalf("after %q: %d rebind announcements, want %d", s.name, got, s.wantRebinds)
		}
	}
}
