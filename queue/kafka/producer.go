package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
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
	ap       sarama.AsyncProducer
	maxBytes int // the largest record sarama sends (Producer.MaxMessageBytes)

	mu     sync.RWMutex // held for reading while a Publish hands a message to ap
	closed bool

	closeOnce  sync.Once
	routerDone chan struct{} // closed once ap's result channels are drained

	// recreating is set while a background ensureTopic runs, lastRecreate
	// is when the last one started (under recreateMu): a topic that went
	// missing (deleted, or a broker that kept it only in memory restarted)
	// is created again, at most once per recreateEvery.
	recreating   atomic.Bool
	recreateMu   sync.Mutex
	lastRecreate time.Time
}

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
	p := &Producer{cfg: cfg, log: log, ap: ap, maxBytes: sc.Producer.MaxMessageBytes, routerDone: make(chan struct{})}
	go p.route()
	return p, nil
}

// route hands every acknowledgement or failure back to the Publish call
// waiting for it, until the producer has shut down.
func (p *Producer) route() {
	defer close(p.routerDone)
	succ, errs := p.ap.Successes(), p.ap.Errors()
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
	case p.ap.Input() <- msg:
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
		return publishError(err)
	case <-ctx.Done():
		return fmt.Errorf("queue/kafka: publish: no ack: %w: %w", queue.ErrUnavailable, ctx.Err())
	}
}

// recreateTopic creates the topic again in the background, unless that is
// under way or was tried within recreateEvery. Publishes fail meanwhile
// (503 upstream) and succeed once the topic is back.
func (p *Producer) recreateTopic() {
	p.recreateMu.Lock()
	due := time.Since(p.lastRecreate) >= recreateEvery
	if due {
		p.lastRecreate = time.Now()
	}
	p.recreateMu.Unlock()
	if !due || !p.recreating.CompareAndSwap(false, true) {
		return
	}
	p.log.Warn("kafka topic missing, creating it again", zap.String("topic", p.cfg.Topic))
	go func() {
		defer p.recreating.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), recreateEvery)
		defer cancel()
		if err := ensureTopic(ctx, p.cfg, p.log); err != nil {
			p.log.Warn("kafka topic could not be created again", zap.String("topic", p.cfg.Topic), zap.Error(err))
		}
	}()
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
		p.mu.Unlock()
		// AsyncClose, not Close: Close would drain the result channels
		// itself, racing route for the results Publish calls wait on.
		p.ap.AsyncClose()
		<-p.routerDone
	})
	return nil
}
