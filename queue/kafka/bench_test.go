package kafka

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue/kafka/kafkatest"
)

// BenchmarkPublish measures Publish latency (acks from all in-sync replicas
// of the in-process fake broker): serial calls, and concurrent callers whose
// messages sarama batches together.
func BenchmarkPublish(b *testing.B) {
	broker := kafkatest.Start(b)
	msgs := make([]*pb.PushMsg, 16)
	for i := range msgs {
		msgs[i] = &pb.PushMsg{Version: 1, Id: strconv.Itoa(i), Type: pb.PushMsg_PUSH, Operation: 1000,
			Server: "node-" + strconv.Itoa(i), Keys: []string{"key"}, Msg: make([]byte, 256)}
	}
	b.Run("serial", func(b *testing.B) {
		p := newProducer(b, testConfig(b, broker))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := p.Publish(b.Context(), msgs[i%len(msgs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		p := newProducer(b, testConfig(b, broker))
		b.ReportAllocs()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := p.Publish(b.Context(), msgs[n.Add(1)%int64(len(msgs))]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
