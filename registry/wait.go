package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/internal/deadline"
)

// Retry pacing of RegisterWait and WatchWait: a held id is retried every
// heldRetry; an unreachable registry with backoff from minBackoff to
// maxBackoff, so a node started before its registry connects soon after the
// registry comes up without hammering it meanwhile.
const (
	heldRetry  = time.Second
	minBackoff = 250 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// RegisterWait registers n, retrying until it succeeds or ctx ends:
//   - while n's id is still held (a node restarting inside its old lease's
//     TTL finds its own previous registration) it tries every second, for at
//     most heldFor from the first refusal, since a live twin never lets go;
//   - while the registry is unreachable it retries with backoff, without
//     bound, so a node may start before its registry;
//   - an invalid node (ErrInvalid) is returned at once.
//
// Each retry is logged as a warning. When it gives up the error wraps the
// last cause and, if ctx ended, ctx.Err(). A nil log logs nothing.
func RegisterWait(ctx context.Context, r Registrar, n Node, heldFor time.Duration, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	var heldSince time.Time
	backoff := minBackoff
	for attempt := 1; ; attempt++ {
		err := r.Register(ctx, n)
		if err == nil {
			if attempt > 1 {
				log.Info("node registered after retrying",
					zap.String("role", n.Role), zap.String("id", n.ID), zap.Int("attempts", attempt))
			}
			return nil
		}
		if errors.Is(err, ErrInvalid) {
			return err
		}
		wait := backoff
		if errors.Is(err, ErrDuplicateID) {
			if heldSince.IsZero() {
				heldSince = time.Now()
			}
			if time.Since(heldSince) >= heldFor {
				return fmt.Errorf("registry: register %s/%s: still held after %v (%d attempts): %w",
					n.Role, n.ID, heldFor.Round(time.Millisecond), attempt, err)
			}
			wait = heldRetry
			log.Warn("node id still held, waiting for the old lease to expire",
				zap.String("role", n.Role), zap.String("id", n.ID),
				zap.Int("attempt", attempt), zap.Duration("retry_in", wait),
				zap.Duration("gives_up_in", (heldFor-time.Since(heldSince)).Round(time.Second)), zap.Error(err))
		} else {
			if ctx.Err() == nil {
				log.Warn("registry unreachable, retrying registration",
					zap.String("role", n.Role), zap.String("id", n.ID),
					zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Error(err))
			}
			backoff = min(2*backoff, maxBackoff)
		}
		if !deadline.Sleep(ctx, wait) {
			return fmt.Errorf("registry: register %s/%s: gave up after %d attempts: %w: %w",
				n.Role, n.ID, attempt, ctx.Err(), err)
		}
	}
}

// WatchWait starts w.Watch(ctx, role), retrying with backoff while the
// registry is unreachable, until it succeeds or ctx ends (then it returns an
// error wrapping ctx.Err()). An invalid role (ErrInvalid) is returned at once.
// Each retry is logged as a warning; a nil log logs nothing.
func WatchWait(ctx context.Context, w interface {
	Watch(ctx context.Context, role string) (<-chan []Node, error)
}, role string, log *zap.Logger) (<-chan []Node, error) {
	if log == nil {
		log = zap.NewNop()
	}
	backoff := minBackoff
	for attempt := 1; ; attempt++ {
		ch, err := w.Watch(ctx, role)
		if err == nil {
			if attempt > 1 {
				log.Info("registry watch started after retrying", zap.String("role", role), zap.Int("attempts", attempt))
			}
			return ch, nil
		}
		if errors.Is(err, ErrInvalid) {
			return nil, err
		}
		if ctx.Err() == nil {
			log.Warn("registry unreachable, retrying watch", zap.String("role", role),
				zap.Int("attempt", attempt), zap.Duration("retry_in", backoff), zap.Error(err))
		}
		if !deadline.Sleep(ctx, backoff) {
			return nil, fmt.Errorf("registry: watch %s: gave up after %d attempts: %w: %w", role, attempt, ctx.Err(), err)
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
