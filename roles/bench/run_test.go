package bench

import (
	"testing"
	"time"
)

// TestGraceOver: the grace period ends early only once the expected
// deliveries are in and none has arrived for graceQuiet.
func TestGraceOver(t *testing.T) {
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	over := graceOver(func() int64 { return 10 }, clock)
	steps := []struct {
		advance    time.Duration
		deliveries int64
		want       bool
	}{
		{0, 5, false},                       // short
		{time.Second, 5, false},             // quiet, but short
		{0, 11, false},                      // enough, still arriving
		{100 * time.Millisecond, 12, false}, // still arriving (a paced broadcast)
		{400 * time.Millisecond, 12, false}, // quiet for 400ms
		{200 * time.Millisecond, 12, true},  // quiet for 600ms
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		v := &view{}
		v.Deliveries = s.deliveries
		if got := over(v); got != s.want {
			t.Fatalf("step %d (%d deliveries): over = %v, want %v", i, s.deliveries, got, s.want)
		}
	}
}
