package bench

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxConsecutiveHTTPErrors in a row (no answer at all) abort the run: the
// REST API is gone.
const maxConsecutiveHTTPErrors = 20

// pushRec is what the pusher knows of push n.
type pushRec struct {
	target   uint32
	seq      uint32
	expected int32 // deliveries expected: 0 unless the API answered 200
	status   int   // HTTP status; 0: no answer (transport error)
}

// pusher sends cfg.Rate pushes/s for cfg.Duration through the REST API,
// open loop: push n is due at start + n/Rate whatever the answers to earlier
// ones. Pushes to one target go over one keep-alive connection in order
// (target mod HTTPConns), so the order clients see is the order the API
// accepted them; different targets go out in parallel.
type pusher struct {
	cfg     *Config
	addr    string // host:port of the REST API
	host    string // its Host header
	prefix  string // path of --http, if any
	recs    []pushRec
	members []int32 // room pushes: connected clients per room
	mids    []int64 // mid pushes: connected users, round robin
	total   int32   // broadcast: connected clients

	start                                     time.Time
	period                                    time.Duration
	scheduled, sent, ok, transportErr, non200 atomic.Int64
	consecErr                                 atomic.Int64
	expectedOK                                atomic.Int64 // sum of expected over answered pushes
	lagMax                                    atomic.Int64 // worst send time behind schedule, ns
	lastSend                                  atomic.Int64 // unix nanos
	lastAnswer                                atomic.Int64 // unix nanos of the latest HTTP answer (any status)
	schedEnd                                  time.Time    // when the schedule stopped (all queued, or ctx ended)

	mu       sync.Mutex
	rest     Histogram // REST round trip
	errKinds map[string]int64
}

func newPusher(cfg *Config, members []int32, mids []int64, total int32) *pusher {
	n := cfg.pushCount()
	p := &pusher{
		cfg: cfg, members: members, mids: mids, total: total,
		recs:     make([]pushRec, n),
		period:   time.Duration(float64(time.Second) / cfg.Rate),
		errKinds: map[string]int64{},
	}
	u, _ := url.Parse(cfg.HTTP) // checked by Validate
	p.host, p.prefix = u.Host, strings.TrimRight(u.Path, "/")
	p.addr = u.Host
	if u.Port() == "" {
		p.addr = net.JoinHostPort(u.Hostname(), "80")
	}
	for i := range p.recs {
		p.recs[i].target, p.recs[i].seq = p.plan(i)
	}
	return p
}

// plan is push n's target and stream sequence (round robin: the n-th push
// goes to target n mod T, and is that target's (n/T + 1)-th).
func (p *pusher) plan(n int) (target, seq uint32) {
	switch p.cfg.Push {
	case PushRoom:
		k := len(p.members)
		return uint32(n % k), uint32(n/k + 1)
	case PushMid:
		if len(p.mids) == 0 {
			return 0, uint32(n + 1)
		}
		k := len(p.mids)
		return uint32(p.mids[n%k]), uint32(n/k + 1)
	default:
		return 0, uint32(n + 1)
	}
}

// lane is the HTTP worker of push n.
func (p *pusher) lane(n int) int {
	switch p.cfg.Push {
	case PushRoom:
		return n % len(p.members) % p.cfg.HTTPConns
	case PushMid:
		if len(p.mids) > 0 {
			return n % len(p.mids) % p.cfg.HTTPConns
		}
	}
	return 0
}

// url is push n's path and query.
func (p *pusher) url(n int) string {
	base := p.prefix
	op := strconv.Itoa(int(p.cfg.Op))
	r := p.recs[n]
	switch p.cfg.Push {
	case PushRoom:
		return base + "/goim/push/room?operation=" + op + "&type=" + RoomType + "&room=" + RoomPrefix + strconv.Itoa(int(r.target))
	case PushMid:
		return base + "/goim/push/mids?operation=" + op + "&mids=" + strconv.FormatUint(uint64(r.target), 10)
	default:
		u := base + "/goim/push/all?operation=" + op
		if p.cfg.Speed > 0 {
			u += "&speed=" + strconv.Itoa(p.cfg.Speed)
		}
		return u
	}
}

func (p *pusher) expect(n int) int32 {
	switch p.cfg.Push {
	case PushRoom:
		return p.members[p.recs[n].target]
	case PushMid:
		if len(p.mids) == 0 {
			return 0
		}
		return 1
	default:
		return p.total
	}
}

