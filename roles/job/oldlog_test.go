package job

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imcloud/imcloud/internal/logthin"
)

// TestDropOldThinsOutABacklog: the first drop is logged, the next ones
// within thinEvery only counted, and the next line says how many.
func TestDropOldThinsOutABacklog(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	now := time.Unix(1000, 0)
	j := &Job{now: func() time.Time { return now }, old: logthin.Gate{Every: thinEvery}}
	for range 100 {
		j.dropOld(zap.New(core), "push dropped: too old")
		now = now.Add(time.Millisecond)
	}
	now = now.Add(thinEvery)
	j.dropOld(zap.New(core), "push dropped: too old")
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
}
