package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	nStripes      = 16
	maxErrorKinds = 20
	hbTick        = 100 * time.Millisecond
)

// pool holds the connections of one process: clients [lo, hi) of the run.
// One connect loop, the read loops (loop_linux.go) for every connection from
// its connect on (elsewhere: a goroutine per connection), one heartbeat
// goroutine.
type pool struct {
	cfg    Config
	lo, hi int
	op     int32
	tgts   []wsTarget // client i dials tgts[i % len]
	locals []*net.TCPAddr
	rate   float64
	maxErr int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	conns   []atomic.Pointer[conn] // index: client - lo; set while on a read loop
	loops   []*loop
	stripes [nStripes]stripe
	connLat atomicHist
	perPush []atomic.Int32

	nAttempted, nEstablished, nFailed, nClosed atomic.Int64
	closing                                    atomic.Bool
	stoppedEarly                               bool // written before connDone closes
	connectNanos                               int64
	began                                      time.Time
	lastHandshake                              atomic.Int64
	connDone                                   chan struct{}
	sem                                        chan struct{} // a slot per handshake under way

	mu        sync.Mutex
	errs      map[string]int64
	connected []bool // by client - lo, set on establishment, for the connected ranges

	cpuStart time.Duration
}

// newPool prepares clients [lo, hi); rate and conc are this pool's share of
// the run's connect rate and concurrency, maxErr its share of the failures
// that stop connecting (0: never).
func newPool(cfg Config, lo, hi int, rate float64, conc int, maxErr int64) (*pool, error) {
	p := &pool{
		cfg: cfg, lo: lo, hi: hi, op: cfg.Op, rate: rate, maxErr: maxErr,
		conns:     make([]atomic.Pointer[conn], hi-lo),
		perPush:   make([]atomic.Int32, cfg.pushCount()),
		connDone:  make(chan struct{}),
		sem:       make(chan struct{}, max(1, conc)),
		errs:      map[string]int64{},
		connected: make([]bool, hi-lo),
	}
	tgts, err := cfg.targets()
	if err != nil {
		return nil, err
	}
	for i := range tgts {
		if tgts[i].addr, err = net.ResolveTCPAddr("tcp", tgts[i].hostPort); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", tgts[i].hostPort, err)
		}
	}
	p.tgts = tgts
	for _, s := range cfg.SourceIPs {
		p.locals = append(p.locals, &net.TCPAddr{IP: net.ParseIP(s)})
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// start begins connecting and heartbeating; it returns at once.
func (p *pool) start() error {
	if err := p.startLoops(); err != nil {
		return err
	}
	p.began = time.Now()
	go p.connectAll()
	if p.cfg.Heartbeat > 0 {
		go p.heartbeats()
	}
	return nil
}

func (p *pool) connectAll() {
	defer close(p.connDone)
	sem := p.sem
	n := p.hi - p.lo
	for k := range n {
		if p.rate > 0 {
			due := p.began.Add(time.Duration(float64(k) / p.rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-p.ctx.Done():
				}
			}
		}
		select {
		case sem <- struct{}{}:
		case <-p.ctx.Done():
		}
		if p.ctx.Err() != nil {
			break
		}
		if p.maxErr > 0 && p.nFailed.Load() >= p.maxErr {
			<-sem
			p.stoppedEarly = true
			break
		}
		p.nAttempted.Add(1)
		p.launch(p.lo + k)
	}
	// Wait for the handshakes under way: each one holds a slot until it ends
	// (or the pool stops: handshakes in a stopped read loop never end).
	for range cap(sem) {
		select {
		case sem <- struct{}{}:
		case <-p.ctx.Done():
			return
		}
	}
	if last := p.lastHandshake.Load(); last > 0 {
		p.connectNanos = last - p.began.UnixNano()
	}
}

// newConn is client i, before its handshake.
func (p *pool) newConn(i int) *conn {
	c := &conn{p: p, idx: i, fd: -1, ws: p.cfg.Network == "ws", stripe: &p.stripes[i%nStripes]}
	switch p.cfg.Push {
	case PushRoom:
		c.target = uint32(p.cfg.roomOf(i))
	case PushMid:
		c.target = uint32(p.cfg.midOf(i))
	}
	c.t0 = time.Now()
	return c
}

// established accounts c's completed handshake (its AuthReply came at
// c.authAt) and frees its slot.
func (p *pool) established(c *conn) {
	c.est.Store(true)
	p.connLat.record(c.authAt-c.t0.UnixNano(), c.authAt)
	p.mu.Lock()
	p.connected[c.idx-p.lo] = true
	p.mu.Unlock()
	p.nEstablished.Add(1)
	p.lastHandshake.Store(c.authAt)
	<-p.sem
}

// handshakeFailed accounts c's failed handshake and frees its slot; c's
// socket is already closed.
func (p *pool) handshakeFailed(c *conn, err error) {
	p.nFailed.Add(1)
	p.lastHandshake.Store(time.Now().UnixNano())
	if p.ctx.Err() == nil {
		p.noteError(classify("connect", err))
	}
	<-p.sem
}

// heartbeats sends each connection an op-2 frame every cfg.Heartbeat,
// spread over the interval: connection j beats in tick slot j mod slots.
func (p *pool) heartbeats() {
	slots := max(1, int(p.cfg.Heartbeat/hbTick))
	t := time.NewTicker(hbTick)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		for j := n % slots; j < len(p.conns); j += slots {
			if c := p.conns[j].Load(); c != nil && c.est.Load() {
				c.heartbeat(p.cfg.Timeout)
			}
		}
	}
}

