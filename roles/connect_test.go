package roles

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue"
)

// fakeProducer counts publishes and closes.
type fakeProducer struct{ published, closed atomic.Int32 }

func (p *fakeProducer) Publish(context.Context, *pb.PushMsg) error {
	p.published.Add(1)
	return nil
}

func (p *fakeProducer) Close() error {
	p.closed.Add(1)
	return nil
}

// flakyOpen fails with a queue.ErrUnavailable error until up is set.
func flakyOpen(up *atomic.Bool, p *fakeProducer, calls *atomic.Int32) func(context.Context) (queue.Producer, error) {
	return func(context.Context) (queue.Producer, error) {
		n := calls.Add(1)
		if !up.Load() {
			return nil, fmt.Errorf("dial attempt %d: %w", n, queue.ErrUnavailable)
		}
		return p, nil
	}
}

func TestRetryingProducer(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	var up atomic.Bool
	var calls atomic.Int32
	fp := &fakeProducer{}
	r, err := connectRetrying(context.Background(), zap.New(core), "kafka producer", flakyOpen(&up, fp, &calls), unavailable)
	if err != nil {
		t.Fatal(err)
	}
	p := retryingProducer{r}
	err = p.Publish(context.Background(), &pb.PushMsg{})
	if !errors.Is(err, queue.ErrUnavailable) || !errors.Is(err, errNotConnected) {
		t.Fatalf("Publish before connecting: %v, want ErrUnavailable and not connected", err)
	}
	if r.pending() == nil {
		t.Error("pending() = nil before connecting")
	}
	waitFor(t, "a retry", func() bool { return calls.Load() >= 2 })
	up.Store(true)
	waitFor(t, "the producer to connect", func() bool { return r.pending() == nil })
	if err := p.Publish(context.Background(), &pb.PushMsg{}); err != nil || fp.published.Load() != 1 {
		t.Fatalf("Publish once connected: %v, %d published", err, fp.published.Load())
	}
	if n := len(logs.FilterMessage("backend unreachable, retrying").All()); n < 1 {
		t.Errorf("%d retry warnings, want at least one", n)
	}
	if n := len(logs.FilterMessage("backend connected").All()); n != 1 {
		t.Errorf("%d 'backend connected' logs, want 1", n)
	}
	if err := r.Close(); err != nil || fp.closed.Load() != 1 {
		t.Errorf("Close: %v, producer closed %d times", err, fp.closed.Load())
	}
}

func TestRetryingConnectsAtOnceWhenUp(t *testing.T) {
	var up atomic.Bool
	up.Store(true)
	var calls atomic.Int32
	fp := &fakeProducer{}
	r, err := connectRetrying(context.Background(), zap.NewNop(), "kafka producer", flakyOpen(&up, fp, &calls), unavailable)
	if err != nil || r.pending() != nil {
		t.Fatalf("connect with the backend up: %v, pending %v", err, r.pending())
	}
	if err := r.Close(); err != nil || fp.closed.Load() != 1 {
		t.Errorf("Close: %v, closed %d", err, fp.closed.Load())
	}
}

// TestRetryingSlowFirstAttempt: a first attempt that hangs (a broker that
// does not answer) does not hold the start: the client answers "not
// connected" meanwhile and is taken into use when the attempt succeeds.
func TestRetryingSlowFirstAttempt(t *testing.T) {
	for _, firstFails := range []bool{false, true} {
		release := make(chan struct{})
		var calls atomic.Int32
		fp := &fakeProducer{}
		open := func(ctx context.Context) (queue.Producer, error) {
			if calls.Add(1) == 1 {
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				if firstFails {
					return nil, queue.ErrUnavailable
				}
			}
			return fp, nil
		}
		core, logs := observer.New(zapcore.InfoLevel)
		started := make(chan *retrying[queue.Producer], 1)
		go func() {
			r, err := connectRetrying(context.Background(), zap.New(core), "kafka producer", open, unavailable)
			if err != nil {
				t.Error(err)
			}
			started <- r
		}()
		var r *retrying[queue.Producer]
		select {
		case r = <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the start waited for a first attempt that hangs")
		}
		if err := r.pending(); !errors.Is(err, errNotConnected) || !errors.Is(err, errFirstAttempt) {
			t.Errorf("pending during the first attempt: %v", err)
		}
		if n := len(logs.FilterMessage("backend slow to answer, starting without it").All()); n != 1 {
			t.Errorf("%d slow-backend warnings, want 1", n)
		}
		close(release)
		waitFor(t, "the producer to connect", func() bool { return r.pending() == nil })
		if want := map[bool]int32{false: 1, true: 2}[firstFails]; calls.Load() != want {
			t.Errorf("firstFails=%v: %d attempts, want %d", firstFails, calls.Load(), want)
		}
		if err := r.Close(); err != nil || fp.closed.Load() != 1 {
			t.Errorf("Close: %v, closed %d", err, fp.closed.Load())
		}
	}
}

