package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/eapache/go-resiliency/breaker"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue"
)

// Producer publishes push messages to the topic; see the package
// documentation.
type Producer struct {
	cfg      Config
	log      *zap.Logger
	maxBytes int // the largest record sarama sends (Producer.MaxMessageBytes)

	// mu guards ap and closed; it is held for reading while a Publish
	// hands a message to ap. ap is replaced by renew.
	mu     sync.RWMutex
	ap     sarama.AsyncProducer
	closed bool

	closeOnce sync.Once
	routers   sync.WaitGroup // one route per sarama producer made, until its result channels are drained

	// A topic that went missing (deleted, or a broker that kept it only in
	// memory restarted) is created again, at most once per recreateEvery;
	// the sarama producer is replaced at most once per renewEvery.
	recreating, renewing throttled
}

// throttled runs a background task at most once per period, never two at
// once. Safe for concurrent use.
type throttled struct {
	running atomic.Bool
	mu      sync.Mutex
	last    time.Time // when the last run started
}

// start runs fn in a new goroutine unless a run is under way or the last
// one started within every.
func (t *throttled) start(every time.Duration, fn func()) {
	t.mu.Lock()
	due := time.Since(t.last) >= every
	if due {
		t.last = time.Now()
	}
	t.mu.Unlock()
	if !due || !t.running.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer t.running.Store(false)
		fn()
	}()
}

// renewEvery bounds how often the sarama producer is replaced (renew).
const renewEvery = 2 * time.Second

// recreateEvery bounds how often a missing topic is created again.
const recreateEvery = 5 * time.Second

var _ queue.Producer = (*Producer)(nil)

// NewProducer makes sure the topic exists (creating it with cfg.Partitions
// partitions) and connects a producer. Errors reaching the cluster wrap
// queue.ErrUnavailable.
func NewProducer(ctx context.Context, cfg Config, log *zap.Logger) (*Producer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	sc, err := cfg.producerConfig()
	if err != nil {
		return nil, fmt.Errorf("queue/kafka: producer config: %w", err)
	}
	if err := ensureTopic(ctx, cfg, log); err != nil {
		return nil, err
	}
	ap, err := sarama.NewAsyncProducer(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("queue/kafka: new producer: %w: %w", queue.ErrUnavailable, err)
	}
	p := &Producer{cfg: cfg, log: log, ap: ap, maxBytes: sc.Producer.MaxMessageBytes}
	p.routers.Add(1)
	go p.route(ap)
	return p, nil
}

// route hands every acknowledgement or failure of ap back to the Publish
// call waiting for it, until ap has shut down.
func (p *Producer) route(ap sarama.AsyncProducer) {
	defer p.routers.Done()
	succ, errs := ap.Successes(), ap.Errors()
	for succ != nil || errs != nil {
		select {
		case m, ok := <-succ:
			if !ok {
				succ = nil
				continue
			}
			deliver(m, nil)
		case e, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			deliver(e.Msg, e.Err)
		}
	}
}

// deliver reports err (nil: acked) to the Publish call that sent m.
func deliver(m *sarama.ProducerMessage, err error) {
	if m == nil {
		return
	}
	if res, ok := m.Metadata.(chan error); ok {
		res <- err // buffered: never blocks, even if Publish gave up
	}
}

// Publish marshals m, keys it with queue.Key and waits until every in-sync
// replica has it. It gives up after ctx ends or Config.PublishTimeout. Errors
// from the cluster (and the wait running out) wrap queue.ErrUnavailable;
// after Close it returns queue.ErrClosed.
func (p *Producer) Publish(ctx context.Context, m *pb.PushMsg) error {
	if m == nil {
		return errors.New("queue/kafka: publish nil message")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("queue/kafka: publish: %w", err)
	}
	value, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("queue/kafka: marshal push %q: %w", m.GetId(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	defer cancel()
	res := make(chan error, 1)
	msg := &sarama.ProducerMessage{
		Topic:    p.cfg.Topic,
		Key:      sarama.StringEncoder(queue.Key(m)),
		Value:    sarama.ByteEncoder(value),
		Metadata: res,
	}
	// Checked here, as sarama would, so that the answer says what is wrong
	// (sarama's is a configuration error).
	if size := max(msg.ByteSize(2), msg.ByteSize(1)); size > p.maxBytes {
		return fmt.Errorf("queue/kafka: publish push %q: %d bytes as a record, over the %d a record may have: %w",
			m.GetId(), size, p.maxBytes, queue.ErrTooLarge)
	}

	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return queue.ErrClosed
	}
	select {
	case p.ap.Input() <- msg: // p.ap stands while mu is held
	case <-ctx.Done():
		p.mu.RUnlock()
		return fmt.Errorf("queue/kafka: publish: producer busy: %w: %w", queue.ErrUnavailable, ctx.Err())
	}
	p.mu.RUnlock()

	select {
	case err := <-res:
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			p.recreateTopic()
		}
		if errors.Is(err, breaker.ErrBreakerOpen) {
			p.renew()
		}
		return publishError(err)
	case <-ctx.Done():
		return fmt.Errorf("queue/kafka: publish: no ack: %w: %w", queue.ErrUnavailable, ctx.Err())
	}
}

