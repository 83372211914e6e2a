package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// tick is how often the parent looks at its shards.
const tick = 100 * time.Millisecond

// Run performs one bench run and returns its summary. progress receives the
// live line (every cfg.Progress) and notices; nil discards them. Run returns
// an error only when the run could not start (bad config, a server PID that
// cannot be read, a worker that cannot be started); a run that went wrong
// later returns a summary saying so (Result, AbortReason). When ctx ends
// (Ctrl-C) the pushes stop, deliveries get one more second, and the summary
// covers the run so far.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	r := &runner{cfg: cfg, out: progress}
	return r.run(ctx)
}

type runner struct {
	cfg    Config
	out    io.Writer
	shards []shard
	local  *pool
	pusher *pusher

	began     time.Time
	phase     string
	abort     string
	lastPrint time.Time
	lastDeliv int64

	sum Summary
}

// view is the sum of the shards' latest reports.
type view struct {
	Report
	lat           Histogram
	connectDone   bool
	stoppedEarly  bool
	shardFailures []string
}

func (r *runner) run(ctx context.Context) (*Summary, error) {
	cfg := &r.cfg
	s := &r.sum
	s.Config = SummaryConfig{
		Network: cfg.Network, Target: cfg.TCPAddr, HTTP: cfg.HTTP, Conns: cfg.Conns, Mode: cfg.Mode,
		Rooms: cfg.Rooms, Push: cfg.Push, Rate: cfg.Rate, Speed: cfg.Speed, DurationS: secs(cfg.Duration), Size: cfg.Size,
		Op: cfg.Op, HeartbeatS: secs(cfg.Heartbeat), GraceS: secs(cfg.Grace), SourceIPs: cfg.SourceIPs,
		PerProcess: cfg.PerProcess, ConnectRate: cfg.ConnectRate,
	}
	if cfg.Network == "ws" {
		s.Config.Target = cfg.WSURL
	}
	if cfg.Mode == ModeMid {
		s.Config.Rooms = 0
	}
	if cfg.Push == PushNone {
		s.Config.Rate = 0
	}
	var srvBefore procSample
	if len(cfg.ServerPIDs) > 0 {
		var err error
		if srvBefore, err = sampleAll(cfg.ServerPIDs); err != nil {
			return nil, fmt.Errorf("--server-pids: %w", err)
		}
		s.Server = &ServerSummary{PIDs: cfg.ServerPIDs, RSSBeforeKB: srvBefore.RSSKB}
	}
	cpuStart := selfCPU()
	if err := r.startShards(); err != nil {
		return nil, err
	}
	defer r.stopShards()
	s.Config.Workers = 0
	if r.local == nil {
		s.Config.Workers = len(r.shards)
	}
	fmt.Fprintf(r.out, "bench: %d %s connections to %s from %d source address(es) in %d process(es)\n",
		cfg.Conns, cfg.Network, s.Config.Target, max(1, len(cfg.SourceIPs)), len(r.shards))

	// Connect.
	r.began = time.Now()
	r.phase = "connect"
	interrupted := false
	v := r.wait(ctx, 0, func(v *view) bool { return v.connectDone })
	if ctx.Err() != nil {
		interrupted = true
	}
	r.connectCPU(srvBefore, cpuStart)
	connected := make([]bool, cfg.Conns)
	for _, sh := range r.shards {
		for _, rg := range sh.latest().Connected {
			for i := rg[0]; i < rg[1] && i < cfg.Conns; i++ {
				connected[i] = true
			}
		}
	}
	if r.abort == "" && !interrupted {
		switch {
		case v.stoppedEarly:
			r.abort = fmt.Sprintf("stopped connecting after %d failures (--max-connect-failures)", v.Failed)
		case v.Established == 0:
			r.abort = "no connection was established"
		}
	}

	// Settle, then the push phase.
	var srvStart procSample
	var cpu0 time.Duration
	var phaseStart, phaseEnd time.Time
	if r.abort == "" && !interrupted && cfg.Settle > 0 {
		r.phase = "settle"
		r.wait(ctx, cfg.Settle, nil)
		interrupted = ctx.Err() != nil
	}
	if r.abort == "" && !interrupted {
		if s.Server != nil {
			var err error
			if srvStart, err = sampleAll(cfg.ServerPIDs); err != nil {
				s.Server.Error = err.Error()
			}
			s.Server.RSSAfterConnectKB = srvStart.RSSKB
		}
		cpu0 = selfCPU()
		for _, sh := range r.shards {
			sh.markPush()
		}
		phaseStart = time.Now()
		r.phase = "push"
		if cfg.Push == PushNone {
			r.wait(ctx, cfg.Duration, nil)
		} else {
			r.pusher = newPusher(cfg, membersOf(cfg, connected), midsOf(cfg, connected), int32(count(connected)))
			pctx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { r.pusher.run(pctx); close(done) }()
			r.wait(ctx, 0, func(*view) bool {
				select {
				case <-done:
					return true
				default:
					return false
				}
			})
			stop()
			<-done
			interrupted = ctx.Err() != nil
			grace := cfg.Grace
			if interrupted {
				grace = min(grace, time.Second)
			}
			if r.abort == "" {
				r.phase = "grace"
				r.wait(context.Background(), grace, graceOver(r.pusher.expectedOK.Load, time.Now))
			}
		}
		interrupted = interrupted || ctx.Err() != nil
		phaseEnd = time.Now()
	}

	// Final samples and reports.
	var srvEnd procSample
	if s.Server != nil && !phaseStart.IsZero() {
		var err error
		if srvEnd, err = sampleAll(cfg.ServerPIDs); err != nil && s.Server.Error == "" {
			s.Server.Error = err.Error()
		}
		s.Server.RSSEndKB = srvEnd.RSSKB
	}
	benchCPU := selfCPU() - cpu0
	finals := r.finish()
	r.phase = "done"
	for _, f := range finals {
		if r.local == nil {
			benchCPU += time.Duration(f.CPUNanos)
		}
	}
	r.summarize(finals, connected, phaseStart, phaseEnd, benchCPU, srvStart, srvEnd)
	switch {
	case r.abort != "":
		s.Result, s.AbortReason = ResultAborted, r.abort
	case interrupted:
		s.Result = ResultInterrupted
	case s.Deliveries.Lost > 0:
		s.Result = ResultLoss
	case s.Connections.Failed > 0 || s.Connections.ClosedDuringRun > 0 || s.Pushes.HTTPErrors > 0 ||
		s.Pushes.Non200 > 0 || s.Deliveries.Duplicates > 0 || s.Deliveries.Misrouted > 0 || s.Deliveries.OutOfOrder > 0:
		s.Result = ResultErrors
	default:
		s.Result = ResultOK
	}
	return s, nil
}

