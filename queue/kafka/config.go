package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/imcloud/imcloud/queue"
)

// Defaults applied by Config fields left zero.
const (
	DefaultTopic             = "imcloud-push"
	DefaultGroup             = "imcloud-job"
	DefaultPartitions        = 8
	DefaultReplicationFactor = 1
	DefaultClientID          = "imcloud"
	DefaultMaxInFlight       = 1024
	DefaultDialTimeout       = 3 * time.Second
	DefaultPublishTimeout    = 5 * time.Second
	DefaultVersion           = "2.8.0"
)

// Config configures a Producer or a Consumer. Only Brokers is required.
type Config struct {
	// Brokers are the bootstrap broker addresses (host:port).
	Brokers []string
	// Topic is the push topic (default imcloud-push).
	Topic string
	// Group is the consumer group of the job role (default imcloud-job).
	Group string
	// Partitions is the partition count used when the topic is created
	// (default 8); an existing topic is left as it is.
	Partitions int
	// ReplicationFactor is used when the topic is created: 0 means 1, -1
	// means the broker's default.replication.factor.
	ReplicationFactor int
	// ClientID names this client in broker logs (default imcloud).
	ClientID string
	// MaxInFlight bounds, per partition, the messages a Consumer has handed
	// to the handler that are not done yet (default 1024).
	MaxInFlight int
	// DialTimeout bounds each connection attempt (default 3s).
	DialTimeout time.Duration
	// PublishTimeout bounds one Publish call in addition to its ctx
	// (default 5s), so a Publish answers ErrUnavailable in bounded time
	// while brokers are down.
	PublishTimeout time.Duration
	// Version is the lowest Kafka version of the cluster, in the form
	// "2.8.0" (the default); it picks the protocol versions sarama speaks.
	Version string
}