// TestRetryingStopWhileFirstAttemptHangs: Close ends a first attempt still
// under way.
func TestRetryingStopWhileFirstAttemptHangs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a signal while starting: connectRetrying does not wait
	r, err := connectRetrying(ctx, zap.NewNop(), "kafka producer", func(ctx context.Context) (queue.Producer, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}, unavailable)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the hanging first attempt")
	}
}

// TestRetryingLateBadConfig: a first attempt that fails for good after the
// start went on is not retried: logged once, and named by pending.
func TestRetryingLateBadConfig(t *testing.T) {
	bad := errors.New("queue/kafka: bad version")
	release := make(chan struct{})
	var calls atomic.Int32
	core, logs := observer.New(zapcore.InfoLevel)
	r, err := connectRetrying(context.Background(), zap.New(core), "kafka producer", func(context.Context) (queue.Producer, error) {
		calls.Add(1)
		<-release
		return nil, bad
	}, unavailable)
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	waitFor(t, "the error logged", func() bool { return logs.FilterMessage("backend cannot be used: retrying will not help").Len() == 1 })
	if err := r.pending(); !errors.Is(err, bad) {
		t.Errorf("pending: %v, want it to name %v", err, bad)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

func TestRetryingBadConfigFailsAtOnce(t *testing.T) {
	bad := errors.New("queue/kafka: bad version")
	_, err := connectRetrying(context.Background(), zap.NewNop(), "kafka producer",
		func(context.Context) (queue.Producer, error) { return nil, bad }, unavailable)
	if !errors.Is(err, bad) {
		t.Fatalf("connectRetrying with a bad config: %v, want it at once", err)
	}
}

func TestRetryingConsumerWaits(t *testing.T) {
	var up atomic.Bool
	var calls atomic.Int32
	open := func(context.Context) (queue.Consumer, error) {
		calls.Add(1)
		if !up.Load() {
			return nil, queue.ErrUnavailable
		}
		return fakeConsumer{}, nil
	}

	// Consume returns nil when its ctx ends before the consumer connects.
	r, err := connectRetrying(context.Background(), zap.NewNop(), "kafka consumer", open, unavailable)
	if err != nil {
		t.Fatal(err)
	}
	c := retryingConsumer{r}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Consume(ctx, nil); err != nil {
		t.Errorf("Consume ended by its ctx: %v", err)
	}
	// Close while Consume waits ends the wait.
	done := make(chan error, 1)
	go func() { done <- c.Consume(context.Background(), nil) }()
	time.Sleep(50 * time.Millisecond)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Consume after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Consume still waiting after Close")
	}

	// Once the backend answers, Consume hands over to the real consumer.
	r, err = connectRetrying(context.Background(), zap.NewNop(), "kafka consumer", open, unavailable)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	up.Store(true)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := (retryingConsumer{r}).Consume(ctx, nil); !errors.Is(err, errConsumed) {
		t.Errorf("Consume once connected: %v, want the real consumer's result", err)
	}
}

var errConsumed = errors.New("consumed")

type fakeConsumer struct{}

func (fakeConsumer) Consume(context.Context, queue.Handler) error { return errConsumed }
func (fakeConsumer) Close() error                                 { return nil }

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}
