package roles

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/imcloud/imcloud/queue"
	"github.com/imcloud/imcloud/queue/kafka"
	qmemory "github.com/imcloud/imcloud/queue/memory"
)

// unavailable reports whether err is a backend being unreachable, which
// retrying can cure, rather than a bad config.
func unavailable(err error) bool { return errors.Is(err, queue.ErrUnavailable) }

// openQueue adds the producer (logic) and consumer (job) the role needs.
func openQueue(ctx context.Context, b *backends, cfg *Config, role string, log *zap.Logger) error {
	switch cfg.Queue.Backend {
	case "memory":
		q := qmemory.New(cfg.Queue.Memory.Size)
		b.producer, b.consumer = q, q
		b.closers = append(b.closers, q.Close)
		return nil
	case "kafka":
		k := cfg.Queue.Kafka
		kc := kafka.Config{Brokers: k.Brokers, Topic: k.Topic, Group: k.Group, Partitions: k.Partitions, ClientID: "imcloud-" + role}
		klog := log.Named("kafka")
		if role == RoleAll || role == RoleLogic {
			p, err := connectRetrying(ctx, klog, "kafka producer", func(ctx context.Context) (queue.Producer, error) {
				return kafka.NewProducer(ctx, kc, klog)
			}, unavailable)
			if err != nil {
				return fmt.Errorf("queue.kafka: %w", err)
			}
			b.producer = retryingProducer{p}
			b.closers = append(b.closers, p.Close)
			b.pending = append(b.pending, p.pending)
		}
		if role == RoleAll || role == RoleJob {
			c, err := connectRetrying(ctx, klog, "kafka consumer", func(ctx context.Context) (queue.Consumer, error) {
				return kafka.NewConsumer(ctx, kc, klog)
			}, unavailable)
			if err != nil {
				return fmt.Errorf("queue.kafka: %w", err)
			}
			b.consumer = retryingConsumer{c}
			b.closers = append(b.closers, c.Close)
			b.pending = append(b.pending, c.pending)
			b.kafkaStats = func() (kafka.Stats, bool) {
				v, err := c.get()
				if err != nil {
					return kafka.Stats{}, false
				}
				kc, ok := v.(*kafka.Consumer)
				if !ok {
					return kafka.Stats{}, false
				}
				return kc.Stats(), true
			}
		}
		return nil
	default:
		return fmt.Errorf("queue.backend: unknown backend %q", cfg.Queue.Backend)
	}
}

// kafkaCollector exports the job's Kafka consumer counters and lag.
type kafkaCollector struct {
	stats                                         func() (kafka.Stats, bool)
	lag, undecodable, refused, groupErrs, session *prometheus.Desc
}

func newKafkaCollector(stats func() (kafka.Stats, bool)) *kafkaCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("imcloud", "job", name), help, nil, nil)
	}
	return &kafkaCollector{
		stats:       stats,
		lag:         d("kafka_lag", "Messages of the partitions this job holds that it has not received yet (a lower bound while backpressure holds a partition)."),
		undecodable: d("kafka_undecodable_total", "Kafka messages skipped because they are not a push."),
		refused:     d("kafka_refused_total", "Hand-overs of a push to the job that failed (the job stopping, a session ending) and were retried."),
		groupErrs:   d("kafka_group_errors_total", "Errors of the Kafka consumer group (fetch, commit, rebalance); sarama retries them."),
		session:     d("kafka_group_sessions_total", "Consumer group sessions (generations) this job joined: rebalances."),
	}
}

func (k *kafkaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{k.lag, k.undecodable, k.refused, k.groupErrs, k.session} {
		ch <- d
	}
}

// Collect sends nothing while the consumer is not connected yet.
func (k *kafkaCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := k.stats()
	if !ok {
		return
	}
	for _, m := range []struct {
		d *prometheus.Desc
		t prometheus.ValueType
		v int64
	}{
		{k.lag, prometheus.GaugeValue, s.Lag},
		{k.undecodable, prometheus.CounterValue, s.Undecodable},
		{k.refused, prometheus.CounterValue, s.Refused},
		{k.groupErrs, prometheus.CounterValue, s.GroupErrors},
		{k.session, prometheus.CounterValue, s.Sessions},
	} {
		if metric, err := prometheus.NewConstMetric(m.d, m.t, float64(m.v)); err == nil {
			ch <- metric
		}
	}
}
