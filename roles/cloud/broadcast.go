package cloud

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/imcloud/imcloud/transport"
	"github.com/imcloud/imcloud/transport/ws"
)

// Broadcasts.
//
// A broadcast goes to every session that accepts its op. An unpaced one is
// written by the caller at once (fanOut). A paced one (speed > 0 sessions a
// second) runs in the background, and the broadcasts that arrive while one
// is under way wait behind it, paced or not, so every session receives this
// node's broadcasts in the order they arrived: the queue keys broadcasts by
// operation for that order, and a broadcast must not overtake a slow one
// before it.

// maxQueuedBroadcasts bounds the broadcasts waiting behind a paced one
// (each holds its frame, up to the message limit); beyond it Broadcast
// refuses with ErrBroadcastsQueued and the job retries.
const maxQueuedBroadcasts = 256

// ErrBroadcastsQueued is Broadcast's refusal when maxQueuedBroadcasts wait.
var ErrBroadcastsQueued = errors.New("cloud: too many broadcasts waiting behind paced ones")

// broadcasts is the hub's queue of broadcasts that wait for a paced one.
type broadcasts struct {
	mu      sync.Mutex
	queue   []queuedBroadcast
	running bool // a goroutine is working through queue (runBroadcasts)
}

type queuedBroadcast struct {
	op    int32
	out   transport.Out
	speed int
}

// Broadcast sends frame to every session that accepts op and returns how
// many do. With speed > 0 it paces itself to that many sessions a second.
// A paced broadcast, and any broadcast that arrives while one is under way,
// runs in the background, in arrival order, until done or ctx ends.
func (h *Hub) Broadcast(ctx context.Context, op int32, frame []byte, speed int) (int, error) {
	out := transport.Out{Data: frame, Push: true, WSMessage: ws.PushMessage(frame)}
	b := &h.bcast
	b.mu.Lock()
	if !b.running && speed <= 0 {
		b.mu.Unlock()
		return h.broadcastNow(op, out), nil
	}
	if len(b.queue) >= maxQueuedBroadcasts {
		b.mu.Unlock()
		return 0, ErrBroadcastsQueued
	}
	b.queue = append(b.queue, queuedBroadcast{op: op, out: out, speed: max(speed, 0)})
	if !b.running {
		b.running = true
		go h.runBroadcasts(ctx)
	}
	b.mu.Unlock()
	return h.accepting(op), nil
}

// broadcastNow queues out to every session that accepts op, over all
// cores, and returns how many took it.
func (h *Hub) broadcastNow(op int32, out transport.Out) int {
	n := h.fanOut(func() int { return int(h.conns.Load()) }, func(b *bucket) int {
		n := 0
		b.mu.RLock()
		for _, s := range b.sessions {
			if s.Accepts(op) && s.send(out) {
				n++
			}
		}
		b.mu.RUnlock()
		return n
	})
	h.metrics.Deliveries.WithLabelValues("broadcast").Add(float64(n))
	return n
}

// accepting counts the sessions that accept op.
func (h *Hub) accepting(op int32) int {
	n := 0
	for _, b := range h.buckets {
		b.mu.RLock()
		for _, s := range b.sessions {
			if s.Accepts(op) {
				n++
			}
		}
		b.mu.RUnlock()
	}
	return n
}

// runBroadcasts works through the queue in order until it is empty or ctx
// ends (what is left then is dropped: the node is shutting down).
func (h *Hub) runBroadcasts(ctx context.Context) {
	b := &h.bcast
	for {
		b.mu.Lock()
		if len(b.queue) == 0 || ctx.Err() != nil {
			clear(b.queue)
			b.queue, b.running = b.queue[:0], false
			b.mu.Unlock()
			return
		}
		next := b.queue[0]
		b.queue[0] = queuedBroadcast{}
		b.queue = b.queue[1:]
		b.mu.Unlock()
		if next.speed == 0 {
			h.broadcastNow(next.op, next.out)
		} else {
			h.pacedBroadcast(ctx, next.op, next.out, next.speed)
		}
	}
}

// pacedBroadcast sends out to the sessions that accept op at speed sessions
// a second, one bucket at a time, so it holds a bucket's worth of session
// pointers rather than the node's.
func (h *Hub) pacedBroadcast(ctx context.Context, op int32, out transport.Out, speed int) {
	interval := time.Second / time.Duration(speed)
	next := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var targets []*Session
	for _, bk := range h.buckets {
		targets = targets[:0]
		bk.mu.RLock()
		for _, s := range bk.sessions {
			if s.Accepts(op) {
				targets = append(targets, s)
			}
		}
		bk.mu.RUnlock()
		for i, s := range targets {
			targets[i] = nil
			if d := time.Until(next); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
			next = next.Add(interval)
			if s.send(out) {
				h.metrics.Deliveries.WithLabelValues("broadcast").Inc()
			}
		}
	}
}