// run sends the schedule; it returns when every push was answered (or
// failed), early if ctx ends (pushes not yet sent are dropped from the
// schedule: recs is cut to what was scheduled).
func (p *pusher) run(ctx context.Context) {
	lanes := make([]chan int, p.cfg.HTTPConns)
	var wg sync.WaitGroup
	for i := range lanes {
		lanes[i] = make(chan int, 4096)
		wg.Go(func() { p.worker(ctx, lanes[i]) })
	}
	p.start = time.Now()
	p.lastAnswer.Store(p.start.UnixNano())
	n := 0
schedule:
	for ; n < len(p.recs); n++ {
		due := p.start.Add(time.Duration(n) * p.period)
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				break schedule
			}
		}
		select {
		case lanes[p.lane(n)] <- n:
			p.scheduled.Add(1)
		case <-ctx.Done():
			break schedule
		}
	}
	p.schedEnd = time.Now()
	for _, l := range lanes {
		close(l)
	}
	wg.Wait()
	p.recs = p.recs[:n]
}

// worker is one lane: it sends the pushes queued to it in order. Once ctx
// ends (the run stops) what is still queued is dropped unsent.
func (p *pusher) worker(ctx context.Context, q <-chan int) {
	var rest Histogram
	hc := &httpConn{addr: p.addr, host: p.host, timeout: p.cfg.Timeout}
	defer func() {
		hc.close()
		p.mu.Lock()
		p.rest.Merge(&rest)
		p.mu.Unlock()
	}()
	body := make([]byte, p.cfg.Size)
	var sentAt time.Time
	for n := range q {
		if ctx.Err() != nil {
			continue
		}
		r := &p.recs[n]
		due := p.start.Add(time.Duration(n) * p.period)
		putStamp(body, Stamp{PushID: uint32(n), StreamSeq: r.seq, Target: r.target})
		for i := stampLen; i < len(body); i++ {
			body[i] = padByte
		}
		p.sent.Add(1)
		status, err := hc.post(p.url(n), body, func(b []byte) {
			sentAt = time.Now()
			// Latency runs from when the push was due, not from when it
			// went out (as wrk2 measures): a push held up behind a slow
			// answer on its lane, or by this process falling behind,
			// counts that wait too, rather than hiding a server stall
			// (coordinated omission).
			setSent(b, due.UnixNano())
			if lag := sentAt.Sub(due); int64(lag) > p.lagMax.Load() {
				p.lagMax.Store(int64(lag))
			}
			if sentAt.UnixNano() > p.lastSend.Load() {
				p.lastSend.Store(sentAt.UnixNano())
			}
		})
		if err != nil {
			p.transportErr.Add(1)
			p.consecErr.Add(1)
			p.noteErr(classify("push", err))
			continue
		}
		rest.Record(int64(time.Since(sentAt)))
		p.lastAnswer.Store(time.Now().UnixNano())
		p.consecErr.Store(0)
		r.status = status
		if status != http.StatusOK {
			p.non200.Add(1)
			p.noteErr("push: HTTP " + strconv.Itoa(status))
			continue
		}
		p.ok.Add(1)
		r.expected = p.expect(n)
		p.expectedOK.Add(int64(r.expected))
	}
}

func (p *pusher) noteErr(kind string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.errKinds[kind]; ok || len(p.errKinds) < maxErrorKinds {
		p.errKinds[kind]++
	}
}

// achievedRate is sent pushes over the span the schedule took: n pushes on
// time span n periods (the last one's period included).
func (p *pusher) achievedRate() float64 {
	end := p.schedEnd
	if last := time.Unix(0, p.lastSend.Load()); last.After(end) {
		end = last
	}
	span := end.Sub(p.start) + p.period
	if span <= 0 {
		return 0
	}
	return float64(p.sent.Load()) / span.Seconds()
}

// unreachable says why the REST API looks gone, or "": pushes in a row got
// no answer, or none answered for two --timeout periods since one failed.
func (p *pusher) unreachable() string {
	n := p.consecErr.Load()
	if n == 0 {
		return ""
	}
	if n >= maxConsecutiveHTTPErrors {
		return strconv.FormatInt(n, 10) + " pushes in a row got no answer"
	}
	if silent := time.Since(time.Unix(0, p.lastAnswer.Load())); silent >= 2*p.cfg.Timeout {
		return "no answer for " + silent.Round(time.Second).String()
	}
	return ""
}