// withDefaults returns c with zero fields set to their defaults, or an error
// if c cannot be used.
func (c Config) withDefaults() (Config, error) {
	if len(c.Brokers) == 0 {
		return c, errors.New("queue/kafka: no brokers configured")
	}
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Partitions <= 0 {
		c.Partitions = DefaultPartitions
	}
	switch {
	case c.ReplicationFactor == 0:
		c.ReplicationFactor = DefaultReplicationFactor
	case c.ReplicationFactor < -1:
		return c, fmt.Errorf("queue/kafka: replication factor %d: want -1 or more", c.ReplicationFactor)
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	return c, nil
}

// baseConfig is the sarama configuration shared by every client: identity,
// protocol version and network timeouts.
func (c Config) baseConfig() (*sarama.Config, error) {
	v, err := sarama.ParseKafkaVersion(c.Version)
	if err != nil {
		return nil, fmt.Errorf("queue/kafka: version %q: %w", c.Version, err)
	}
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	sc.Version = v
	sc.Net.DialTimeout = c.DialTimeout
	sc.Net.ReadTimeout = 5 * time.Second
	sc.Net.WriteTimeout = 5 * time.Second
	// Metadata refreshes give up quickly while brokers are down; callers
	// retry on their own schedule.
	sc.Metadata.Retry.Max = 1
	sc.Metadata.Retry.Backoff = 250 * time.Millisecond
	sc.Metadata.Timeout = 5 * time.Second
	sc.Admin.Timeout = 5 * time.Second
	return sc, nil
}

// MaxRecordBytes is the largest record a Producer sends (sarama's
// default, and about a broker's default message.max.bytes): a larger push
// is refused with queue.ErrTooLarge.
const MaxRecordBytes = 1 << 20

// producerConfig is the sarama configuration of a Producer.
func (c Config) producerConfig() (*sarama.Config, error) {
	sc, err := c.baseConfig()
	if err != nil {
		return nil, err
	}
	sc.Metadata.Full = false // only the topic in use
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.MaxMessageBytes = MaxRecordBytes
	sc.Producer.Timeout = 3 * time.Second // broker-side wait for the in-sync replicas
	sc.Producer.Retry.Max = 3
	sc.Producer.Retry.BackoffFunc = func(retries, _ int) time.Duration {
		return min(100*time.Millisecond<<retries, time.Second)
	}
	// One request in flight per broker connection keeps retries in order.
	// Not sarama's idempotent producer: a message that arrives while a
	// failed batch is being retried goes out without its sequence number,
	// and the broker acknowledges it as a duplicate without storing it
	// (IBM/sarama#3354; TestAckedMeansStored). A retry may now store a
	// message twice instead, and cloud nodes drop repeats by push id.
	sc.Producer.Idempotent = false
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	return sc, sc.Validate()
}

// consumerConfig is the sarama configuration of one consumer group member.
func (c Config) consumerConfig() (*sarama.Config, error) {
	sc, err := c.baseConfig()
	if err != nil {
		return nil, err
	}
	// JoinGroup blocks until every member has rejoined, up to the rebalance
	// timeout, so the read timeout must exceed it.
	sc.Net.ReadTimeout = 30 * time.Second
	sc.Metadata.Full = false // only the topic in use
	sc.Consumer.Group.Rebalance.Timeout = 20 * time.Second
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	sc.Consumer.Group.Session.Timeout = 10 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = time.Second
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = 500 * time.Millisecond
	sc.Consumer.MaxWaitTime = 250 * time.Millisecond
	sc.Consumer.Return.Errors = true
	return sc, sc.Validate()
}

// ensureTopic creates cfg.Topic with cfg.Partitions partitions unless it
// exists. Errors reaching the cluster wrap queue.ErrUnavailable.
func ensureTopic(ctx context.Context, cfg Config, log *zap.Logger) error {
	sc, err := cfg.baseConfig()
	if err != nil {
		return err
	}
	type result struct {
		created    bool
		partitions int
		err        error
	}
	res := make(chan result, 1)
	// sarama takes no ctx: run it aside, bounded by its own timeouts, so the
	// caller's ctx can cut the wait short.
	go func() {
		var r result
		defer func() { res <- r }()
		admin, err := sarama.NewClusterAdmin(cfg.Brokers, sc)
		if err != nil {
			r.err = fmt.Errorf("queue/kafka: connect to %v: %w: %w", cfg.Brokers, queue.ErrUnavailable, err)
			return
		}
		defer func() { _ = admin.Close() }()
		detail := &sarama.TopicDetail{NumPartitions: int32(cfg.Partitions), ReplicationFactor: int16(cfg.ReplicationFactor)}
		err = admin.CreateTopic(cfg.Topic, detail, false)
		switch {
		case err == nil:
			r.created, r.partitions = true, cfg.Partitions
			return
		case !errors.Is(err, sarama.ErrTopicAlreadyExists):
			r.err = fmt.Errorf("queue/kafka: create topic %q: %w: %w", cfg.Topic, queue.ErrUnavailable, err)
			return
		}
		md, err := admin.DescribeTopics([]string{cfg.Topic})
		if err != nil || len(md) != 1 || !errors.Is(md[0].Err, sarama.ErrNoError) {
			if err == nil && len(md) == 1 {
				err = md[0].Err
			}
			r.err = fmt.Errorf("queue/kafka: describe topic %q: %w: %v", cfg.Topic, queue.ErrUnavailable, err)
			return
		}
		r.partitions = len(md[0].Partitions)
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return r.err
		}
		switch {
		case r.created:
			log.Info("kafka topic created", zap.String("topic", cfg.Topic), zap.Int("partitions", r.partitions),
				zap.Int("replication_factor", cfg.ReplicationFactor))
		case r.partitions != cfg.Partitions:
			log.Warn("kafka topic exists with another partition count", zap.String("topic", cfg.Topic),
				zap.Int("partitions", r.partitions), zap.Int("configured", cfg.Partitions))
		default:
			log.Debug("kafka topic exists", zap.String("topic", cfg.Topic), zap.Int("partitions", r.partitions))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("queue/kafka: ensure topic %q: %w: %w", cfg.Topic, queue.ErrUnavailable, ctx.Err())
	}
}
