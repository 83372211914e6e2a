package logthin

import (
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	g := Gate{Every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	for _, step := range []struct {
		at      time.Duration
		ok      bool
		skipped int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2},
		{11 * time.Second, false, 0},
		{time.Minute, true, 1},
		{time.Minute + 10*time.Second, true, 0},
	} {
		ok, skipped := g.Pass(t0.Add(step.at))
		if ok != step.ok || skipped != step.skipped {
			t.Errorf("at %v: %v %d, want %v %d", step.at, ok, skipped, step.ok, step.skipped)
		}
	}
}