// recreateTopic creates the topic again in the background, unless that is
// under way or was tried within recreateEvery. Publishes fail meanwhile
// (503 upstream) and succeed once the topic is back.
func (p *Producer) recreateTopic() {
	p.recreating.start(recreateEvery, func() {
		p.log.Warn("kafka topic missing, creating it again", zap.String("topic", p.cfg.Topic))
		ctx, cancel := context.WithTimeout(context.Background(), recreateEvery)
		defer cancel()
		if err := ensureTopic(ctx, p.cfg, p.log); err != nil {
			p.log.Warn("kafka topic could not be created again", zap.String("topic", p.cfg.Topic), zap.Error(err))
		}
	})
}

// renew replaces the sarama producer once the cluster answers again.
// sarama keeps a circuit breaker per partition: three failed leader lookups
// open it for 10 s, and a failed try after that opens it for another 10 s,
// so a partition that took publishes while the cluster was down went on
// failing ("circuit breaker is open") for up to 10 s after it was back, and
// hid a topic the cluster had lost. A new producer starts with its breakers
// closed. renew runs in the background, at most once per renewEvery; it
// makes sure the topic exists (creating it again if it went missing) and
// connects a new producer, and swaps it in only if both succeed, so nothing
// changes while the cluster is still down. The old producer is closed
// asynchronously: what it holds still gets its results.
func (p *Producer) renew() {
	p.renewing.start(renewEvery, func() {
		ctx, cancel := context.WithTimeout(context.Background(), renewEvery)
		defer cancel()
		if err := ensureTopic(ctx, p.cfg, p.log); err != nil {
			p.log.Debug("kafka producer not renewed: the cluster does not answer yet", zap.Error(err))
			return
		}
		sc, err := p.cfg.producerConfig()
		if err != nil {
			return // it was valid when the producer was made
		}
		ap, err := sarama.NewAsyncProducer(p.cfg.Brokers, sc)
		if err != nil {
			p.log.Debug("kafka producer not renewed: cannot connect", zap.Error(err))
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = ap.Close() // never used: nothing waits on its results
			return
		}
		old := p.ap
		p.ap = ap
		p.routers.Add(1) // before Close can Wait: Close sets closed under mu first
		go p.route(ap)
		p.mu.Unlock()
		old.AsyncClose()
		p.log.Info("kafka producer renewed: the cluster answers again, and the old producer's circuit breakers were open",
			zap.String("topic", p.cfg.Topic))
	})
}

// publishError maps a sarama produce result to the queue's errors.
func publishError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sarama.ErrShuttingDown):
		return queue.ErrClosed
	case errors.Is(err, sarama.ErrMessageSizeTooLarge):
		// The message itself is at fault (over the broker's
		// message.max.bytes): retrying cannot help.
		return fmt.Errorf("queue/kafka: publish: %w: %w", queue.ErrTooLarge, err)
	default:
		return fmt.Errorf("queue/kafka: publish: %w: %w", queue.ErrUnavailable, err)
	}
}

// Close flushes the messages handed over so far (their Publish calls get
// their results), then disconnects. Later Publish calls return
// queue.ErrClosed. Close is idempotent and returns nil.
func (p *Producer) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		ap := p.ap
		p.mu.Unlock()
		// AsyncClose, not Close: Close would drain the result channels
		// itself, racing route for the results Publish calls wait on.
		ap.AsyncClose()
		p.routers.Wait() // this producer's route, and those of producers renew replaced
	})
	return nil
}
