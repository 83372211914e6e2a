package roles

import (
	"context"
	"errors"
	"fmt"

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