// connectCPU fills in the CPU the connect phase cost both sides.
func (r *runner) connectCPU(srvBefore procSample, cpuStart time.Duration) {
	c := &r.sum.Connections
	bench := selfCPU() - cpuStart
	if r.local == nil {
		for _, sh := range r.shards {
			bench += time.Duration(sh.latest().CPUTotal)
		}
	}
	c.BenchCPUSeconds = bench.Seconds()
	var est int64
	for _, sh := range r.shards {
		est += sh.latest().Established
	}
	if est > 0 {
		c.BenchCPUPerConn = float64(bench.Microseconds()) / float64(est)
	}
	if len(r.cfg.ServerPIDs) > 0 {
		if now, err := sampleAll(r.cfg.ServerPIDs); err == nil {
			c.ServerCPUSeconds = (now.CPU - srvBefore.CPU).Seconds()
			if est > 0 {
				c.ServerCPUPerConn = float64((now.CPU - srvBefore.CPU).Microseconds()) / float64(est)
			}
		}
	}
}

func (r *runner) startShards() error {
	cfg := &r.cfg
	maxErr := func(n int) int64 {
		if cfg.MaxConnectFailures <= 0 {
			return 0
		}
		return max(1, (int64(cfg.MaxConnectFailures)*int64(n)+int64(cfg.Conns)-1)/int64(cfg.Conns))
	}
	if cfg.Conns <= cfg.PerProcess {
		p, err := newPool(*cfg, 0, cfg.Conns, cfg.ConnectRate, cfg.ConnectConcurrency, maxErr(cfg.Conns))
		if err != nil {
			return err
		}
		if err := p.start(); err != nil {
			return err
		}
		r.local = p
		r.shards = []shard{localShard{p}}
		return nil
	}
	n := (cfg.Conns + cfg.PerProcess - 1) / cfg.PerProcess
	for w := range n {
		lo, hi := w*cfg.Conns/n, (w+1)*cfg.Conns/n
		spec := workerSpec{
			Config: *cfg, Lo: lo, Hi: hi,
			Rate:   cfg.ConnectRate * float64(hi-lo) / float64(cfg.Conns),
			Conc:   (cfg.ConnectConcurrency + n - 1) / n,
			MaxErr: maxErr(hi - lo),
		}
		sh, err := startWorker(cfg.Exe, spec, r.out)
		if err != nil {
			r.stopShards()
			return err
		}
		r.shards = append(r.shards, sh)
	}
	return nil
}

