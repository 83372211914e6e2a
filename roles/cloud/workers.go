package cloud

import (
	"net"
	"time"
)

// workerIdle is how long a worker waits for its next job before it exits.
const workerIdle = 10 * time.Second

// job is one accepted connection and what serves it (a handshake), or a
// call.
type job struct {
	c     net.Conn
	serve func(net.Conn)
	call  func()
}

// workers runs connection handshakes and the session readers' store calls
// on reused goroutines. Both need deep stacks (the HTTP upgrade, the auth
// JSON, the session store's client): growing a fresh goroutine's stack for
// every connect was ~7% of a connect's CPU, and a session reader that made
// a store call itself would keep the grown stack for the connection's life
// (see runSession). The workers' big stacks are a few, not one per
// connection.
type workers struct {
	jobs chan job      // unbuffered: a send succeeds only if a worker waits
	quit chan struct{} // closed by Shutdown: idle workers exit
	done func()        // called after each handshake (the hub's wg)
}

func newWorkers(done func()) *workers {
	return &workers{jobs: make(chan job), quit: make(chan struct{}), done: done}
}

// run serves c on an idle worker, or on a new one if none is idle.
func (p *workers) run(c net.Conn, serve func(net.Conn)) {
	p.start(job{c: c, serve: serve})
}

// callOn runs fn on a worker and returns once fn has returned.
func (p *workers) callOn(fn func()) {
	done := make(chan struct{})
	p.start(job{call: func() { fn(); close(done) }})
	<-done
}

func (p *workers) start(j job) {
	select {
	case p.jobs <- j:
	default:
		go p.work(j)
	}
}

func (p *workers) work(j job) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		if j.call != nil {
			j.call()
		} else {
			j.serve(j.c)
			p.done()
		}
		idle.Reset(workerIdle)
		select {
		case j = <-p.jobs:
		case <-idle.C:
			return
		case <-p.quit:
			return
		}
	}
}

// stop makes idle workers exit; busy ones exit after their job. Later jobs
// still run, each on a goroutine of its own.
func (p *workers) stop() {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
}
