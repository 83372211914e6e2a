package memory

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue"
)

// BenchmarkPublishConsume measures throughput of one producer and one
// Consume call: each iteration publishes a message and the benchmark ends
// when every message has been handled (the drain is timed too).
func BenchmarkPublishConsume(b *testing.B) {
	for _, keys := range []int{1, 16, 1024} {
		b.Run("keys="+strconv.Itoa(keys), func(b *testing.B) {
			msgs := make([]*pb.PushMsg, keys)
			for i := range msgs {
				msgs[i] = &pb.PushMsg{Type: pb.PushMsg_PUSH, Operation: 1000, Server: "node-" + strconv.Itoa(i), Msg: []byte("hello")}
			}
			q := New(4096)
			defer q.Close()
			var handled atomic.Int64
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- q.Consume(ctx, func(context.Context, *pb.PushMsg, func()) error {
					handled.Add(1)
					return nil
				})
			}()
			b.ReportAllocs()
			b.ResetTimer()
			n := int64(0)
			for range b.N {
				m := msgs[n%int64(keys)]
				for {
					err := q.Publish(ctx, m)
					if err == nil {
						break
					}
					if !errors.Is(err, queue.ErrFull) {
						b.Fatal(err)
					}
					runtime.Gosched()
				}
				n++
			}
			for handled.Load() < n {
				runtime.Gosched()
			}
			b.StopTimer()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
