package cloud

import (
	"testing"
	"time"
)

func TestDedupRemembersForAboutAWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	d := newDedup(time.Minute, func() time.Time { return now })
	steps := []struct {
		advance time.Duration
		id      string
		seen    bool
	}{
		{0, "a", false},
		{0, "a", true},
		{0, "", false}, // empty ids are never deduplicated
		{0, "", false},
		{20 * time.Second, "a", true},
		{15 * time.Second, "b", false}, // rotation: a moves to the previous generation
		{0, "a", true},
		{30 * time.Second, "c", false}, // second rotation: a is forgotten
		{0, "a", false},
		{0, "b", true},
		{5 * time.Minute, "b", false}, // idle for longer than a window: all forgotten
		{0, "c", false},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		if got := d.seen(s.id); got != s.seen {
			t.Fatalf("step %d: seen(%q) = %v, want %v", i, s.id, got, s.seen)
		}
	}
	var off *dedup = newDedup(0, time.Now)
	if off.seen("x") || off.seen("x") {
		t.Error("a zero window must disable deduplication")
	}
}
