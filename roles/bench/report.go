package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Results.
const (
	ResultOK          = "ok"          // everything expected arrived, no errors
	ResultLoss        = "loss"        // deliveries lost
	ResultErrors      = "errors"      // no loss, but failed/closed connections, HTTP errors, duplicates, misrouted or reordered deliveries
	ResultAborted     = "aborted"     // the run stopped early: see abort_reason
	ResultInterrupted = "interrupted" // Ctrl-C: the summary covers the run so far
)

// Summary is the outcome of a run; --json prints it as one object.
type Summary struct {
	Result      string          `json:"result"`
	AbortReason string          `json:"abort_reason,omitempty"`
	Config      SummaryConfig   `json:"config"`
	Connections ConnSummary     `json:"connections"`
	Pushes      PushSummary     `json:"pushes"`
	Deliveries  DeliverySummary `json:"deliveries"`
	Latency     Latency         `json:"latency_ms"` // push → receive
	Heartbeats  HBSummary       `json:"heartbeats"`
	Server      *ServerSummary  `json:"server,omitempty"` // with --server-pids
	Bench       BenchSummary    `json:"bench"`
	// Errors counts error kinds: connection failures and closes, HTTP errors.
	Errors map[string]int64 `json:"errors,omitempty"`
}

// SummaryConfig echoes the run's parameters.
type SummaryConfig struct {
	Network     string   `json:"network"`
	Target      string   `json:"target"`
	HTTP        string   `json:"http"`
	Conns       int      `json:"conns"`
	Mode        string   `json:"mode"`
	Rooms       int      `json:"rooms"`
	Push        string   `json:"push"`
	Rate        float64  `json:"rate"`
	Speed       int      `json:"speed,omitempty"`
	DurationS   float64  `json:"duration_s"`
	Size        int      `json:"size"`
	Op          int32    `json:"op"`
	HeartbeatS  float64  `json:"heartbeat_s"`
	GraceS      float64  `json:"grace_s"`
	SourceIPs   []string `json:"source_ips,omitempty"`
	PerProcess  int      `json:"per_process"`
	Workers     int      `json:"workers"` // worker processes (0: all connections in this process)
	ConnectRate float64  `json:"connect_rate"`
}

// ConnSummary covers the connect phase and connection losses.
type ConnSummary struct {
	Target          int     `json:"target"`
	Attempted       int64   `json:"attempted"`
	Established     int64   `json:"established"`
	Failed          int64   `json:"failed"`
	ClosedDuringRun int64   `json:"closed_during_run"`
	ConnectSeconds  float64 `json:"connect_seconds"` // first dial to last handshake
	ConnectRate     float64 `json:"connect_rate"`    // established / connect_seconds
	Handshake       Latency `json:"handshake_ms"`    // dial + upgrade + auth reply
	// CPU spent from the first dial until every connection was tried:
	// the server's (with --server-pids) and the bench's, all processes.
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
	ServerCPUPerConn float64 `json:"server_cpu_us_per_conn,omitempty"`
	BenchCPUSeconds  float64 `json:"bench_cpu_seconds"`
	BenchCPUPerConn  float64 `json:"bench_cpu_us_per_conn"`
}

// PushSummary covers the REST side.
type PushSummary struct {
	Scheduled    int64   `json:"scheduled"`
	Sent         int64   `json:"sent"`
	OK           int64   `json:"ok"`
	HTTPErrors   int64   `json:"http_errors"` // no HTTP answer
	Non200       int64   `json:"non_200"`
	TargetRate   float64 `json:"target_rate"`
	AchievedRate float64 `json:"achieved_rate"` // sent / push phase seconds
	MaxSendLagMs float64 `json:"max_send_lag_ms"`
	REST         Latency `json:"rest_ms"` // HTTP round trip
}

