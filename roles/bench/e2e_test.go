package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud/roles"
	"github.com/imcloud/imcloud/roles/rolestest"
)

// startAll runs `imcloud all` in process on random loopback ports; stop ends
// it (also done at cleanup).
func startAll(t *testing.T) (addrs roles.Addrs, stop func()) {
	t.Helper()
	app, stop := rolestest.StartAll(t, nil)
	return app.Addrs(), stop
}

// runAsync runs the bench in the background; the summary (nil if Run
// failed, which is reported) arrives on the channel.
func runAsync(t *testing.T, ctx context.Context, cfg Config, progress io.Writer) <-chan *Summary {
	done := make(chan *Summary, 1)
	go func() {
		s, err := Run(ctx, cfg, progress)
		if err != nil {
			t.Error(err)
		}
		done <- s
	}()
	return done
}

func benchConfig(a roles.Addrs) Config {
	cfg := Default()
	cfg.TCPAddr = a.TCP
	cfg.WSURL = "ws://" + a.WS + "/sub"
	cfg.HTTP = "http://" + a.HTTP
	cfg.Settle = 100 * time.Millisecond
	cfg.Heartbeat = time.Second
	cfg.Progress = 0
	cfg.Timeout = 20 * time.Second
	return cfg
}

// checkClean asserts a run that delivered everything it should have, and
// exactly that.
func checkClean(t *testing.T, s *Summary, pushes, expected int64) {
	t.Helper()
	var js bytes.Buffer
	_ = s.WriteJSON(&js)
	if s.Result != ResultOK {
		t.Fatalf("result %s (%s)\n%s", s.Result, s.AbortReason, js.String())
	}
	d := s.Deliveries
	if s.Pushes.OK != pushes || d.Expected != expected || d.Received != expected || d.Lost != 0 || d.LostPushes != 0 {
		t.Fatalf("pushes ok %d (want %d), expected %d received %d (want %d), lost %d\n%s",
			s.Pushes.OK, pushes, d.Expected, d.Received, expected, d.Lost, js.String())
	}
	if d.Duplicates+d.OutOfOrder+d.Misrouted+d.Unexpected+d.Foreign != 0 {
		t.Fatalf("duplicates/order/misrouted/unexpected/foreign: %+v", d)
	}
	if s.Latency.Count != uint64(expected) || s.Latency.Max <= 0 || s.Latency.P50 > s.Latency.P99 || s.Latency.P99 > s.Latency.Max {
		t.Fatalf("latency %+v", s.Latency)
	}
	if s.Connections.Established != int64(s.Config.Conns) || s.Connections.Failed != 0 || s.Connections.ClosedDuringRun != 0 {
		t.Fatalf("connections %+v", s.Connections)
	}
}

func TestRoomPushTCPAndWS(t *testing.T) {
	a, _ := startAll(t)
	for _, network := range []string{"tcp", "ws"} {
		t.Run(network, func(t *testing.T) {
			cfg := benchConfig(a)
			cfg.Network = network
			cfg.Conns, cfg.Rooms = 200, 10
			cfg.Rate, cfg.Duration = 20, 2*time.Second
			// The server runs in this process: its /proc figures are ours.
			cfg.ServerPIDs = []int{os.Getpid()}
			s, err := Run(context.Background(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkClean(t, s, 40, 40*20)
			if sv := s.Server; sv == nil || sv.Error != "" || sv.RSSBeforeKB <= 0 || sv.RSSAfterConnectKB <= 0 || sv.RSSEndKB <= 0 || sv.CPUSeconds < 0 || sv.PhaseSeconds <= 0 {
				t.Errorf("server figures %+v", sv)
			}
			if s.Heartbeats.Sent == 0 || s.Heartbeats.Replies == 0 {
				t.Errorf("heartbeats %+v", s.Heartbeats)
			}
			var text bytes.Buffer
			if err := s.WriteText(&text); err != nil || !strings.Contains(text.String(), "LOST 0") {
				t.Errorf("text summary: %v\n%s", err, text.String())
			}
		})
	}
}

func TestMidAndBroadcastPush(t *testing.T) {
	a, _ := startAll(t)
	cfg := benchConfig(a)
	cfg.Mode = ModeMid
	cfg.Conns = 150
	cfg.Rate, cfg.Duration = 50, 2*time.Second
	s, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, s, 100, 100)

	cfg = benchConfig(a)
	cfg.Network = "ws"
	cfg.Conns, cfg.Rooms = 120, 3
	cfg.Push = PushAll
	cfg.Rate, cfg.Duration = 5, 2*time.Second
	s, err = Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, s, 10, 10*120)

	// Paced broadcasts: 120 sessions at 300/s take 0.4 s to reach the last.
	cfg.Speed, cfg.Rate, cfg.Duration = 300, 1, 2*time.Second
	s, err = Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, s, 2, 2*120)
	if s.Config.Speed != 300 || s.Latency.Max < 300 {
		t.Fatalf("paced broadcast: speed %d in the summary, slowest delivery %.0f ms; want 300 and at least 300 ms",
			s.Config.Speed, s.Latency.Max)
	}
}

func TestWorkerProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "imcloud")
	if out, err := exec.Command("go", "build", "-o", bin, "../..").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	a, _ := startAll(t)
	cfg := benchConfig(a)
	cfg.Exe = bin
	cfg.Network = "ws"
	cfg.Conns, cfg.PerProcess, cfg.Rooms = 250, 100, 10
	cfg.Rate, cfg.Duration = 20, 2*time.Second
	s, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Config.Workers != 3 || s.Bench.Processes != 4 {
		t.Errorf("workers %d, processes %d; want 3 and 4", s.Config.Workers, s.Bench.Processes)
	}
	checkClean(t, s, 40, 40*25)
}

// lineWatcher signals when a progress line matches want.
type lineWatcher struct {
	mu   sync.Mutex
	want *regexp.Regexp
	hit  chan struct{}
	buf  bytes.Buffer
}

func (w *lineWatcher) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if w.hit != nil && w.want.Match(b) {
		close(w.hit)
		w.hit = nil
	}
	return len(b), nil
}

func TestServerGoesAway(t *testing.T) {
	a, stop := startAll(t)
	cfg := benchConfig(a)
	cfg.Conns, cfg.Rooms = 100, 2
	cfg.Rate, cfg.Duration = 10, time.Minute
	cfg.Progress = 50 * time.Millisecond
	hit := make(chan struct{})
	w := &lineWatcher{want: regexp.MustCompile(` push `), hit: hit}
	done := runAsync(t, context.Background(), cfg, w)
	select {
	case <-hit:
	case <-time.After(time.Minute):
		t.Fatal("the push phase never started")
	}
	stop()
	select {
	case s := <-done:
		if s == nil {
			return
		}
		if s.Result != ResultAborted || !strings.Contains(s.AbortReason, "server") && !strings.Contains(s.AbortReason, "REST") {
			t.Fatalf("result %s, reason %q", s.Result, s.AbortReason)
		}
		t.Logf("aborted: %s", s.AbortReason)
	case <-time.After(time.Minute):
		t.Fatal("bench did not stop after the server went away")
	}
}

func TestInterruptPrintsSoFar(t *testing.T) {
	a, _ := startAll(t)
	cfg := benchConfig(a)
	cfg.Conns, cfg.Rooms = 50, 1
	cfg.Rate, cfg.Duration = 10, time.Minute
	cfg.Progress = 50 * time.Millisecond
	hit := make(chan struct{})
	w := &lineWatcher{want: regexp.MustCompile(`pushes ([3-9]|\d\d+) `), hit: hit}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runAsync(t, ctx, cfg, w)
	select {
	case <-hit:
	case <-time.After(time.Minute):
		t.Fatal("no pushes")
	}
	cancel()
	s := <-done
	if s == nil {
		return
	}
	if s.Result != ResultInterrupted || s.Pushes.OK < 3 || s.Deliveries.Received < 3*50 || s.Deliveries.Lost != 0 {
		t.Fatalf("result %s, pushes %+v, deliveries %+v", s.Result, s.Pushes, s.Deliveries)
	}
}

