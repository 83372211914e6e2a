package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
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
	client  *http.Client
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
	p.client = &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxConnsPerHost:     cfg.HTTPConns,
			MaxIdleConnsPerHost: cfg.HTTPConns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
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

func (p *pusher) url(n int) string {
	base := strings.TrimRight(p.cfg.HTTP, "/")
	op := strconv.Itoa(int(p.cfg.Op))
	r := p.recs[n]
	switch p.cfg.Push {
	case PushRoom:
		return base + "/goim/push/room?operation=" + op + "&type=" + RoomType + "&room=" + RoomPrefix + strconv.Itoa(int(r.target))
	case PushMid:
		return base + "/goim/push/mids?operation=" + op + "&mids=" + strconv.FormatUint(uint64(r.target), 10)
	default:
		return base + "/goim/push/all?operation=" + op
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
		wg.Go(func() { p.worker(lanes[i]) })
	}
	p.start = time.Now()
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
	for _, l := range lanes {
		close(l)
	}
	wg.Wait()
	p.recs = p.recs[:n]
}

func (p *pusher) worker(q <-chan int) {
	var rest Histogram
	defer func() {
		p.mu.Lock()
		p.rest.Merge(&rest)
		p.mu.Unlock()
	}()
	for n := range q {
		r := &p.recs[n]
		body := newMessage(p.cfg.Size, Stamp{PushID: uint32(n), StreamSeq: r.seq, Target: r.target})
		req, err := http.NewRequest(http.MethodPost, p.url(n), nil)
		if err != nil {
			p.noteErr(err.Error())
			continue
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		now := time.Now()
		if lag := now.Sub(p.start.Add(time.Duration(n) * p.period)); int64(lag) > p.lagMax.Load() {
			p.lagMax.Store(int64(lag))
		}
		setSent(body, now.UnixNano())
		if now.UnixNano() > p.lastSend.Load() {
			p.lastSend.Store(now.UnixNano())
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		p.sent.Add(1)
		resp, err := p.client.Do(req)
		if err != nil {
			p.transportErr.Add(1)
			p.consecErr.Add(1)
			p.noteErr(classify("push", err))
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		rest.Record(int64(time.Since(now)))
		p.consecErr.Store(0)
		r.status = resp.StatusCode
		if resp.StatusCode != http.StatusOK {
			p.non200.Add(1)
			p.noteErr("push: HTTP " + strconv.Itoa(resp.StatusCode))
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
