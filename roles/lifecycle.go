package roles

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Service is one part of a role with a start/run/stop lifecycle.
type Service interface {
	Name() string
	// Start binds and connects; it returns once the service is ready.
	Start(ctx context.Context) error
	// Run blocks until ctx ends (nil) or the service fails (an error).
	Run(ctx context.Context) error
	// Stop drains and releases everything before ctx's deadline.
	Stop(ctx context.Context) error
}

// runServices starts services in order, runs them until ctx ends or one
// fails, then stops the started ones in reverse order, each within
// stopTimeout. onReady is called once every service has started.
func runServices(ctx context.Context, log *zap.Logger, services []Service, stopTimeout, lameDuck time.Duration, onReady func(bool)) error {
	var started []Service
	var startErr error
	for _, s := range services {
		if err := s.Start(ctx); err != nil {
			if ctx.Err() != nil {
				// A signal while waiting for a backend: a clean stop.
				log.Info("stopped while starting", zap.String("service", s.Name()), zap.Error(err))
				break
			}
			startErr = fmt.Errorf("%s: start: %w", s.Name(), err)
			break
		}
		log.Info("service started", zap.String("service", s.Name()))
		started = append(started, s)
	}

	var runErr error
	if startErr == nil && len(started) == len(services) {
		onReady(true)
		// Runs end when ctx does, after the lame duck if there is one.
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			select {
			case <-ctx.Done():
				lameDuckWait(runCtx, log, lameDuck, onReady)
				cancel()
			case <-runCtx.Done():
			}
		}()
		errs := make(chan error, len(started))
		var wg sync.WaitGroup
		for _, s := range started {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Run(runCtx); err != nil {
					errs <- fmt.Errorf("%s: %w", s.Name(), err)
				}
				// One service ending makes the others stop too.
				cancel()
			}()
		}
		<-runCtx.Done()
		select {
		case runErr = <-errs:
		default:
		}
		onReady(false)
		// Run loops return before Stop so a Stop never races its own Run.
		wg.Wait()
		cancel()
		<-watched
	}

	var stopErrs []error
	for i := len(started) - 1; i >= 0; i-- {
		s := started[i]
		sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		if err := s.Stop(sctx); err != nil {
			stopErrs = append(stopErrs, fmt.Errorf("%s: stop: %w", s.Name(), err))
		}
		cancel()
		log.Info("service stopped", zap.String("service", s.Name()))
	}
	return errors.Join(append([]error{startErr, runErr}, stopErrs...)...)
}

// lameDuckWait, if lameDuck > 0, reports the node not ready and waits
// lameDuck (or until ctx ends: a service failed) with everything still
// serving, so load balancers polling /readyz move traffic away before the
// listeners close.
func lameDuckWait(ctx context.Context, log *zap.Logger, lameDuck time.Duration, onReady func(bool)) {
	if lameDuck <= 0 {
		return
	}
	onReady(false)
	log.Info("stopping after the lame duck: not ready, still serving", zap.Duration("lame_duck", lameDuck))
	t := time.NewTimer(lameDuck)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// drainCut reports whether err is a drain that ran out of time and cut
// what was left: the service still stopped, so it is logged, not returned.
func drainCut(log *zap.Logger, what string, err error) bool {
	if !errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	log.Warn("shutdown deadline reached: cut what was still open", zap.String("what", what), zap.Error(err))
	return true
}
