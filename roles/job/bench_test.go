package job

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// BenchmarkHandleRoom: Handle of ROOM messages spread over 16 rooms, two
// nodes whose clients discard calls, default-like batching (5 ms window,
// 64 messages). Measures the consumer's cost per message: decode-free
// routing, frame encoding, batching and the per-node enqueue.
func BenchmarkHandleRoom(b *testing.B) {
	for _, window := range []time.Duration{0, 5 * time.Millisecond} {
		b.Run("window="+window.String(), func(b *testing.B) {
			cl := newCluster()
			cl.register(b, "n1", "n2")
			cl.node("n1").discard = true
			cl.node("n2").discard = true
			cfg := testConfig()
			cfg.RoomBatchWindow = window
			cfg.MaxAge = 0
			cfg.EnqueueTimeout = time.Minute // never drop: measure, not shed
			j := startJob(b, cl, cfg, nil)
			const rooms = 16
			ids := make([]string, rooms)
			for i := range ids {
				ids[i] = "live://" + strconv.Itoa(i)
			}
			m := roomMsg("id", "", 1000, "a room message of a typical size, say sixty-four bytes long....")
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.Room = ids[i%rooms]
				i++
				if err := j.Handle(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if v := dropped(b, j.Job, "node_queue_full"); v != 0 {
				b.Fatalf("dropped %v", v)
			}
		})
	}
}
