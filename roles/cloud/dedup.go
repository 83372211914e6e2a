package cloud

import (
	"sync"
	"time"
)

// dedup remembers push ids for at least a window, so a push the job
// delivers twice (a redelivery after a job crash, a retry with the same id)
// reaches clients once. Two generations of maps rotate every window: an id
// is remembered for between one window and two, and memory stays bounded by
// the push rate, not by uptime. (Rotating every half window forgot some ids
// after half of it: a redelivery up to job.max_age late, equal to the
// default window, then came through twice.)
type dedup struct {
	life time.Duration // of a generation: the window
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
	return &dedup{life: window, now: now, cur: map[string]struct{}{}, prev: map[string]struct{}{}, rotated: now()}
}

// seen records id and reports whether it was already recorded. A nil dedup
// and an empty id never match.
func (d *dedup) seen(id string) bool {
	if d == nil || id == "" {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if now := d.now(); now.Sub(d.rotated) >= d.life {
		d.prev, d.cur = d.cur, make(map[string]struct{}, len(d.cur))
		if now.Sub(d.rotated) >= 2*d.life {
			clear(d.prev) // idle past two windows: all it holds is over a window old
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
