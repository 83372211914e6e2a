package logic

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	qmem "github.com/imcloud/imcloud/queue/memory"
	"github.com/imcloud/imcloud/registry"
	regmem "github.com/imcloud/imcloud/registry/memory"
	"github.com/imcloud/imcloud/store"
	stmem "github.com/imcloud/imcloud/store/memory"
)

func TestNew(t *testing.T) {
	q, r, s, o := qmem.New(1), regmem.New(), stmem.New(time.Minute), &fakeOnline{}
	tests := []struct {
		name string
		cfg  Config
		s    Sessions
		p    Producer
		n    Nodes
		o    OnlineSource
		want string
	}{
		{"nil sessions", Config{}, nil, q, r, o, "logic: nil Sessions"},
		{"nil producer", Config{}, s, nil, r, o, "logic: nil Producer"},
		{"nil nodes", Config{}, s, q, nil, o, "logic: nil Nodes"},
		{"nil online", Config{}, s, q, r, nil, "logic: nil OnlineSource"},
		{"negative message", Config{MaxMessage: -1}, s, q, r, o, "logic: MaxMessage -1 is negative"},
		{"negative ids", Config{MaxIDs: -1}, s, q, r, o, "logic: MaxIDs -1 is negative"},
		{"negative heartbeat", Config{Heartbeat: -time.Second}, s, q, r, o, "logic: Heartbeat -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, tt.s, tt.p, tt.n, tt.o, nil, nil)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	l, err := New(Config{}, s, q, r, o, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.cfg.MaxMessage != 64<<10 || l.cfg.MaxIDs != 10000 || l.cfg.Heartbeat != 240*time.Second {
		t.Errorf("defaults %+v", l.cfg)
	}
	// The interfaces match the backends'.
	var _ Sessions = store.Sessions(nil)
	var _ Nodes = registry.Watcher(nil)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	q, r, s, o := qmem.New(100), regmem.New(), stmem.New(time.Minute), &fakeOnline{}
	l, err := New(Config{}, s, q, r, o, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{}, s, q, r, o, nil, reg); err == nil || !strings.Contains(err.Error(), "logic: register metrics") {
		t.Errorf("second registration: %v, want an error", err)
	}
	h := l.Handler()
	for _, req := range []struct{ method, target string }{
		{http.MethodPost, "/goim/push/room?operation=1000&type=a&room=b"},
		{http.MethodPost, "/goim/push/room?operation=1000&type=a&room=b"},
		{http.MethodPost, "/goim/push/room?type=a&room=b"},
		{http.MethodPost, "/im/push/all"},
		{http.MethodGet, "/im/push/all"},
		{http.MethodGet, "/nope"},
	} {
		e := &env{t: t, h: h}
		e.do(req.method, req.target, "", strings.NewReader("m"))
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, lp := range m.GetLabel() {
				key += " " + lp.GetName() + "=" + lp.GetValue()
			}
			got[key] = value(m)
		}
	}
	for key, want := range map[string]float64{
		"imcloud_logic_requests_total code=200 route=/goim/push/room": 2,
		"imcloud_logic_requests_total code=400 route=/goim/push/room": 1,
		"imcloud_logic_requests_total code=200 route=/im/push/all":    1,
		"imcloud_logic_requests_total code=405 route=/im/push/all":    1,
		"imcloud_logic_requests_total code=404 route=unmatched":       1,
		"imcloud_logic_pushes_total type=room":                        2,
		"imcloud_logic_pushes_total type=all":                         1,
		"imcloud_logic_push_duration_seconds type=room":               2,
		"imcloud_logic_push_duration_seconds type=all":                1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

func TestLogging(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	q, r, o := qmem.New(100), regmem.New(), &fakeOnline{}
	l, err := New(Config{}, failingSessions{}, q, r, o, zap.New(core).Named("logic"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, h: l.Handler()}
	e.post("/goim/push/mids?operation=1000&mids=1", "", "m") // 503
	e.post("/goim/push/mids?operation=abc&mids=1", "", "m")  // 400
	e.post("/goim/push/all?operation=1000", "", "m")         // 200
	entries := logs.AllUntimed()
	if len(entries) != 2 {
		t.Fatalf("%d log entries, want 2: %v", len(entries), entries)
	}
	if w := entries[0]; w.Level != zapcore.WarnLevel || w.LoggerName != "logic" || w.Message != "request failed" ||
		w.ContextMap()["status"] != int64(503) || !strings.Contains(w.ContextMap()["error"].(string), "connection refused") {
		t.Errorf("5xx entry %+v %v", w.Entry, w.ContextMap())
	}
	if d := entries[1]; d.Level != zapcore.DebugLevel || d.Message != "request refused" || d.ContextMap()["status"] != int64(400) {
		t.Errorf("4xx entry %+v %v", d.Entry, d.ContextMap())
	}
}

// TestRunCache: Run keeps the live node list; pushes follow it at once.
func TestRunCache(t *testing.T) {
	e := newEnv(t, envOpts{})
	if live, known := e.l.NodeLive("n1"); live || known {
		t.Errorf("NodeLive before Run = %v, %v; want false, false", live, known)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.l.Run(ctx) }()
	waitFor(t, "the first list", func() bool { s := e.l.live.Load(); return s != nil && len(s.list) == 2 })
	if live, known := e.l.NodeLive("n1"); !live || !known {
		t.Errorf("NodeLive(n1) = %v, %v; want true, true", live, known)
	}

	bg := context.Background()
	// mid 3 is bound to "dead": unreachable until that node registers.
	if p := e.post("/goim/push/mids?operation=1000&mids=3", "", "m").push(t); p.Sessions != 0 {
		t.Errorf("sessions on an unregistered node: %d", p.Sessions)
	}
	if err := e.reg.Register(bg, registry.Node{ID: "dead", Role: registry.RoleCloud}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node dead", func() bool { return e.l.live.Load().has("dead") })
	if p := e.post("/goim/push/mids?operation=1000&mids=3", "", "m").push(t); p.Sessions != 1 {
		t.Errorf("sessions once registered: %d, want 1", p.Sessions)
	}
	// n1 leaves: mid 1 reaches only k1b on n2.
	if err := e.reg.Deregister(bg, registry.RoleCloud, "n1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 gone", func() bool { return !e.l.live.Load().has("n1") })
	if live, known := e.l.NodeLive("n1"); live || !known {
		t.Errorf("NodeLive(n1) after it left = %v, %v; want false, true", live, known)
	}
	if p := e.post("/goim/push/mids?operation=1000&mids=1", "", "m").push(t); p.Sessions != 1 {
		t.Errorf("sessions after n1 left: %d, want 1", p.Sessions)
	}
	got := e.drain()
	if len(got) != 2 || got[0].Server != "dead" || got[1].Server != "n2" || got[1].Keys[0] != "k1b" {
		t.Errorf("published %v", got)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if e.l.live.Load() != nil {
		t.Error("cache kept after Run returned")
	}
}

func TestRunErrors(t *testing.T) {
	// A watch that cannot start is retried until ctx ends; meanwhile there
	// is no cache and handlers ask Nodes.
	e := newEnv(t, envOpts{nodes: failingNodes{}})
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	if err := e.l.Run(ctx); err != nil {
		t.Errorf("Run with a watch that keeps failing, ended by ctx: %v", err)
	}
	if e.l.live.Load() != nil {
		t.Error("cache set although the watch never started")
	}
	ch := make(chan []registry.Node, 1)
	ch <- []registry.Node{{ID: "n1"}}
	close(ch)
	e = newEnv(t, envOpts{nodes: failingNodes{watch: ch}})
	if err := e.l.Run(context.Background()); err == nil || err.Error() != "logic: cloud node watch ended" {
		t.Errorf("Run with a watch that ends: %v", err)
	}
	if e.l.live.Load() != nil {
		t.Error("cache kept after the watch ended")
	}
	// A ctx already done: nothing to do, not an error.
	e = newEnv(t, envOpts{})
	if err := e.l.Run(canceled()); err != nil {
		t.Errorf("Run with a done ctx: %v", err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// The hand-written push answer is byte for byte what the encoder writes.
func TestWritePushAnswer(t *testing.T) {
	for _, a := range []pushAnswer{
		{ID: "18ebbc31a03cfee41771b5da", Sessions: 0},
		{ID: "x", Sessions: 1 << 40},
		{ID: "", Sessions: -1},
		{ID: `a"b\c<é>` + "\x01", Sessions: 3}, // takes the encoder
	} {
		rec := httptest.NewRecorder()
		write(rec, httptest.NewRequest(http.MethodPost, "/goim/push/mids", nil), http.StatusOK, envelope{Data: a})
		if want := string(encode(envelope{Data: a})); rec.Body.String() != want {
			t.Errorf("%+v: wrote %s, want %s", a, rec.Body.String(), want)
		}
		if rec.Header().Get("Content-Length") != strconv.Itoa(rec.Body.Len()) || rec.Code != http.StatusOK {
			t.Errorf("%+v: status %d, headers %v", a, rec.Code, rec.Header())
		}
	}
}