func TestValidate(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"network":      func(c *Config) { c.Network = "udp" },
		"conns":        func(c *Config) { c.Conns = 0 },
		"mode":         func(c *Config) { c.Mode = "x" },
		"push":         func(c *Config) { c.Mode, c.Push = ModeMid, PushRoom },
		"rate":         func(c *Config) { c.Rate = 0 },
		"size":         func(c *Config) { c.Size = 10 },
		"op":           func(c *Config) { c.Op = 5 },
		"ws-url":       func(c *Config) { c.Network, c.WSURL = "ws", "wss://x/sub" },
		"tcp-addr":     func(c *Config) { c.TCPAddr = "127.0.0.1:3101,nope" },
		"source-ips":   func(c *Config) { c.SourceIPs = []string{"nope"} },
		"mid-offset":   func(c *Config) { c.MidOffset = 1 << 40 },
		"http":         func(c *Config) { c.HTTP = "localhost:80" },
		"per-process":  func(c *Config) { c.PerProcess = 0 },
		"server-pids":  func(c *Config) { c.ServerPIDs = []int{-1} },
		"rooms":        func(c *Config) { c.Rooms = 0 },
		"duration":     func(c *Config) { c.Duration = 0 },
		"connect-rate": func(c *Config) { c.ConnectRate = -1 },
		"speed":        func(c *Config) { c.Speed = 100 }, // the default pushes to rooms
	} {
		cfg := Default()
		mut(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--"+name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A bad --mode is one error: the --push derived from it is not another.
	cfg := Default()
	cfg.Mode = "x"
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), "--push") {
		t.Errorf("bad --mode alone: %v", err)
	}
	cfg = Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.SourceIPs) != 8 || cfg.SourceIPs[0] != "127.0.0.2" || cfg.Push != PushRoom || len(cfg.Accepts) != 1 {
		t.Fatalf("derived: %+v", cfg)
	}
	cfg = Default()
	cfg.TCPAddr = "10.1.2.3:3101"
	if err := cfg.Validate(); err != nil || cfg.SourceIPs != nil {
		t.Fatalf("non-loopback target: %v %v", err, cfg.SourceIPs)
	}
}

func TestTargets(t *testing.T) {
	for _, tc := range []struct {
		network, list string
		want          []wsTarget
		loopback      bool
	}{
		{"tcp", "127.0.0.1:1", []wsTarget{{hostPort: "127.0.0.1:1"}}, true},
		{"tcp", "127.0.0.1:1, 127.0.0.1:2,", []wsTarget{{hostPort: "127.0.0.1:1"}, {hostPort: "127.0.0.1:2"}}, true},
		{"tcp", "127.0.0.1:1,10.0.0.1:2", []wsTarget{{hostPort: "127.0.0.1:1"}, {hostPort: "10.0.0.1:2"}}, false},
		{"ws", "ws://127.0.0.1:1/sub,ws://localhost/x?a=1", []wsTarget{
			{hostPort: "127.0.0.1:1", host: "127.0.0.1:1", path: "/sub"},
			{hostPort: "localhost:80", host: "localhost:80", path: "/x?a=1"},
		}, true},
	} {
		cfg := Default()
		cfg.Network = tc.network
		cfg.TCPAddr, cfg.WSURL = tc.list, tc.list
		got, err := cfg.targets()
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s %q: %+v %v", tc.network, tc.list, got, err)
		}
		if cfg.targetIsLoopback() != tc.loopback {
			t.Errorf("%s %q: loopback %v", tc.network, tc.list, !tc.loopback)
		}
	}
	cfg := Default()
	cfg.TCPAddr = " , "
	if _, err := cfg.targets(); err == nil {
		t.Error("empty list accepted")
	}
}

// Connections spread over a list of servers: client i goes to entry i mod n.
func TestSeveralTargets(t *testing.T) {
	a1, _ := startAll(t)
	a2, _ := startAll(t)
	cfg := benchConfig(a1)
	cfg.Network = "ws"
	cfg.WSURL = "ws://" + a1.WS + "/sub,ws://" + a2.WS + "/sub"
	cfg.Conns, cfg.Push, cfg.Duration = 10, PushNone, 30*time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runAsync(t, ctx, cfg, nil)
	conns := func(a roles.Addrs) int {
		resp, err := http.Get("http://" + a.HTTP + "/goim/online/total")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var env struct {
			Data struct {
				ConnCount int `json:"conn_count"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&env) != nil {
			return -1
		}
		return env.Data.ConnCount
	}
	deadline := time.Now().Add(time.Minute)
	for c1, c2 := conns(a1), conns(a2); c1 != 5 || c2 != 5; c1, c2 = conns(a1), conns(a2) {
		if time.Now().After(deadline) {
			t.Fatalf("connections per server: %d and %d, want 5 and 5", c1, c2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if s := <-done; s != nil && s.Connections.Established != 10 {
		t.Errorf("established %d", s.Connections.Established)
	}
}
