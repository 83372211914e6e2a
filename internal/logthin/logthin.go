package logthin

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
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

// Log logs msg with fields at lvl on l if the gate lets it through at now,
// adding not_logged_since_last when lines were held back before it.
func (g *Gate) Log(l *zap.Logger, lvl zapcore.Level, now time.Time, msg string, fields ...zap.Field) {
	ok, skipped := g.Pass(now)
	if !ok {
		return
	}
	if skipped > 0 {
		fields = append(fields, zap.Int("not_logged_since_last", skipped))
	}
	l.Log(lvl, msg, fields...)
}
