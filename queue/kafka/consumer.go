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

	"github.com/imcloud/imcloud/internal/deadline"
	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue"
)

const (
	// Backoff between offers of a message the handler refused.
	minBackoff = 10 * time.Millisecond
	maxBackoff = time.Second
	// Backoff between attempts to join the group while the cluster fails.
	minGroupBackoff = 100 * time.Millisecond
	maxGroupBackoff = 5 * time.Second
	// errorLogInterval spaces the logs of the group's error stream.
	errorLogInterval = 5 * time.Second
)

// Consumer delivers the topic's messages to handlers as a member of the
// consumer group; see the package documentation.
type Consumer struct {
	cfg Config
	sc  *sarama.Config
	log *zap.Logger

	stop   context.Context // cancelled by Close
	cancel context.CancelFunc

	mu      sync.Mutex // guards closed and the running WaitGroup's Add
	closed  bool
	running sync.WaitGroup // Consume calls in progress

	stats stats

	claimsMu sync.Mutex
	claims   map[int32]*claimState // the partitions this consumer holds now
}

// claimState is a held partition, for Stats.Lag.
type claimState struct {
	claim sarama.ConsumerGroupClaim
	next  atomic.Int64 // offset of the next message to receive; < 0 until the first
}

// stats are the consumer's counters.
type stats struct {
	undecodable atomic.Int64
	refused     atomic.Int64
	sessions    atomic.Int64
	groupErrors atomic.Int64
}

// Stats are counters of a Consumer since it was created.
type Stats struct {
	// Undecodable counts messages skipped (and committed) because they are
	// not a PushMsg.
	Undecodable int64
	// Refused counts handler calls that returned an error (each is retried).
	Refused int64
	// Sessions counts group sessions (generations) joined by all members.
	Sessions int64
	// GroupErrors counts errors reported by the consumer group (fetch,
	// commit and rebalance failures; sarama retries them).
	GroupErrors int64
	// Lag is how many messages of the partitions this consumer holds now
	// it has not received yet, by the high-water marks of its latest
	// fetches. While backpressure holds a partition its fetches stop once
	// the fetch buffer is full, so the figure is then a lower bound.
	Lag int64
}

var _ queue.Consumer = (*Consumer)(nil)

// NewConsumer makes sure the topic exists (creating it with cfg.Partitions
// partitions) and returns a Consumer of cfg.Group. It joins the group only
// when Consume is called. Errors reaching the cluster wrap
// queue.ErrUnavailable.
func NewConsumer(ctx context.Context, cfg Config, log *zap.Logger) (*Consumer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	sc, err := cfg.consumerConfig()
	if err != nil {
		return nil, fmt.Errorf("queue/kafka: consumer config: %w", err)
	}
	if err := ensureTopic(ctx, cfg, log); err != nil {
		return nil, err
	}
	stop, cancel := context.WithCancel(context.Background())
	return &Consumer{cfg: cfg, sc: sc, log: log, stop: stop, cancel: cancel}, nil
}

// Stats returns the consumer's counters.
func (c *Consumer) Stats() Stats {
	return Stats{
		Undecodable: c.stats.undecodable.Load(),
		Refused:     c.stats.refused.Load(),
		Sessions:    c.stats.sessions.Load(),
		GroupErrors: c.stats.groupErrors.Load(),
		Lag:         c.lag(),
	}
}

func (c *Consumer) lag() int64 {
	c.claimsMu.Lock()
	defer c.claimsMu.Unlock()
	var sum int64
	for _, st := range c.claims {
		if next := st.next.Load(); next >= 0 {
			sum += max(st.claim.HighWaterMarkOffset()-next, 0)
		}
	}
	return sum
}

// hold records claim as held until the returned func is called.
func (c *Consumer) hold(claim sarama.ConsumerGroupClaim) (*claimState, func()) {
	st := &claimState{claim: claim}
	st.next.Store(claim.InitialOffset()) // sarama.OffsetOldest or OffsetNewest (< 0) when none is committed
	c.claimsMu.Lock()
	if c.claims == nil {
		c.claims = map[int32]*claimState{}
	}
	c.claims[claim.Partition()] = st
	c.claimsMu.Unlock()
	return st, func() {
		c.claimsMu.Lock()
		if c.claims[claim.Partition()] == st {
			delete(c.claims, claim.Partition())
		}
		c.claimsMu.Unlock()
	}
}

