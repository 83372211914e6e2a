package cloud

import (
	"net"
	"time"
)

// handshakeIdle is how long a handshake worker waits for the next
// connection before it exits.
const handshakeIdle = 10 * time.Second

// handshake is one accepted connection and what serves it.
type handshake struct {
	c     net.Conn
	serve func(net.Conn)
}

// handshakers runs connection handshakes on reused goroutines. A handshake
// (the HTTP upgrade, the auth JSON, the session store) grows a goroutine's
// stack to several KiB; growing a fresh goroutine's for every connect was
// ~7% of a connect's CPU. An authenticated session then lives on a
// goroutine of its own with a small stack (see serveConn), so the workers'
// big stacks are a few, not one per connection.
type handshakers struct {
	jobs chan handshake // unbuffered: a send succeeds only if a worker waits
	quit chan struct{}  // closed by Shutdown: idle workers exit
	done func()         // called after each handshake (the hub's wg)
}

func newHandshakers(done func()) *handshakers {
	return &handshakers{jobs: make(chan handshake), quit: make(chan struct{}), done: done}
}

// run serves c on an idle worker, or on a new one if none is idle.
func (p *handshakers) run(c net.Conn, serve func(net.Conn)) {
	j := handshake{c: c, serve: serve}
	select {
	case p.jobs <- j:
	default:
		go p.work(j)
	}
}

func (p *handshakers) work(j handshake) {
	idle := time.NewTimer(handshakeIdle)
	defer idle.Stop()
	for {
		j.serve(j.c)
		p.done()
		idle.Reset(handshakeIdle)
		select {
		case j = <-p.jobs:
		case <-idle.C:
			return
		case <-p.quit:
			return
		}
	}
}

// stop makes idle workers exit; busy ones exit after their handshake.
func (p *handshakers) stop() {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
}