// DeliverySummary: expected counts only pushes the API answered 200 to:
// members of the room at the start of the push phase, 1 for a mid, every
// connected client for a broadcast.
type DeliverySummary struct {
	Expected   int64 `json:"expected"`
	Received   int64 `json:"received"` // unique deliveries of bench pushes
	Lost       int64 `json:"lost"`     // expected but not received within the grace period
	LostPushes int64 `json:"lost_pushes"`
	Duplicates int64 `json:"duplicates"`
	OutOfOrder int64 `json:"out_of_order"`
	// Stale deliveries came 64 or more pushes after a later one: out of
	// order, and not checked for duplicates.
	Stale      int64   `json:"stale"`
	Misrouted  int64   `json:"misrouted"`  // stamped for another room or user
	Unexpected int64   `json:"unexpected"` // more than expected for a push (e.g. one whose HTTP call failed)
	Foreign    int64   `json:"foreign"`    // frames of the bench op without a bench stamp
	PerSecond  float64 `json:"per_second"` // received / window_s
	WindowS    float64 `json:"window_s"`   // first push sent to last delivery
	// Incomplete says why the figures above are not the server's alone
	// (a worker process died: its clients' deliveries are not known, and
	// count as lost).
	Incomplete string `json:"incomplete,omitempty"`
}

// Latency in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

func latencyOf(h *Histogram) Latency {
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	return Latency{
		Count: h.N, P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max), Mean: h.Mean() / 1e6,
	}
}

// HBSummary counts heartbeats.
type HBSummary struct {
	Sent    int64 `json:"sent"`
	Replies int64 `json:"replies"`
}

// ServerSummary is read from /proc for --server-pids (summed over them).
// RSS per connection = (after_connect - before_connect) / established, and
// at the end (end - before_connect) / established: the figure for idle
// connections, once each has had its heartbeats handled (which may grow
// what the server keeps per connection, e.g. its reader's stack).
// CPU covers the push phase: from its start until every expected delivery
// arrived (or the grace period ended).
type ServerSummary struct {
	PIDs              []int   `json:"pids"`
	RSSBeforeKB       int64   `json:"rss_before_connect_kb"`
	RSSAfterConnectKB int64   `json:"rss_after_connect_kb"` // sampled at the start of the push phase
	RSSEndKB          int64   `json:"rss_end_kb"`
	RSSPerConnBytes   float64 `json:"rss_per_conn_bytes"`
	RSSEndPerConn     float64 `json:"rss_end_per_conn_bytes"`
	CPUSeconds        float64 `json:"cpu_seconds"`
	PhaseSeconds      float64 `json:"phase_seconds"`
	CPUPercent        float64 `json:"cpu_percent"` // of one core
	CPUMicrosPerDeliv float64 `json:"cpu_us_per_delivery"`
	Error             string  `json:"error,omitempty"`
}

// BenchSummary is the load generator's own CPU over the same phase, all its
// processes together.
type BenchSummary struct {
	Processes         int     `json:"processes"`
	CPUSeconds        float64 `json:"cpu_seconds"`
	CPUPercent        float64 `json:"cpu_percent"`
	CPUMicrosPerDeliv float64 `json:"cpu_us_per_delivery"`
}

