package roles

import (
	"context"
	"fmt"

	"go.uber.org/zap"

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
	default:
		return fmt.Errorf("queue.backend: unknown backend %q", cfg.Queue.Backend)
	}
}
