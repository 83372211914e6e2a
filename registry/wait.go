package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// registerRetry is how long RegisterWait waits between attempts.
const registerRetry = time.Second

// RegisterWait registers n, retrying while its id is still held (a node that
// restarts inside its old lease's TTL finds its own previous registration):
// on ErrDuplicateID it logs a warning and tries again every second until the
// old registration is gone or ctx ends. Any other error is returned at once.
// When ctx ends first the error wraps both ctx.Err() and ErrDuplicateID.
// A nil log logs nothing.
func RegisterWait(ctx context.Context, r Registrar, n Node, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	for attempt := 1; ; attempt++ {
		err := r.Register(ctx, n)
		if err == nil || !errors.Is(err, ErrDuplicateID) {
			if err == nil && attempt > 1 {
				log.Info("node registered after the old lease expired",
					zap.String("role", n.Role), zap.String("id", n.ID), zap.Int("attempts", attempt))
			}
			return err
		}
		log.Warn("node id still held, waiting for the old lease to expire",
			zap.String("role", n.Role), zap.String("id", n.ID),
			zap.Int("attempt", attempt), zap.Duration("retry_in", registerRetry), zap.Error(err))
		select {
		case <-ctx.Done():
			return fmt.Errorf("registry: register %s/%s: gave up after %d attempts: %w: %w",
				n.Role, n.ID, attempt, ctx.Err(), err)
		case <-time.After(registerRetry):
		}
	}
}
