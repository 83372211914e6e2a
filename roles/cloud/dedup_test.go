package cloud

import (
	"testing"
	"time"
)

// TestDedupRemembersForAtLeastAWindow: an id is remembered for between one
// window and two, so any repeat within a window is dropped.
func TestDedupRemembersForAtLeastAWindow(t *testing.T) {
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
		{40 * time.Second, "a", true},
		{25 * time.Second, "b", false}, // rotation: a moves to the previous generation
		{0, "a", true},                 // 65 s after it was first seen: still remembered
		{50 * time.Second, "a", true},  // 115 s
		{10 * time.Second, "c", false}, // second rotation (125 s): a is forgotten
		{0, "a", false},
		{0, "b", true},
		{5 * time.Minute, "b", false}, // idle for longer than two windows: all forgotten
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
