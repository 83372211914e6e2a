package roles

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/queue/kafka"
	qmemory "github.com/imcloud/imcloud/queue/memory"
)

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
		if role == RoleAll || role == RoleLogic {
			p, err := kafka.NewProducer(ctx, kc, log.Named("kafka"))
			if err != nil {
				return fmt.Errorf("queue.kafka: %w", err)
			}
			b.producer = p
			b.closers = append(b.closers, p.Close)
		}
		if role == RoleAll || role == RoleJob {
			c, err := kafka.NewConsumer(ctx, kc, log.Named("kafka"))
			if err != nil {
				return fmt.Errorf("queue.kafka: %w", err)
			}
			b.consumer = c
			b.closers = append(b.closers, c.Close)
		}
		return nil
	default:
		return fmt.Errorf("queue.backend: unknown backend %q", cfg.Queue.Backend)
	}
}
