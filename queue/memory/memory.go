package memory

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue"
)

const (
	// shardCount is the number of internal partitions; it bounds how many
	// handler calls one Consume runs at once.
	shardCount = 16
	minBackoff = 10 * time.Millisecond
	maxBackoff = time.Second
)

// Queue is a bounded in-memory queue; see the package documentation.
type Queue struct {
	size int
	done chan struct{} // closed by Close

	mu      sync.Mutex // guards closed, waiting and every shard's msgs
	closed  bool
	waiting int

	closeOnce sync.Once
	shards    [shardCount]shard
}

// shard is one ordered partition of the queue.
type shard struct {
	msgs  []*pb.PushMsg // FIFO from msgs[head]; guarded by Queue.mu
	head  int           // guarded by Queue.mu
	ready chan struct{} // cap 1: signalled by Publish, awaited by the token holder
	token chan struct{} // cap 1: held by the one worker serving this shard
}

var (
	_ queue.Producer = (*Queue)(nil)
	_ queue.Consumer = (*Queue)(nil)
)

// New returns an empty queue that holds at most size waiting messages; a size
// below 1 is taken as 1.
func New(size int) *Queue {
	q := &Queue{size: max(size, 1), done: make(chan struct{})}
	for i := range q.shards {
		s := &q.shards[i]
		s.ready = make(chan struct{}, 1)
		s.token = make(chan struct{}, 1)
		s.token <- struct{}{}
	}
	return q
}

// Publish enqueues m without blocking. It returns an error wrapping
// queue.ErrFull when the queue is full and queue.ErrClosed after Close. The
// queue keeps m itself: the caller must not modify m afterwards.
func (q *Queue) Publish(ctx context.Context, m *pb.PushMsg) error {
	if m == nil {
		return errors.New("queue/memory: publish nil message")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("queue/memory: publish: %w", err)
	}
	s := &q.shards[shardOf(queue.Key(m))]
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return queue.ErrClosed
	case q.waiting >= q.size:
		q.mu.Unlock()
		return fmt.Errorf("queue/memory: %d messages waiting: %w", q.size, queue.ErrFull)
	}
	s.msgs = append(s.msgs, m)
	q.waiting++
	q.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default: // a wake-up is already pending
	}
	return nil
}

// Consume hands messages to h until ctx ends or Close is called, then waits
// for the handler calls in flight and returns nil. Concurrent Consume calls
// share the messages.
func (q *Queue) Consume(ctx context.Context, h queue.Handler) error {
	if h == nil {
		return errors.New("queue/memory: consume with nil handler")
	}
	var wg sync.WaitGroup
	for i := range q.shards {
		wg.Go(func() { q.work(ctx, &q.shards[i], h) })
	}
	wg.Wait()
	return nil
}

// Close stops every Consume call and makes later Publish calls fail with
// queue.ErrClosed. It is idempotent and always returns nil.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		close(q.done)
	})
	return nil
}

// Len returns the number of messages waiting, including one being handled.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting
}

// work serves s for one Consume call: it takes the shard's token, delivers
// one message, gives the token back (so workers of other Consume calls get
// their turn) and repeats until ctx ends or the queue closes.
func (q *Queue) work(ctx context.Context, s *shard, h queue.Handler) {
	for {
		select {
		case <-s.token:
		case <-ctx.Done():
			return
		case <-q.done:
			return
		}
		ok := q.serve(ctx, s, h)
		s.token <- struct{}{}
		if !ok {
			return
		}
		// Let others run between messages: a consumer whose shard stays
		// busy never blocks, and on one core it would otherwise keep the
		// processor for a whole time slice (10 ms) while the REST handlers
		// feeding it wait (room push p99 28 ms -> 3 ms under wrk).
		runtime.Gosched()
	}
}

// serve waits for the head message of s and offers it to h until h accepts
// it; only then is the message removed. It reports false, leaving the message
// in place, when ctx ends or the queue closes. The caller holds s.token.
func (q *Queue) serve(ctx context.Context, s *shard, h queue.Handler) bool {
	m, ok := q.head(s)
	for m == nil {
		if !ok {
			return false
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return false
		case <-q.done:
			return false
		}
		m, ok = q.head(s)
	}
	backoff := minBackoff
	for {
		if ctx.Err() != nil {
			return false
		}
		if err := h(ctx, m, func() {}); err == nil {
			q.pop(s)
			return true
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		case <-q.done:
			t.Stop()
			return false
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// head returns the first message of s, or nil if s is empty; ok is false once
// the queue is closed.
func (q *Queue) head(s *shard) (m *pb.PushMsg, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, false
	}
	if s.head == len(s.msgs) {
		return nil, true
	}
	return s.msgs[s.head], true
}

// pop removes the head message of s once it has been accepted.
func (q *Queue) pop(s *shard) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if s.head == len(s.msgs) { // cannot happen: only the token holder pops
		return
	}
	s.msgs[s.head] = nil // let the message be collected
	s.head++
	q.waiting--
	switch {
	case s.head == len(s.msgs): // empty: reuse the backing array from the start
		s.msgs, s.head = s.msgs[:0], 0
	case s.head >= 1024 && 2*s.head >= len(s.msgs): // mostly consumed: compact
		n := copy(s.msgs, s.msgs[s.head:])
		clear(s.msgs[n:])
		s.msgs, s.head = s.msgs[:n], 0
	}
}

// shardOf maps a key to a shard with 32-bit FNV-1a.
func shardOf(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % shardCount)
}
