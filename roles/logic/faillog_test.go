package logic

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestFailLogThinsOutAnOutage: a failure like the last one logged less
// than failLogEvery ago is counted, not logged; the next line says how
// many were not; the first success after failures is logged once.
func TestFailLogThinsOutAnOutage(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	f := newFailLog(zap.New(core))
	t0 := time.Unix(1000, 0)
	const mids, room = "/goim/push/mids", "/goim/push/room"
	f.success(mids) // nothing failed: nothing to say
	for i := range 5 {
		f.failure(t0.Add(time.Duration(i)*time.Second), mids, "session store unavailable", nil)
	}
	f.failure(t0.Add(2*time.Second), mids, "queue full", nil) // another reason: its own line
	f.failure(t0.Add(3*time.Second), room, "session store unavailable", nil)
	f.failure(t0.Add(11*time.Second), mids, "session store unavailable", nil)
	f.success(room)
	f.success(mids)
	f.success(mids)

	type line struct {
		msg, route string
		quiet      int64
		failed     int64
	}
	var got []line
	for _, e := range logs.All() {
		m := e.ContextMap()
		l := line{msg: e.Message}
		l.route, _ = m["route"].(string)
		l.quiet, _ = m["not_logged_since_last"].(int64)
		l.failed, _ = m["failed_before"].(int64)
		got = append(got, l)
	}
	want := []line{
		{msg: "request failed"},
		{msg: "request failed"},
		{msg: "request failed"},
		{msg: "request failed", quiet: 4},
		{msg: "requests succeed again", route: room, failed: 1},
		{msg: "requests succeed again", route: mids, failed: 7},
	}
	if len(got) != len(want) {
		t.Fatalf("logged %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if f.failing.Load() {
		t.Error("still failing after every route succeeded")
	}
}
