package logthin

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
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

// TestGateLog: the first line is logged, the next ones within Every only
// counted, and the next line says how many.
func TestGateLog(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	log := zap.New(core)
	g := Gate{Every: 10 * time.Second}
	now := time.Unix(1000, 0)
	for range 100 {
		g.Log(log, zapcore.WarnLevel, now, "push dropped: too old")
		now = now.Add(time.Millisecond)
	}
	g.Log(log, zapcore.ErrorLevel, now.Add(g.Every), "push dropped: too old")
	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("%d lines, want 2", len(all))
	}
	if _, ok := all[0].ContextMap()["not_logged_since_last"]; ok {
		t.Errorf("first line %v counts drops before it", all[0].ContextMap())
	}
	if n := all[1].ContextMap()["not_logged_since_last"]; n != int64(99) {
		t.Errorf("second line says %v not logged, want 99", n)
	}
	if all[1].Level != zapcore.ErrorLevel {
		t.Errorf("second line at %v, want the level asked for", all[1].Level)
	}
}
