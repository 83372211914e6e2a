package roles

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/roles/job"
)

// jobService consumes the queue and delivers through the job.
type jobService struct {
	log *zap.Logger
	b   *backends
	job *job.Job

	watchCancel   context.CancelFunc
	consumeCancel context.CancelFunc
	watchDone     chan error
	consumeDone   chan error
}

func (s *jobService) Name() string { return "job" }

// Waiting implements waiter.
func (s *jobService) Waiting() string {
	if s.job == nil {
		return ""
	}
	select {
	case <-s.job.Ready():
		return ""
	default:
		return "waiting for the node registry's list of cloud nodes"
	}
}

func (s *jobService) Start(ctx context.Context) error {
	wctx, wcancel := context.WithCancel(context.Background())
	s.watchCancel = wcancel
	s.watchDone = make(chan error, 1)
	go func() { s.watchDone <- s.job.Run(wctx) }()
	select {
	case <-s.job.Ready():
	case err := <-s.watchDone:
		return fmt.Errorf("watch cloud nodes: %w", err)
	case <-ctx.Done():
		wcancel()
		return ctx.Err()
	}
	cctx, ccancel := context.WithCancel(context.Background())
	s.consumeCancel = ccancel
	s.consumeDone = make(chan error, 1)
	go func() { s.consumeDone <- s.b.consumer.Consume(cctx, s.job.HandleAsync) }()
	return nil
}

func (s *jobService) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.consumeDone:
		s.consumeDone <- err // for Stop
		if err != nil {
			return fmt.Errorf("consume: %w", err)
		}
		return fmt.Errorf("consume: stopped")
	case err := <-s.watchDone:
		s.watchDone <- err
		return fmt.Errorf("watch cloud nodes: stopped: %v", err)
	}
}

// lener is a queue that can tell how much is still waiting (the memory queue).
type lener interface{ Len() int }

func (s *jobService) Stop(ctx context.Context) error {
	// A queue in this process dies with it: deliver what it holds first.
	if l, ok := s.b.consumer.(lener); ok {
		for l.Len() > 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	s.consumeCancel()
	select {
	case <-s.consumeDone:
	case <-ctx.Done():
	}
	// Ending the watch flushes room batches and drains every node queue.
	s.watchCancel()
	select {
	case <-s.watchDone:
		return nil
	case <-ctx.Done():
		err := fmt.Errorf("job: drain: %w", ctx.Err())
		// Kafka redelivers what was cut (its offsets were not committed);
		// a queue in this process loses it, which is an error.
		if _, inProcess := s.b.consumer.(lener); !inProcess && drainCut(s.log, "deliveries, which the queue redelivers", err) {
			return nil
		}
		return err
	}
}
