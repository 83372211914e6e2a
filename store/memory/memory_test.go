package memory

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud/store"
	"github.com/imcloud/imcloud/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Sessions, store.Online) {
		s := New(time.Hour)
		return s, s
	})
}

// fakeClock is a manually advanced clock for NewWithClock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newFake(ttl time.Duration) (*Store, *fakeClock) {
	c := newFakeClock()
	return NewWithClock(ttl, c.Now), c
}

// size returns how many entries the store holds, expired or not.
func (s *Store) size() (keys, mids, online int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, byKey := range s.mids {
		mids += len(byKey)
	}
	return len(s.keys), mids, len(s.online)
}

func TestBindingExpiry(t *testing.T) {
	const ttl = 10 * time.Second
	sess := store.Session{Mid: 1, Key: "k", Node: "a"}
	tests := []struct {
		name    string
		steps   func(t *testing.T, s *Store, c *fakeClock)
		present bool
	}{
		{"fresh", func(*testing.T, *Store, *fakeClock) {}, true},
		{"just before ttl", func(_ *testing.T, _ *Store, c *fakeClock) { c.Advance(ttl - time.Nanosecond) }, true},
		{"at ttl", func(_ *testing.T, _ *Store, c *fakeClock) { c.Advance(ttl) }, false},
		{"refreshed", func(t *testing.T, s *Store, c *fakeClock) {
			c.Advance(ttl - time.Second)
			if err := s.Refresh(t.Context(), sess); err != nil {
				t.Fatal(err)
			}
			c.Advance(ttl - time.Second)
		}, true},
		{"refreshed after expiry re-binds", func(t *testing.T, s *Store, c *fakeClock) {
			c.Advance(2 * ttl)
			if err := s.Refresh(t.Context(), sess); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"re-bound", func(t *testing.T, s *Store, c *fakeClock) {
			c.Advance(ttl - time.Second)
			if err := s.Bind(t.Context(), sess); err != nil {
				t.Fatal(err)
			}
			c.Advance(ttl - time.Second)
		}, true},
		{"refresh from another node takes over an expired key", func(t *testing.T, s *Store, c *fakeClock) {
			c.Advance(ttl)
			other := sess
			other.Node = "b"
			if err := s.Refresh(t.Context(), other); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := newFake(ttl)
			if err := s.Bind(t.Context(), sess); err != nil {
				t.Fatal(err)
			}
			tt.steps(t, s, c)
			byMid, _ := s.KeysByMids(t.Context(), []int64{sess.Mid})
			byKey, _ := s.NodesByKeys(t.Context(), []string{sess.Key})
			if got := len(byMid) == 1 && len(byKey) == 1; got != tt.present {
				t.Fatalf("bound = %v (mids %v, keys %v), want %v", got, byMid, byKey, tt.present)
			}
		})
	}
}

func TestLazyDeletionOnRead(t *testing.T) {
	s, c := newFake(time.Minute)
	ctx := t.Context()
	for i, key := range []string{"k1", "k2"} {
		if err := s.Bind(ctx, store.Session{Mid: int64(i), Key: key, Node: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(time.Minute)
	if got, _ := s.KeysByMids(ctx, []int64{0}); len(got) != 0 {
		t.Fatalf("KeysByMids returned expired %v", got)
	}
	if _, mids, _ := s.size(); mids != 1 {
		t.Errorf("after KeysByMids, %d mid entries left, want 1 (only the unread one)", mids)
	}
	if got, _ := s.NodesByKeys(ctx, []string{"k1", "k2"}); len(got) != 0 {
		t.Fatalf("NodesByKeys returned expired %v", got)
	}
	if keys, _, _ := s.size(); keys != 0 {
		t.Errorf("after NodesByKeys, %d keys left, want 0", keys)
	}
	if err := s.ReportOnline(ctx, store.NodeOnline{Node: "a"}, time.Second); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	if got, _ := s.AllOnline(ctx); len(got) != 0 {
		t.Fatalf("AllOnline returned expired %v", got)
	}
	if _, _, online := s.size(); online != 0 {
		t.Errorf("after AllOnline, %d reports left, want 0", online)
	}
}

func TestSweepOnWrite(t *testing.T) {
	s, c := newFake(time.Minute)
	ctx := t.Context()
	for i, key := range []string{"k1", "k2", "k3"} {
		if err := s.Bind(ctx, store.Session{Mid: int64(i), Key: key, Node: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ReportOnline(ctx, store.NodeOnline{Node: "a"}, time.Second); err != nil {
		t.Fatal(err)
	}
	c.Advance(30 * time.Second)
	if err := s.Bind(ctx, store.Session{Mid: 9, Key: "fresh", Node: "b"}); err != nil {
		t.Fatal(err)
	}
	// The report expired but the sweep interval (the ttl) has not passed.
	if _, _, online := s.size(); online != 1 {
		t.Fatalf("swept before the interval: %d reports left, want 1", online)
	}
	c.Advance(30 * time.Second)
	if err := s.Bind(ctx, store.Session{Mid: 9, Key: "fresh", Node: "b"}); err != nil {
		t.Fatal(err)
	}
	keys, mids, online := s.size()
	if keys != 1 || mids != 1 || online != 0 {
		t.Fatalf("after the sweep: %d keys, %d mid entries, %d reports; want 1, 1, 0", keys, mids, online)
	}
}

func TestUnbindExpired(t *testing.T) {
	s, c := newFake(time.Minute)
	sess := store.Session{Mid: 1, Key: "k", Node: "a"}
	if err := s.Bind(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	removed, err := s.Unbind(t.Context(), sess)
	if err != nil || removed {
		t.Fatalf("Unbind of an expired binding = %v, %v; want false, nil", removed, err)
	}
	if keys, mids, _ := s.size(); keys != 0 || mids != 0 {
		t.Fatalf("Unbind left %d keys and %d mid entries", keys, mids)
	}
}

func TestOnlineExpiry(t *testing.T) {
	s, c := newFake(time.Hour)
	ctx := t.Context()
	if err := s.ReportOnline(ctx, store.NodeOnline{Node: "short", Conns: 1}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.ReportOnline(ctx, store.NodeOnline{Node: "long", Conns: 2}, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		after time.Duration
		want  []string
	}{
		{0, []string{"long", "short"}},
		{5 * time.Second, []string{"long"}},
		{10 * time.Second, nil},
	}
	for _, tt := range tests {
		c.Advance(tt.after)
		got, err := s.AllOnline(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var nodes []string
		for _, r := range got {
			nodes = append(nodes, r.Node)
		}
		if !slices.Equal(nodes, tt.want) {
			t.Errorf("after +%v: AllOnline nodes %v, want %v", tt.after, nodes, tt.want)
		}
	}
}

func TestCopies(t *testing.T) {
	s := New(time.Hour)
	ctx := t.Context()
	rooms := map[string]int32{"live://1": 1}
	if err := s.ReportOnline(ctx, store.NodeOnline{Node: "a", Rooms: rooms}, time.Minute); err != nil {
		t.Fatal(err)
	}
	rooms["live://1"] = 100
	got, _ := s.AllOnline(ctx)
	got[0].Rooms["live://1"] = 200
	got, _ = s.AllOnline(ctx)
	if got[0].Rooms["live://1"] != 1 {
		t.Fatalf("stored report changed to %v", got[0].Rooms)
	}
}

func TestInvalid(t *testing.T) {
	s := New(0)
	if s.ttl != DefaultTTL {
		t.Errorf("New(0) ttl = %v, want %v", s.ttl, DefaultTTL)
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	ok := store.Session{Mid: 1, Key: "k", Node: "a"}
	tests := []struct {
		name string
		call func() error
		is   error // nil: any error
	}{
		{"bind without key", func() error { return s.Bind(t.Context(), store.Session{Mid: 1, Node: "a"}) }, nil},
		{"bind without node", func() error { return s.Bind(t.Context(), store.Session{Mid: 1, Key: "k"}) }, nil},
		{"refresh without node", func() error { return s.Refresh(t.Context(), store.Session{Mid: 1, Key: "k"}) }, nil},
		{"bind cancelled", func() error { return s.Bind(cancelled, ok) }, context.Canceled},
		{"refresh cancelled", func() error { return s.Refresh(cancelled, ok) }, context.Canceled},
		{"unbind cancelled", func() error { _, err := s.Unbind(cancelled, ok); return err }, context.Canceled},
		{"keys by mids cancelled", func() error { _, err := s.KeysByMids(cancelled, []int64{1}); return err }, context.Canceled},
		{"nodes by keys cancelled", func() error { _, err := s.NodesByKeys(cancelled, []string{"k"}); return err }, context.Canceled},
		{"report without node", func() error { return s.ReportOnline(t.Context(), store.NodeOnline{}, time.Second) }, nil},
		{"report without ttl", func() error { return s.ReportOnline(t.Context(), store.NodeOnline{Node: "a"}, 0) }, nil},
		{"report cancelled", func() error {
			return s.ReportOnline(cancelled, store.NodeOnline{Node: "a"}, time.Second)
		}, context.Canceled},
		{"all online cancelled", func() error { _, err := s.AllOnline(cancelled); return err }, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
		})
	}
	if keys, mids, online := s.size(); keys+mids+online != 0 {
		t.Fatalf("invalid calls stored %d keys, %d mid entries, %d reports", keys, mids, online)
	}
}
