package logthin

import (
	"sync"
	"time"
)

// Gate lets a line through at most once per Every; the zero value with
// Every set is ready.
type Gate struct {
	Every time.Duration

	mu      sync.Mutex
	last    time.Time
	skipped int
}

// Pass reports whether a line may be logged at now and, if so, how many
// were held back since the last one that was.
func (g *Gate) Pass(now time.Time) (ok bool, skipped int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.last.IsZero() && now.Sub(g.last) < g.Every {
		g.skipped++
		return false, 0
	}
	skipped = g.skipped
	g.last, g.skipped = now, 0
	return true, skipped
}
