package cloud

import (
	"sync"
	"time"
)

// dedup remembers push ids for about a window, so a push the job delivers
// twice (a redelivery after a job crash) reaches clients once. Two
// generations of maps rotate every half window: an id is remembered for
// between half a window and a whole one, and memory stays bounded by the
// push rate, not by uptime.
type dedup struct {
	half time.Duration
	now  func() time.Time

	mu      sync.Mutex
	cur     map[string]struct{}
	prev    map[string]struct{}
	rotated time.Time
}

func newDedup(window time.Duration, now func() time.Time) *dedup {
	if window <= 0 {
		return nil
	}
	return &dedup{half: window / 2, now: now, cur: map[string]struct{}{}, prev: map[string]struct{}{}, rotated: now()}
}

// seen records id and reports whether it was already recorded. A nil dedup
// and an empty id never match.
func (d *dedup) seen(id string) bool {
	if d == nil || id == "" {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if now := d.now(); now.Sub(d.rotated) >= d.half {
		d.prev, d.cur = d.cur, make(map[string]struct{}, len(d.cur))
		if now.Sub(d.rotated) >= 2*d.half {
			clear(d.prev) // idle for a whole window: everything is stale
		}
		d.rotated = now
	}
	if _, ok := d.cur[id]; ok {
		return true
	}
	if _, ok := d.prev[id]; ok {
		return true
	}
	d.cur[id] = struct{}{}
	return false
}

// forget drops id, so a push that was refused after seen recorded it is
// delivered when the job retries it.
func (d *dedup) forget(id string) {
	if d == nil || id == "" {
		return
	}
	d.mu.Lock()
	delete(d.cur, id)
	delete(d.prev, id)
	d.mu.Unlock()
}
