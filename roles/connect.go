package roles

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue"
)

// Backoff between connection attempts to a backend that is down.
const (
	connectMinBackoff = 250 * time.Millisecond
	connectMaxBackoff = 5 * time.Second
)

// errNotConnected is what a backend client still connecting answers.
var errNotConnected = errors.New("not connected yet")

// retrying holds a backend client that connects in the background, so a
// role starts, and answers "unavailable", while a server it needs is still
// down, and takes the server into use as soon as it answers. Safe for
// concurrent use.
type retrying[T io.Closer] struct {
	what   string
	ready  chan struct{} // closed once v is set
	done   chan struct{} // closed when the connect loop has ended
	cancel context.CancelFunc
	v      T

	mu      sync.Mutex
	lastErr error // the latest failure, while not connected
}

// firstAttemptWait bounds how long a start waits for the first attempt: a
// broker that does not answer (a dial that times out after seconds) must
// not hold the listeners of a role that serves without it.
const firstAttemptWait = time.Second

// errFirstAttempt is the failure pending names while the first attempt is
// still under way.
var errFirstAttempt = errors.New("first attempt still under way")

// connectRetrying makes one attempt to open what and waits up to
// firstAttemptWait for it (so a healthy start is no slower than before),
// then keeps trying in the background with backoff until it succeeds or
// Close is called. Failures that retrying cannot cure (retryable reports
// false: a bad config) are returned at once.
func connectRetrying[T io.Closer](ctx context.Context, log *zap.Logger, what string,
	open func(context.Context) (T, error), retryable func(error) bool) (*retrying[T], error) {
	lctx, cancel := context.WithCancel(context.Background())
	r := &retrying[T]{what: what, ready: make(chan struct{}), done: make(chan struct{}), cancel: cancel, lastErr: errFirstAttempt}
	type result struct {
		v   T
		err error
	}
	first := make(chan result, 1)
	go func() {
		v, err := open(lctx)
		first <- result{v, err}
	}()
	t := time.NewTimer(firstAttemptWait)
	defer t.Stop()
	select {
	case res := <-first:
		switch {
		case res.err == nil:
			r.v = res.v
			close(r.ready)
			close(r.done)
		case !retryable(res.err):
			cancel()
			return nil, res.err
		default:
			r.lastErr = res.err
			go r.loop(lctx, log, open, res.err)
		}
		return r, nil
	case <-t.C:
		log.Warn("backend slow to answer, starting without it", zap.String("backend", what), zap.Duration("waited", firstAttemptWait))
	case <-ctx.Done(): // stopping while starting: Close ends the attempt
	}
	go func() {
		res := <-first
		if res.err == nil {
			r.v = res.v
			close(r.ready)
			close(r.done)
			log.Info("backend connected", zap.String("backend", what), zap.Int("attempts", 1))
			return
		}
		r.mu.Lock()
		r.lastErr = res.err
		r.mu.Unlock()
		if lctx.Err() != nil {
			close(r.done) // closed while the attempt ran: nothing to retry
			return
		}
		if !retryable(res.err) {
			// Too late to fail the start: say so once; readiness and the
			// 503s name the error until a restart with a fixed config.
			log.Error("backend cannot be used: retrying will not help", zap.String("backend", what), zap.Error(res.err))
			close(r.done)
			return
		}
		r.loop(lctx, log, open, res.err)
	}()
	return r, nil
}

func (r *retrying[T]) loop(ctx context.Context, log *zap.Logger, open func(context.Context) (T, error), err error) {
	defer close(r.done)
	backoff := connectMinBackoff
	for attempt := 1; ; attempt++ {
		log.Warn("backend unreachable, retrying", zap.String("backend", r.what),
			zap.Int("attempt", attempt), zap.Duration("retry_in", backoff), zap.Error(err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, connectMaxBackoff)
		var v T
		if v, err = open(ctx); err == nil {
			r.v = v
			close(r.ready)
			log.Info("backend connected", zap.String("backend", r.what), zap.Int("attempts", attempt+1))
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		r.lastErr = err
		r.mu.Unlock()
	}
}

// get returns the client, or an error saying why there is none yet.
func (r *retrying[T]) get() (T, error) {
	select {
	case <-r.ready:
		return r.v, nil
	default:
		var zero T
		return zero, r.pending()
	}
}

// wait returns the client once it is connected, or an error once ctx ends or
// Close is called first.
func (r *retrying[T]) wait(ctx context.Context) (T, error) {
	var zero T
	select {
	case <-r.ready:
		return r.v, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-r.done:
		select {
		case <-r.ready:
			return r.v, nil
		default:
			return zero, fmt.Errorf("%s: %w", r.what, queue.ErrClosed)
		}
	}
}

// pending returns nil once connected, and otherwise an error naming the
// backend and its latest failure.
func (r *retrying[T]) pending() error {
	select {
	case <-r.ready:
		return nil
	default:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Errorf("%s: %w: %w", r.what, errNotConnected, r.lastErr)
}

// Close stops connecting and closes the client if it was connected.
func (r *retrying[T]) Close() error {
	r.cancel()
	<-r.done
	select {
	case <-r.ready:
		return r.v.Close()
	default:
		return nil
	}
}

// retryingProducer publishes through a producer that may still be
// connecting; until it is, Publish answers queue.ErrUnavailable (a 503).
type retryingProducer struct {
	*retrying[queue.Producer]
}

func (p retryingProducer) Publish(ctx context.Context, m *pb.PushMsg) error {
	v, err := p.get()
	if err != nil {
		if errors.Is(err, queue.ErrUnavailable) {
			return err
		}
		return fmt.Errorf("%w: %w", queue.ErrUnavailable, err)
	}
	return v.Publish(ctx, m)
}

// retryingConsumer consumes through a consumer that may still be
// connecting: Consume waits for it.
type retryingConsumer struct {
	*retrying[queue.Consumer]
}

func (c retryingConsumer) Consume(ctx context.Context, h queue.Handler) error {
	v, err := c.wait(ctx)
	if err != nil {
		return nil // ended or closed before the consumer connected
	}
	return v.Consume(ctx, h)
}
