package memory

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue"
	"github.com/imcloud/imcloud/queue/queuetest"
)

func TestContract(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) (queue.Producer, queue.Consumer) {
		q := New(64) // small on purpose: the suite retries on ErrFull
		return q, q
	})
}

func TestPublishFull(t *testing.T) {
	tests := []struct {
		name string
		size int
		fits int
	}{
		{"size 3", 3, 3},
		{"size 1", 1, 1},
		{"size 0 taken as 1", 0, 1},
		{"negative size taken as 1", -5, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New(tt.size)
			t.Cleanup(func() { _ = q.Close() })
			for i := range tt.fits {
				if err := q.Publish(t.Context(), msg(i, "a")); err != nil {
					t.Fatalf("Publish %d: %v", i, err)
				}
			}
			if got := q.Len(); got != tt.fits {
				t.Errorf("Len = %d, want %d", got, tt.fits)
			}
			err := q.Publish(t.Context(), msg(tt.fits, "b"))
			if !errors.Is(err, queue.ErrFull) {
				t.Fatalf("Publish to a full queue: %v, want %v", err, queue.ErrFull)
			}
		})
	}
}

func TestFullFreesAfterConsume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(2)
		for i := range 2 {
			if err := q.Publish(t.Context(), msg(i, "a")); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- q.Consume(ctx, func(context.Context, *pb.PushMsg, func()) error { return nil }) }()
		synctest.Wait()
		if got := q.Len(); got != 0 {
			t.Fatalf("Len after consuming = %d, want 0", got)
		}
		if err := q.Publish(t.Context(), msg(2, "a")); err != nil {
			t.Fatalf("Publish after room freed: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Consume: %v", err)
		}
	})
}

func TestPublishErrors(t *testing.T) {
	q := New(4)
	t.Cleanup(func() { _ = q.Close() })
	if err := q.Publish(t.Context(), nil); err == nil {
		t.Error("Publish(nil) succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := q.Publish(ctx, msg(0, "a")); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with cancelled ctx: %v, want %v", err, context.Canceled)
	}
	if err := q.Consume(t.Context(), nil); err == nil {
		t.Error("Consume(nil handler) succeeded")
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := q.Publish(t.Context(), msg(1, "a")); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Publish after Close: %v, want %v", err, queue.ErrClosed)
	}
	// Consume on a closed queue returns at once.
	if err := q.Consume(t.Context(), func(context.Context, *pb.PushMsg, func()) error { return nil }); err != nil {
		t.Errorf("Consume after Close: %v", err)
	}
}

// TestHandedOverByPointer pins that the memory queue does not copy messages.
func TestHandedOverByPointer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(1)
		m := msg(0, "a")
		if err := q.Publish(t.Context(), m); err != nil {
			t.Fatal(err)
		}
		var got *pb.PushMsg
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			_ = q.Consume(ctx, func(_ context.Context, r *pb.PushMsg, _ func()) error { got = r; return nil })
		}()
		synctest.Wait()
		cancel()
		synctest.Wait()
		if got != m {
			t.Fatalf("handler got %p, want the published pointer %p", got, m)
		}
	})
}

// TestRedeliveryBackoff checks the backoff between attempts and that a
// message refused while the worker stops stays for the next Consume.
func TestRedeliveryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(8)
		if err := q.Publish(t.Context(), msg(0, "a")); err != nil {
			t.Fatal(err)
		}
		var attempts []time.Time
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = q.Consume(ctx, func(context.Context, *pb.PushMsg, func()) error {
				attempts = append(attempts, time.Now())
				return errors.New("refused")
			})
		}()
		time.Sleep(75 * time.Millisecond) // attempts at 0, 10, 30, 70 ms
		synctest.Wait()
		cancel()
		<-done
		if len(attempts) != 4 {
			t.Fatalf("%d attempts in 75ms, want 4", len(attempts))
		}
		for i, want := range []time.Duration{10, 20, 40} {
			if got := attempts[i+1].Sub(attempts[i]); got != want*time.Millisecond {
				t.Errorf("backoff %d = %v, want %v", i, got, want*time.Millisecond)
			}
		}
		if got := q.Len(); got != 1 {
			t.Fatalf("Len after refused delivery = %d, want 1", got)
		}
		var got *pb.PushMsg
		ctx, cancel = context.WithCancel(t.Context())
		go func() {
			_ = q.Consume(ctx, func(_ context.Context, m *pb.PushMsg, _ func()) error { got = m; return nil })
		}()
		synctest.Wait()
		cancel()
		if got.GetId() != "0" || q.Len() != 0 {
			t.Fatalf("next Consume got %v, Len %d; want message 0 and 0", got, q.Len())
		}
	})
}

// TestConsumersShare checks that two Consume calls both get work.
func TestConsumersShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(1000)
		var counts [2]atomic.Int64
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				_ = q.Consume(ctx, func(context.Context, *pb.PushMsg, func()) error {
					time.Sleep(time.Millisecond)
					counts[i].Add(1)
					return nil
				})
			})
		}
		synctest.Wait()
		for i := range 200 {
			if err := q.Publish(t.Context(), msg(i, strconv.Itoa(i%8))); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
		synctest.Wait()
		cancel()
		wg.Wait()
		a, b := counts[0].Load(), counts[1].Load()
		if a+b != 200 || a == 0 || b == 0 {
			t.Fatalf("consumers handled %d and %d messages, want 200 shared by both", a, b)
		}
	})
}

// TestNoLeakedGoroutines relies on synctest: the bubble fails with a
// deadlock if any goroutine Consume started is still blocked at the end.
func TestNoLeakedGoroutines(t *testing.T) {
	tests := []struct {
		name string
		stop func(q *Queue, cancel context.CancelFunc)
	}{
		{"cancel", func(_ *Queue, cancel context.CancelFunc) { cancel() }},
		{"close", func(q *Queue, _ context.CancelFunc) { _ = q.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := New(8)
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				done := make(chan error, 1)
				refuse := func(context.Context, *pb.PushMsg, func()) error { return errors.New("refused") }
				for range 2 {
					go func() { done <- q.Consume(ctx, refuse) }()
				}
				_ = q.Publish(t.Context(), msg(0, "a")) // one worker is in backoff
				synctest.Wait()
				tt.stop(q, cancel)
				for range 2 {
					if err := <-done; err != nil {
						t.Errorf("Consume: %v", err)
					}
				}
			})
		})
	}
}

func TestShardOfSpreads(t *testing.T) {
	used := make(map[int]bool)
	for i := range 256 {
		s := shardOf("node-" + strconv.Itoa(i))
		if s < 0 || s >= shardCount {
			t.Fatalf("shardOf = %d, out of range", s)
		}
		used[s] = true
	}
	if len(used) != shardCount {
		t.Errorf("256 keys used %d of %d shards", len(used), shardCount)
	}
}

func msg(i int, server string) *pb.PushMsg {
	return &pb.PushMsg{Version: 1, Id: strconv.Itoa(i), Type: pb.PushMsg_PUSH, Operation: 1000, Server: server}
}