// WriteJSON prints s as one JSON object and a newline.
func (s *Summary) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText prints s for people.
func (s *Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	c := s.Config
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	procs := "in one process"
	if c.Workers > 0 {
		procs = fmt.Sprintf("in %d worker processes", c.Workers)
	}
	target := fmt.Sprintf("%d room(s)", c.Rooms)
	if c.Mode == ModeMid {
		target = "one user each"
	}
	what := fmt.Sprintf("push %s at %g/s for %gs, %d-byte messages", c.Push, c.Rate, c.DurationS, c.Size)
	if c.Push == PushNone {
		what = fmt.Sprintf("no pushes, held idle for %gs (heartbeat every %gs)", c.DurationS, c.HeartbeatS)
	}
	p("imcloud bench: %d %s connections to %s (%s), %s; %s", c.Conns, c.Network, c.Target, procs, target, what)
	cs := s.Connections
	p("connections  %d established, %d failed, %d closed during the run (of %d)", cs.Established, cs.Failed, cs.ClosedDuringRun, cs.Target)
	p("             connected in %.2fs: %.0f conns/s; handshake p50 %s p99 %s max %s",
		cs.ConnectSeconds, cs.ConnectRate, fmtMs(cs.Handshake.P50), fmtMs(cs.Handshake.P99), fmtMs(cs.Handshake.Max))
	if s.Server != nil {
		p("             CPU per connection: server %.0f µs, bench %.0f µs", cs.ServerCPUPerConn, cs.BenchCPUPerConn)
	} else {
		p("             CPU per connection: bench %.0f µs", cs.BenchCPUPerConn)
	}
	if c.Push != PushNone && s.Pushes.TargetRate > 0 { // the push phase began
		ps := s.Pushes
		p("pushes       %d sent (%.2f/s of %g/s), %d ok, %d without answer, %d non-200; max send lag %s; REST p50 %s p99 %s",
			ps.Sent, ps.AchievedRate, ps.TargetRate, ps.OK, ps.HTTPErrors, ps.Non200, fmtMs(ps.MaxSendLagMs), fmtMs(ps.REST.P50), fmtMs(ps.REST.P99))
		d := s.Deliveries
		p("deliveries   %d expected, %d received, LOST %d (%d pushes incomplete); %d duplicates, %d out of order, %d misrouted, %d unexpected",
			d.Expected, d.Received, d.Lost, d.LostPushes, d.Duplicates, d.OutOfOrder, d.Misrouted, d.Unexpected)
		if d.Incomplete != "" {
			p("             NOT THE SERVER'S ALONE: %s", d.Incomplete)
		}
		p("             %.0f deliveries/s over %.2fs", d.PerSecond, d.WindowS)
		l := s.Latency
		p("latency      p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s",
			fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtMs(l.Mean))
	}
	p("heartbeats   %d sent, %d replies", s.Heartbeats.Sent, s.Heartbeats.Replies)
	if sv := s.Server; sv != nil {
		if sv.Error != "" && sv.RSSEndKB == 0 {
			// The server was gone by the end: no end figures to print.
			p("server       RSS %s before connecting, %s after (%.1f KiB per connection); end figures n/a",
				fmtKB(sv.RSSBeforeKB), fmtKB(sv.RSSAfterConnectKB), sv.RSSPerConnBytes/1024)
		} else {
			p("server       RSS %s before connecting, %s after (%.1f KiB per connection), %s at the end (%.1f KiB per connection)",
				fmtKB(sv.RSSBeforeKB), fmtKB(sv.RSSAfterConnectKB), sv.RSSPerConnBytes/1024, fmtKB(sv.RSSEndKB), sv.RSSEndPerConn/1024)
			p("             CPU %.2fs over %.2fs (%.1f%% of a core), %.2f µs per delivery",
				sv.CPUSeconds, sv.PhaseSeconds, sv.CPUPercent, sv.CPUMicrosPerDeliv)
		}
		if sv.RSSPerConnBytes < 0 || sv.RSSEndPerConn < 0 {
			p("             (RSS fell while connections were added: the server released memory held from before; per-connection figures are not meaningful)")
		}
		if sv.Error != "" {
			p("             (%s)", sv.Error)
		}
	}
	p("bench        CPU %.2fs in %d process(es) (%.1f%% of a core), %.2f µs per delivery",
		s.Bench.CPUSeconds, s.Bench.Processes, s.Bench.CPUPercent, s.Bench.CPUMicrosPerDeliv)
	for _, k := range slices.Sorted(maps.Keys(s.Errors)) {
		p("error        %d × %s", s.Errors[k], k)
	}
	res := strings.ToUpper(s.Result)
	if s.AbortReason != "" {
		res += ": " + s.AbortReason
	}
	p("result       %s", res)
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtMs(ms float64) string {
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%.2fs", ms/1000)
	case ms >= 10:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 1:
		return fmt.Sprintf("%.1fms", ms)
	default:
		return fmt.Sprintf("%.0fµs", ms*1000)
	}
}

func fmtKB(kb int64) string {
	if kb >= 10000 {
		return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
	}
	return fmt.Sprintf("%d KiB", kb)
}

func secs(d time.Duration) float64 { return d.Seconds() }
