package logic

import (
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/internal/logthin"
)

// failLogEvery is how often one kind of failure of one route is logged
// while it keeps happening.
const failLogEvery = 10 * time.Second

// failLog thins out the "request failed" lines of an outage: then every
// request of a route fails alike, and a line per route and reason every
// failLogEvery, saying how many were not logged, tells as much as
// thousands; the metrics count each one. The first success of a route
// after failures is logged too, so the log shows when the outage ended.
type failLog struct {
	log     *zap.Logger
	failing atomic.Bool // some route failed since its last success

	mu     sync.Mutex
	gates  map[string]map[string]*logthin.Gate // by route, then reason
	failed map[string]int                      // by route: failures since its last success
}

func newFailLog(log *zap.Logger) *failLog {
	return &failLog{log: log, gates: map[string]map[string]*logthin.Gate{}, failed: map[string]int{}}
}

// failure records a failed request of route for reason and logs it with
// fields unless one like it was logged less than failLogEvery ago.
func (f *failLog) failure(now time.Time, route, reason string, fields []zap.Field) {
	f.mu.Lock()
	f.failed[route]++
	f.failing.Store(true)
	byReason := f.gates[route]
	if byReason == nil {
		byReason = map[string]*logthin.Gate{}
		f.gates[route] = byReason
	}
	g := byReason[reason]
	if g == nil {
		g = &logthin.Gate{Every: failLogEvery}
		byReason[reason] = g
	}
	f.mu.Unlock()
	g.Log(f.log, zap.WarnLevel, now, "request failed", fields...)
}

// success notes a request of route that succeeded; the first after
// failures is logged. Without failures it costs one atomic load.
func (f *failLog) success(route string) {
	if !f.failing.Load() {
		return
	}
	f.mu.Lock()
	n := f.failed[route]
	delete(f.failed, route)
	delete(f.gates, route)
	f.failing.Store(len(f.failed) > 0)
	f.mu.Unlock()
	if n > 0 {
		f.log.Info("requests succeed again", zap.String("route", route), zap.Int("failed_before", n))
	}
}