func (r *runner) stopShards() {
	var wg sync.WaitGroup
	for _, sh := range r.shards {
		wg.Go(sh.stop)
	}
	wg.Wait()
	r.shards = nil
}

func (r *runner) finish() []Report {
	out := make([]Report, len(r.shards))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, sh := range r.shards {
		wg.Go(func() {
			rep, err := sh.finish(30 * time.Second)
			out[i] = rep
			if err != nil {
				mu.Lock()
				if r.abort == "" {
					r.abort = "final report: " + err.Error()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// view sums the shards' latest reports.
func (r *runner) view() *view {
	v := &view{connectDone: true}
	for _, sh := range r.shards {
		rep := sh.latest()
		v.Attempted += rep.Attempted
		v.Established += rep.Established
		v.Failed += rep.Failed
		v.Closed += rep.Closed
		v.Counters.add(rep.Counters)
		v.lat.AddSparse(rep.Latency)
		v.LastRecv = max(v.LastRecv, rep.LastRecv)
		v.connectDone = v.connectDone && rep.ConnectDone
		v.stoppedEarly = v.stoppedEarly || rep.StoppedEarly
		select {
		case <-sh.exited():
			v.shardFailures = append(v.shardFailures, sh.err().Error())
		default:
		}
	}
	return v
}

// wait watches the shards every tick until cond holds, d passes (d <= 0: no
// limit), ctx ends or the run must abort (r.abort is then set). It prints
// the progress line and returns the last view.
// abortWorker starts the abort reason of a run whose worker process died.
const abortWorker = "a worker process ended: "

// graceQuiet is how long no delivery may arrive before the grace period
// ends early.
const graceQuiet = 500 * time.Millisecond

// graceOver is the condition that ends the grace period before its time:
// at least the deliveries the answered pushes expect have arrived, and none
// for graceQuiet. The total alone is not enough: a push whose answer was
// lost may still deliver, and its deliveries would stand in for those of a
// paced broadcast still under way, which would then count as lost.
func graceOver(expected func() int64, now func() time.Time) func(*view) bool {
	var last int64 = -1
	var since time.Time
	return func(v *view) bool {
		if v.Deliveries != last {
			last, since = v.Deliveries, now()
			return false
		}
		return v.Deliveries >= expected() && now().Sub(since) >= graceQuiet
	}
}

func (r *runner) wait(ctx context.Context, d time.Duration, cond func(*view) bool) *view {
	t := time.NewTicker(tick)
	defer t.Stop()
	var deadline <-chan time.Time
	if d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		deadline = tm.C
	}
	for {
		v := r.view()
		r.checkAbort(v)
		r.printProgress(v, false)
		if r.abort != "" || (cond != nil && cond(v)) {
			return v
		}
		select {
		case <-ctx.Done():
			return v
		case <-deadline:
			return r.view()
		case <-t.C:
		}
	}
}

func (r *runner) checkAbort(v *view) {
	if r.abort != "" {
		return
	}
	switch {
	case len(v.shardFailures) > 0:
		r.abort = abortWorker + strings.Join(v.shardFailures, "; ")
	case v.Closed > 0 && 2*v.Closed >= v.Established:
		r.abort = fmt.Sprintf("%d of %d connections closed by the server (it went away, or dropped them: see its log)", v.Closed, v.Established)
	case r.pusher != nil && r.pusher.unreachable() != "":
		r.abort = "REST API unreachable: " + r.pusher.unreachable()
	}
	if r.abort == "" && len(r.cfg.ServerPIDs) > 0 {
		for _, pid := range r.cfg.ServerPIDs {
			if _, err := readCPU(pid); err != nil {
				r.abort = fmt.Sprintf("server process %d is gone", pid)
				break
			}
		}
	}
	if r.abort != "" {
		fmt.Fprintf(r.out, "bench: stopping: %s\n", r.abort)
	}
}

func (r *runner) printProgress(v *view, force bool) {
	now := time.Now()
	if r.cfg.Progress <= 0 || (!force && now.Sub(r.lastPrint) < r.cfg.Progress) {
		return
	}
	interval := now.Sub(r.lastPrint)
	if r.lastPrint.IsZero() {
		interval = now.Sub(r.began)
	}
	r.lastPrint = now
	var b strings.Builder
	fmt.Fprintf(&b, "bench %6.1fs %-7s conns %d", now.Sub(r.began).Seconds(), r.phase, v.Established)
	if v.Failed > 0 || v.Closed > 0 {
		fmt.Fprintf(&b, " (failed %d, closed %d)", v.Failed, v.Closed)
	}
	if r.phase == "connect" {
		fmt.Fprintf(&b, " of %d, %.0f/s", r.cfg.Conns, float64(v.Established)/now.Sub(r.began).Seconds())
	}
	if p := r.pusher; p != nil {
		rate := float64(v.Deliveries-r.lastDeliv) / interval.Seconds()
		fmt.Fprintf(&b, " | pushes %d", p.sent.Load())
		if e := p.transportErr.Load() + p.non200.Load(); e > 0 {
			fmt.Fprintf(&b, " (%d errors)", e)
		}
		fmt.Fprintf(&b, " | delivered %d, %.0f/s, in flight %d | p50 %s p99 %s max %s",
			v.Deliveries, rate, max(0, p.expectedOK.Load()-v.Deliveries),
			fmtMs(float64(v.lat.Quantile(0.5))/1e6), fmtMs(float64(v.lat.Quantile(0.99))/1e6), fmtMs(float64(v.lat.Max)/1e6))
		if v.Dups+v.Misrouted+v.OutOfOrder > 0 {
			fmt.Fprintf(&b, " | dup %d misrouted %d reordered %d", v.Dups, v.Misrouted, v.OutOfOrder)
		}
	}
	r.lastDeliv = v.Deliveries
	b.WriteByte('\n')
	_, _ = io.WriteString(r.out, b.String())
}

// summarize fills r.sum from the final reports.
func (r *runner) summarize(finals []Report, connected []bool, phaseStart, phaseEnd time.Time,
	benchCPU time.Duration, srvStart, srvEnd procSample) {
	cfg := &r.cfg
	s := &r.sum
	var tot Report
	var lat, hs Histogram
	errs := map[string]int64{}
	var perPush []int64
	for _, f := range finals {
		tot.Attempted += f.Attempted
		tot.Established += f.Established
		tot.Failed += f.Failed
		tot.Closed += f.Closed
		tot.Counters.add(f.Counters)
		tot.LastRecv = max(tot.LastRecv, f.LastRecv)
		tot.ConnectNanos = max(tot.ConnectNanos, f.ConnectNanos)
		lat.AddSparse(f.Latency)
		hs.AddSparse(f.ConnectLat)
		for k, n := range f.Errors {
			errs[k] += n
		}
		for i, n := range f.PerPush {
			for len(perPush) <= i {
				perPush = append(perPush, 0)
			}
			perPush[i] += int64(n)
		}
	}
	c := &s.Connections
	c.Target = cfg.Conns
	c.Attempted, c.Established, c.Failed, c.ClosedDuringRun = tot.Attempted, tot.Established, tot.Failed, tot.Closed
	c.ConnectSeconds = float64(tot.ConnectNanos) / 1e9
	if est := int64(count(connected)); c.ConnectSeconds > 0 {
		c.ConnectRate = float64(est) / c.ConnectSeconds
	}
	c.Handshake = latencyOf(&hs)
	s.Heartbeats = HBSummary{Sent: tot.HBSent, Replies: tot.HBReplies}
	s.Latency = latencyOf(&lat)

	d := &s.Deliveries
	d.Received = int64(lat.N)
	if strings.HasPrefix(r.abort, abortWorker) {
		d.Incomplete = "a worker process died; its clients' deliveries are not known and count as lost, those it reported before as received"
	}
	d.Duplicates, d.OutOfOrder, d.Stale, d.Misrouted, d.Foreign = tot.Dups, tot.OutOfOrder, tot.Stale, tot.Misrouted, tot.Foreign
	phase := phaseEnd.Sub(phaseStart)
	if p := r.pusher; p != nil {
		ps := &s.Pushes
		ps.Scheduled, ps.Sent, ps.OK, ps.HTTPErrors, ps.Non200 = p.scheduled.Load(), p.sent.Load(), p.ok.Load(), p.transportErr.Load(), p.non200.Load()
		ps.TargetRate = cfg.Rate
		ps.AchievedRate = p.achievedRate()
		ps.MaxSendLagMs = float64(p.lagMax.Load()) / 1e6
		p.mu.Lock()
		ps.REST = latencyOf(&p.rest)
		for k, n := range p.errKinds {
			errs[k] += n
		}
		p.mu.Unlock()
		for i, rec := range p.recs {
			got := int64(0)
			if i < len(perPush) {
				got = perPush[i]
			}
			exp := int64(rec.expected)
			d.Expected += exp
			if got < exp {
				d.Lost += exp - got
				d.LostPushes++
			} else if got > exp {
				d.Unexpected += got - exp
			}
		}
		for i := len(p.recs); i < len(perPush); i++ {
			d.Unexpected += perPush[i]
		}
		if tot.LastRecv > 0 {
			d.WindowS = float64(tot.LastRecv-p.start.UnixNano()) / 1e9
			if d.WindowS > 0 {
				d.PerSecond = float64(d.Received) / d.WindowS
			}
		}
	}
	if len(errs) > 0 {
		s.Errors = errs
	}
	s.Bench.Processes = len(finals)
	if r.local == nil {
		s.Bench.Processes++
	}
	s.Bench.CPUSeconds = benchCPU.Seconds()
	if phase > 0 {
		s.Bench.CPUPercent = 100 * benchCPU.Seconds() / phase.Seconds()
	}
	if d.Received > 0 {
		s.Bench.CPUMicrosPerDeliv = float64(benchCPU.Microseconds()) / float64(d.Received)
	}
	if sv := s.Server; sv != nil {
		if c.Established > 0 && sv.RSSAfterConnectKB > 0 {
			sv.RSSPerConnBytes = float64(sv.RSSAfterConnectKB-sv.RSSBeforeKB) * 1024 / float64(count(connected))
		}
		if c.Established > 0 && sv.RSSEndKB > 0 {
			sv.RSSEndPerConn = float64(sv.RSSEndKB-sv.RSSBeforeKB) * 1024 / float64(count(connected))
		}
		if phase > 0 && srvEnd.CPU > 0 {
			cpu := srvEnd.CPU - srvStart.CPU
			sv.CPUSeconds = cpu.Seconds()
			sv.PhaseSeconds = phase.Seconds()
			sv.CPUPercent = 100 * cpu.Seconds() / phase.Seconds()
			if d.Received > 0 {
				sv.CPUMicrosPerDeliv = float64(cpu.Microseconds()) / float64(d.Received)
			}
		}
	}
}

func count(b []bool) int {
	n := 0
	for _, x := range b {
		if x {
			n++
		}
	}
	return n
}

func membersOf(cfg *Config, connected []bool) []int32 {
	if cfg.Mode != ModeRoom {
		return nil
	}
	m := make([]int32, cfg.Rooms)
	for i, ok := range connected {
		if ok {
			m[cfg.roomOf(i)]++
		}
	}
	return m
}

func midsOf(cfg *Config, connected []bool) []int64 {
	if cfg.Push != PushMid {
		return nil
	}
	var m []int64
	for i, ok := range connected {
		if ok {
			m = append(m, cfg.midOf(i))
		}
	}
	return m
}