func (p *pool) countPush(id uint32) {
	if int(id) < len(p.perPush) {
		p.perPush[id].Add(1)
	} else {
		p.stripes[0].foreign.Add(1)
	}
}

func (p *pool) noteError(kind string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.errs[kind]; ok || len(p.errs) < maxErrorKinds {
		p.errs[kind]++
	} else {
		p.errs["(other kinds)"]++
	}
}

// markPush starts the push phase's CPU accounting.
func (p *pool) markPush() { p.cpuStart = selfCPU() }

// report snapshots the pool. final adds the per-push counts and the CPU
// used since markPush.
func (p *pool) report(final bool) Report {
	r := Report{
		Type:        "progress",
		CPUTotal:    int64(selfCPU()),
		Attempted:   p.nAttempted.Load(),
		Established: p.nEstablished.Load(),
		Failed:      p.nFailed.Load(),
		Closed:      p.nClosed.Load(),
	}
	select {
	case <-p.connDone:
		r.ConnectDone = true
		r.StoppedEarly = p.stoppedEarly
		r.ConnectNanos = p.connectNanos
	default:
	}
	var lat Histogram
	for i := range p.stripes {
		s := &p.stripes[i]
		r.LastRecv = max(r.LastRecv, s.lat.addTo(&lat))
		r.Dups += s.dups.Load()
		r.OutOfOrder += s.outOfOrder.Load()
		r.Stale += s.stale.Load()
		r.Misrouted += s.misrouted.Load()
		r.Foreign += s.foreign.Load()
		r.Other += s.other.Load()
		r.HBSent += s.hbSent.Load()
		r.HBReplies += s.hbReplies.Load()
	}
	r.Deliveries = int64(lat.N)
	r.Latency = lat.Sparse()
	var cl Histogram
	p.connLat.addTo(&cl)
	r.ConnectLat = cl.Sparse()
	p.mu.Lock()
	if len(p.errs) > 0 {
		r.Errors = make(map[string]int64, len(p.errs))
		for k, v := range p.errs {
			r.Errors[k] = v
		}
	}
	if r.ConnectDone {
		r.Connected = ranges(p.connected, p.lo)
	}
	p.mu.Unlock()
	if final {
		r.Type = "final"
		r.CPUNanos = int64(selfCPU() - p.cpuStart)
		r.PerPush = make([]int32, len(p.perPush))
		last := -1
		for i := range p.perPush {
			if r.PerPush[i] = p.perPush[i].Load(); r.PerPush[i] != 0 {
				last = i
			}
		}
		r.PerPush = r.PerPush[:last+1]
	}
	return r
}

// stop closes every connection and waits (bounded) for the goroutines.
// Connections still in their handshake end at the latest by --timeout.
func (p *pool) stop() {
	p.mu.Lock()
	p.closing.Store(true)
	p.mu.Unlock()
	p.cancel()
	p.stopLoops()
	for i := range p.conns {
		if c := p.conns[i].Load(); c != nil {
			c.closeFD()
		}
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// ranges turns a set of flags into [from, to) ranges of lo+index.
func ranges(set []bool, lo int) [][2]int {
	var out [][2]int
	for i := 0; i < len(set); {
		if !set[i] {
			i++
			continue
		}
		j := i
		for j < len(set) && set[j] {
			j++
		}
		out = append(out, [2]int{lo + i, lo + j})
		i = j
	}
	return out
}

// classify turns a connection error into a short kind without per-connection
// details (addresses, ports), so failures aggregate.
func classify(phase string, err error) string {
	var kind string
	var ne net.Error
	switch {
	case err == nil:
		kind = "closed"
	case errors.Is(err, syscall.ECONNREFUSED):
		kind = "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		kind = "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		kind = "no free local port (EADDRNOTAVAIL): add --source-ips"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		kind = "too many open files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		kind = "closed by the server (EOF)"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		kind = "timeout"
	case errors.Is(err, errWSClosed), errors.Is(err, errDisconnect):
		kind = err.Error()
	default:
		kind = err.Error()
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			kind = op.Op + ": " + op.Err.Error()
		}
		if len(kind) > 120 {
			kind = kind[:120]
		}
	}
	return fmt.Sprintf("%s: %s", phase, kind)
}
