package kafka

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue/kafka/kafkatest"
)

// testConfig returns a Config on b with a topic and group unique to t.
func testConfig(t testing.TB, b *kafkatest.Broker) Config {
	t.Helper()
	name := strings.NewReplacer("/", ".", " ", "_", "=", "_").Replace(t.Name())
	suffix := fmt.Sprintf("%s.%d", name, rand.Uint32())
	return Config{
		Brokers:     b.Addrs,
		Topic:       "push." + suffix,
		Group:       "job." + suffix,
		ClientID:    "imcloud-test",
		DialTimeout: time.Second,
	}
}

func testLogger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel))
}

func newProducer(t testing.TB, cfg Config) *Producer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := NewProducer(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func newConsumer(t testing.TB, cfg Config) *Consumer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := NewConsumer(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newAdmin returns a cluster admin on cfg's brokers.
func newAdmin(t testing.TB, cfg Config) sarama.ClusterAdmin {
	t.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := cfg.baseConfig()
	if err != nil {
		t.Fatal(err)
	}
	a, err := sarama.NewClusterAdmin(cfg.Brokers, sc)
	if err != nil {
		t.Fatalf("NewClusterAdmin: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// pushTo returns message i of a test, keyed by server.
func pushTo(pre string, i int, server string) *pb.PushMsg {
	return &pb.PushMsg{Version: 1, Id: fmt.Sprintf("%s%d", pre, i), Type: pb.PushMsg_PUSH, Operation: 1000, Server: server, Msg: []byte("hello")}
}

// partitionOf returns the partition the producer's partitioner picks for
// key among n partitions.
func partitionOf(t testing.TB, topic, key string, n int) int32 {
	t.Helper()
	p, err := sarama.NewHashPartitioner(topic).Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, int32(n))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// committed returns the group's committed offset of topic's partition, or
// -1 if none is committed.
func committed(t testing.TB, cfg Config, partition int32) int64 {
	t.Helper()
	resp, err := newAdmin(t, cfg).ListConsumerGroupOffsets(cfg.Group, map[string][]int32{cfg.Topic: {partition}})
	if err != nil {
		t.Fatalf("ListConsumerGroupOffsets: %v", err)
	}
	b := resp.GetBlock(cfg.Topic, partition)
	if b == nil {
		t.Fatalf("no offset block for %s/%d", cfg.Topic, partition)
	}
	return b.Offset
}

// run runs c.Consume(h) until the test ends or the returned stop is called;
// stop cancels it and fails the test unless it returns nil within 10s.
func run(t testing.TB, c *Consumer, h func(ctx context.Context, m *pb.PushMsg, done func()) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- c.Consume(ctx, h) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-res:
			if err != nil {
				t.Errorf("Consume: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Consume did not return 10s after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond every 10ms until it holds, failing after 20s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