// Consume joins the group as a new member and hands the partitions it is
// assigned to h until ctx ends or Close is called; then it commits what is
// done, leaves the group and returns nil. Each concurrent Consume call is a
// member of its own, so the calls share the partitions. Cluster failures are
// logged and retried, never returned.
func (c *Consumer) Consume(ctx context.Context, h queue.Handler) error {
	if h == nil {
		return errors.New("queue/kafka: consume with nil handler")
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.running.Add(1)
	c.mu.Unlock()
	defer c.running.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopAfter := context.AfterFunc(c.stop, cancel)
	defer stopAfter()

	backoff := minGroupBackoff
	var group sarama.ConsumerGroup
	failures := int64(0) // attempts that failed since the last session started
	for {
		g, err := sarama.NewConsumerGroup(c.cfg.Brokers, c.cfg.Group, c.sc)
		if err == nil {
			group = g
			break
		}
		failures++
		c.log.Warn("kafka consumer group unavailable, retrying", zap.String("group", c.cfg.Group),
			zap.Duration("backoff", backoff), zap.Error(err))
		if !deadline.Sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, maxGroupBackoff)
	}

	var logged sync.WaitGroup
	logged.Go(func() {
		// While brokers are down every partition reports an error every
		// few hundred milliseconds: log the first, then a summary at most
		// every errorLogInterval.
		var last time.Time
		suppressed := 0
		for err := range group.Errors() {
			c.stats.groupErrors.Add(1)
			if now := time.Now(); now.Sub(last) >= errorLogInterval {
				c.log.Warn("kafka consumer group error", zap.String("group", c.cfg.Group),
					zap.Int("suppressed", suppressed), zap.Error(err))
				last, suppressed = now, 0
				continue
			}
			suppressed++
		}
	})
	defer func() {
		// Leave only now, after the last session has committed its marks.
		if err := group.Close(); err != nil {
			c.log.Warn("kafka consumer group close", zap.String("group", c.cfg.Group), zap.Error(err))
		}
		logged.Wait()
	}()

	gh := &groupHandler{c: c, h: h}
	gh.failures.Store(failures)
	backoff = minGroupBackoff
	for ctx.Err() == nil {
		// Consume runs one session: it returns when the group rebalances,
		// ctx ends or joining fails.
		err := group.Consume(ctx, []string{c.cfg.Topic}, gh)
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			backoff = minGroupBackoff
			continue
		}
		gh.failures.Add(1)
		c.log.Warn("kafka consumer group session failed, retrying", zap.String("group", c.cfg.Group),
			zap.Duration("backoff", backoff), zap.Error(err))
		if !deadline.Sleep(ctx, backoff) {
			break
		}
		backoff = min(2*backoff, maxGroupBackoff)
	}
	return nil
}

// Close stops every Consume call and waits until each has committed what
// is done and left the group. It is idempotent and returns nil.
func (c *Consumer) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.running.Wait()
	return nil
}

// groupHandler serves the claims of one Consume call's sessions.
type groupHandler struct {
	c *Consumer
	h queue.Handler
	// failures counts the attempts to join that failed since the last
	// session started: the next one to start says that consuming resumed.
	failures atomic.Int64
}

func (g *groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	g.c.stats.sessions.Add(1)
	if n := g.failures.Swap(0); n > 0 {
		g.c.log.Info("kafka consumer group consuming again", zap.String("group", g.c.cfg.Group),
			zap.Int64("failed_before", n), zap.Int32("generation", sess.GenerationID()))
	}
	g.c.log.Debug("kafka consumer group session started", zap.String("group", g.c.cfg.Group),
		zap.String("member", sess.MemberID()), zap.Int32("generation", sess.GenerationID()),
		zap.Any("claims", sess.Claims()))
	return nil
}

func (g *groupHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	g.c.log.Debug("kafka consumer group session ended", zap.String("group", g.c.cfg.Group),
		zap.String("member", sess.MemberID()), zap.Int32("generation", sess.GenerationID()))
	return nil
}

// ConsumeClaim hands the partition's messages to the handler in offset
// order, one at a time, until the session ends. Offsets are marked only up
// to the first message not yet done.
func (g *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	topic, partition := claim.Topic(), claim.Partition()
	w := newWindow(g.c.cfg.MaxInFlight, func(next int64) { sess.MarkOffset(topic, partition, next, "") })
	defer w.close()
	st, release := g.c.hold(claim)
	defer release()
	ctx := sess.Context()
	msgs := claim.Messages()
	for {
		if !w.wait(ctx) {
			return nil
		}
		var msg *sarama.ConsumerMessage
		select {
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			msg = m
			st.next.Store(m.Offset + 1)
		case <-ctx.Done():
			return nil
		}
		if !g.handle(ctx, w, msg) {
			return nil
		}
	}
}

// handle offers msg to the handler until it is taken; it reports false if
// the session ended first (msg is then not marked).
func (g *groupHandler) handle(ctx context.Context, w *window, msg *sarama.ConsumerMessage) bool {
	m := new(pb.PushMsg)
	if err := proto.Unmarshal(msg.Value, m); err != nil {
		g.c.stats.undecodable.Add(1)
		g.c.log.Error("kafka message is not a push, skipped", zap.String("topic", msg.Topic),
			zap.Int32("partition", msg.Partition), zap.Int64("offset", msg.Offset), zap.Error(err))
		e := w.take(msg.Offset)
		e.markDone()
		e.accept()
		return true
	}
	backoff := minBackoff
	for {
		e := w.take(msg.Offset)
		err := g.h(ctx, m, e.markDone)
		if err == nil {
			e.accept()
			return true
		}
		e.drop()
		g.c.stats.refused.Add(1)
		if ctx.Err() != nil {
			return false
		}
		g.c.log.Debug("kafka message refused, retrying", zap.String("id", m.GetId()),
			zap.Int32("partition", msg.Partition), zap.Int64("offset", msg.Offset),
			zap.Duration("backoff", backoff), zap.Error(err))
		if !deadline.Sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
