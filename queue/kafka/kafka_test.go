package kafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue"
	"github.com/imcloud/imcloud/queue/kafka/kafkatest"
	"github.com/imcloud/imcloud/queue/queuetest"
)

func TestContract(t *testing.T) {
	b := kafkatest.Start(t)
	queuetest.Run(t, func(t *testing.T) (queue.Producer, queue.Consumer) {
		cfg := testConfig(t, b)
		return newProducer(t, cfg), newConsumer(t, cfg)
	})
}

// TestContractThreeBrokers runs the contract against kfake's default shape,
// three brokers with the partition leaders spread over them, reached
// through one bootstrap address as a deployment may list only one.
func TestContractThreeBrokers(t *testing.T) {
	b := kafkatest.Start(t, kfake.NumBrokers(3))
	if len(b.Addrs) != 3 {
		t.Fatalf("brokers: %v", b.Addrs)
	}
	b.Addrs = b.Addrs[:1]
	queuetest.Run(t, func(t *testing.T) (queue.Producer, queue.Consumer) {
		cfg := testConfig(t, b)
		return newProducer(t, cfg), newConsumer(t, cfg)
	})
}

// TestTopicCreated checks that the producer and the consumer create the
// topic (the fake cluster does not auto-create topics) with the configured
// partition count, and that an existing topic is accepted as it is.
func TestTopicCreated(t *testing.T) {
	b := kafkatest.Start(t)
	tests := []struct {
		name string
		open func(t *testing.T, cfg Config)
	}{
		{"producer", func(t *testing.T, cfg Config) { newProducer(t, cfg) }},
		{"consumer", func(t *testing.T, cfg Config) { newConsumer(t, cfg) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, b)
			cfg.Partitions = 3
			admin := newAdmin(t, cfg)
			md, err := admin.DescribeTopics([]string{cfg.Topic})
			if err != nil {
				t.Fatal(err)
			}
			if len(md) != 1 || !errors.Is(md[0].Err, sarama.ErrUnknownTopicOrPartition) {
				t.Fatalf("topic before start: %+v, want unknown (auto-creation must be off)", md[0])
			}
			tt.open(t, cfg)
			md, err = admin.DescribeTopics([]string{cfg.Topic})
			if err != nil {
				t.Fatal(err)
			}
			if len(md) != 1 || !errors.Is(md[0].Err, sarama.ErrNoError) {
				t.Fatalf("DescribeTopics: %+v", md)
			}
			if got := len(md[0].Partitions); got != 3 {
				t.Fatalf("topic has %d partitions, want 3", got)
			}
			// A second client with another partition count keeps the topic.
			cfg.Partitions = 5
			tt.open(t, cfg)
			md, err = admin.DescribeTopics([]string{cfg.Topic})
			if err != nil {
				t.Fatal(err)
			}
			if got := len(md[0].Partitions); got != 3 {
				t.Fatalf("existing topic now has %d partitions, want 3", got)
			}
		})
	}
}

// TestPerKeyOrderAcrossPartitions publishes interleaved messages of several
// keys spread over several partitions; the handler calls done later, in
// random order, from other goroutines. Each key's messages must arrive in
// publish order, each once, and everything must end up committed.
func TestPerKeyOrderAcrossPartitions(t *testing.T) {
	const (
		partitions = 4
		keys       = 12
		total      = 600
	)
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	cfg.Partitions = partitions
	p, c := newProducer(t, cfg), newConsumer(t, cfg)

	used := make(map[int32]int)
	for k := range keys {
		used[partitionOf(t, cfg.Topic, "node-"+strconv.Itoa(k), partitions)]++
	}
	if len(used) < 2 {
		t.Fatalf("keys use partitions %v, want several", used)
	}

	var mu sync.Mutex
	var got []*pb.PushMsg
	var lateDone sync.WaitGroup
	stop := run(t, c, func(_ context.Context, m *pb.PushMsg, done func()) error {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		lateDone.Go(func() {
			time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
			done()
		})
		return nil
	})
	var wg sync.WaitGroup
	for k := range keys { // one publisher per key keeps each key's order
		wg.Go(func() {
			for i := k; i < total; i += keys {
				if err := p.Publish(t.Context(), pushTo("", i, "node-"+strconv.Itoa(k))); err != nil {
					t.Errorf("Publish %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	eventually(t, "all messages", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= total })
	lateDone.Wait()
	stop() // commits what is done

	mu.Lock()
	defer mu.Unlock()
	last := make(map[string]int)
	seen := make(map[int]bool)
	for _, m := range got {
		n, _ := strconv.Atoi(m.GetId())
		if seen[n] {
			t.Errorf("message %d delivered twice", n)
		}
		seen[n] = true
		if prev, ok := last[m.GetServer()]; ok && n < prev {
			t.Errorf("key %s: message %d after %d", m.GetServer(), n, prev)
		}
		last[m.GetServer()] = n
	}
	if len(seen) != total {
		t.Errorf("%d distinct messages, want %d", len(seen), total)
	}
	perPartition := make(map[int32]int64)
	for k := range keys {
		perPartition[partitionOf(t, cfg.Topic, "node-"+strconv.Itoa(k), partitions)] += total / keys
	}
	for part, n := range perPartition {
		if off := committed(t, cfg, part); off != n {
			t.Errorf("partition %d: committed %d, want %d", part, off, n)
		}
	}
}

// TestAtLeastOnce takes ten messages of one key, calls done for the first
// four and for a later one, and closes the consumer: a new consumer of the
// group gets exactly the messages from the first one not done on.
func TestAtLeastOnce(t *testing.T) {
	const total, doneFirst = 10, 4
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	cfg.Partitions = 2
	p := newProducer(t, cfg)
	part := partitionOf(t, cfg.Topic, "node-a", cfg.Partitions)

	first := newConsumer(t, cfg)
	var mu sync.Mutex
	var dones []func()
	run(t, first, func(_ context.Context, _ *pb.PushMsg, done func()) error {
		mu.Lock()
		dones = append(dones, done)
		mu.Unlock()
		return nil
	})
	for i := range total {
		if err := p.Publish(t.Context(), pushTo("", i, "node-a")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "first delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(dones) == total })
	mu.Lock()
	for i := range doneFirst {
		dones[i]()
		dones[i]() // a second call is harmless
	}
	dones[doneFirst+2]() // done, but after a gap: not committed
	mu.Unlock()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if off := committed(t, cfg, part); off != doneFirst {
		t.Fatalf("committed offset after Close = %d, want %d", off, doneFirst)
	}
	mu.Lock()
	for _, done := range dones { // late dones after Close change nothing
		done()
	}
	mu.Unlock()
	if off := committed(t, cfg, part); off != doneFirst {
		t.Fatalf("committed offset after late dones = %d, want %d", off, doneFirst)
	}

	second := newConsumer(t, cfg)
	var got []int
	run(t, second, func(_ context.Context, m *pb.PushMsg, done func()) error {
		n, _ := strconv.Atoi(m.GetId())
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
		done()
		return nil
	})
	eventually(t, "redelivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= total-doneFirst })
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	want := []int{4, 5, 6, 7, 8, 9}
	if !slices.Equal(got, want) {
		t.Fatalf("second consumer got %v, want %v", got, want)
	}
}

// TestNewGroupStartsFromOldest publishes while no consumer runs.
func TestNewGroupStartsFromOldest(t *testing.T) {
	const total = 20
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	p := newProducer(t, cfg)
	for i := range total {
		if err := p.Publish(t.Context(), pushTo("", i, "node-"+strconv.Itoa(i%3))); err != nil {
			t.Fatal(err)
		}
	}
	c := newConsumer(t, cfg)
	var mu sync.Mutex
	seen := make(map[string]bool)
	run(t, c, func(_ context.Context, m *pb.PushMsg, done func()) error {
		mu.Lock()
		seen[m.GetId()] = true
		mu.Unlock()
		done()
		return nil
	})
	eventually(t, "messages published before the consumer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == total
	})
}

// TestBackpressure: with MaxInFlight 5 and a handler that holds on to done,
// at most 5 messages per partition are taken; once done is called the rest
// follows.
func TestBackpressure(t *testing.T) {
	const (
		partitions  = 3
		keys        = 6
		perKey      = 10
		maxInFlight = 5
	)
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	cfg.Partitions = partitions
	cfg.MaxInFlight = maxInFlight
	p, c := newProducer(t, cfg), newConsumer(t, cfg)

	published := make(map[int32]int)
	for i := range keys * perKey {
		key := "node-" + strconv.Itoa(i%keys)
		if err := p.Publish(t.Context(), pushTo("", i, key)); err != nil {
			t.Fatal(err)
		}
		published[partitionOf(t, cfg.Topic, key, partitions)]++
	}
	want := make(map[int32]int)
	for part, n := range published {
		want[part] = min(n, maxInFlight)
	}

	var mu sync.Mutex
	taken := make(map[int32]int)
	var dones []func()
	run(t, c, func(_ context.Context, m *pb.PushMsg, done func()) error {
		mu.Lock()
		taken[partitionOf(t, cfg.Topic, m.GetServer(), partitions)]++
		dones = append(dones, done)
		mu.Unlock()
		return nil
	})
	eventually(t, fmt.Sprintf("%v messages taken per partition", want), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(taken) == fmt.Sprint(want)
	})
	time.Sleep(300 * time.Millisecond) // nothing more comes
	mu.Lock()
	if fmt.Sprint(taken) != fmt.Sprint(want) {
		t.Errorf("taken per partition %v, want %v", taken, want)
	}
	mu.Unlock()
	// What the window holds back is lag.
	wantLag := int64(keys * perKey)
	for _, n := range want {
		wantLag -= int64(n)
	}
	eventually(t, fmt.Sprintf("lag %d", wantLag), func() bool { return c.Stats().Lag == wantLag })

	// Done releases the rest, the handler now calling done at once.
	for {
		mu.Lock()
		pending := dones
		dones = nil
		n := 0
		for _, k := range taken {
			n += k
		}
		mu.Unlock()
		for _, done := range pending {
			done()
		}
		if n == keys*perKey {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	eventually(t, "no lag once everything was received", func() bool { return c.Stats().Lag == 0 })
}

// TestUndecodableSkipped: a value that is not a PushMsg is logged, counted
// and committed, and the partition goes on.
func TestUndecodableSkipped(t *testing.T) {
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	p := newProducer(t, cfg)
	full, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := full.producerConfig()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sarama.NewSyncProducer(cfg.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	part, _, err := raw.SendMessage(&sarama.ProducerMessage{
		Topic: cfg.Topic,
		Key:   sarama.StringEncoder("node-a"),
		Value: sarama.ByteEncoder{0xff, 0xff, 0xff}, // not a protobuf message
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(t.Context(), pushTo("", 1, "node-a")); err != nil {
		t.Fatal(err)
	}

	c := newConsumer(t, cfg)
	got := make(chan string, 10)
	stop := run(t, c, func(_ context.Context, m *pb.PushMsg, done func()) error {
		got <- m.GetId()
		done()
		return nil
	})
	select {
	case id := <-got:
		if id != "1" {
			t.Fatalf("got message %q, want 1", id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the message after the undecodable one was not delivered")
	}
	stop()
	if n := c.Stats().Undecodable; n != 1 {
		t.Errorf("Undecodable = %d, want 1", n)
	}
	if off := committed(t, cfg, part); off != 2 {
		t.Errorf("committed offset = %d, want 2 (past the undecodable message)", off)
	}
}

// TestBrokerDown: once the cluster is gone, Publish fails with
// queue.ErrUnavailable in bounded time, and Consume still stops on cancel.
func TestBrokerDown(t *testing.T) {
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	p, c := newProducer(t, cfg), newConsumer(t, cfg)
	if err := p.Publish(t.Context(), pushTo("", 0, "node-a")); err != nil {
		t.Fatal(err)
	}
	received := make(chan struct{}, 1)
	stop := run(t, c, func(_ context.Context, _ *pb.PushMsg, done func()) error {
		done()
		select {
		case received <- struct{}{}:
		default:
		}
		return nil
	})
	<-received
	b.Close()

	for i := 1; i <= 2; i++ { // the second publish finds the producer already broken
		start := time.Now()
		err := p.Publish(context.Background(), pushTo("", i, "node-a"))
		elapsed := time.Since(start)
		if !errors.Is(err, queue.ErrUnavailable) {
			t.Fatalf("Publish %d with the broker down: %v, want %v", i, err, queue.ErrUnavailable)
		}
		if elapsed > 10*time.Second {
			t.Errorf("Publish %d took %v with the broker down, want under 10s", i, elapsed)
		}
		t.Logf("publish %d with the broker down: %v after %v", i, err, elapsed.Round(time.Millisecond))
	}

	start := time.Now()
	stop()
	t.Logf("Consume returned %v after cancel with the broker down", time.Since(start).Round(time.Millisecond))

	for name, open := range map[string]func(context.Context) error{
		"producer": func(ctx context.Context) error { _, err := NewProducer(ctx, cfg, testLogger(t)); return err },
		"consumer": func(ctx context.Context) error { _, err := NewConsumer(ctx, cfg, testLogger(t)); return err },
	} {
		start := time.Now()
		err := open(t.Context())
		if !errors.Is(err, queue.ErrUnavailable) {
			t.Errorf("New %s with the broker down: %v, want %v", name, err, queue.ErrUnavailable)
		}
		if elapsed := time.Since(start); elapsed > 10*time.Second {
			t.Errorf("New %s took %v with the broker down", name, elapsed)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	p, c := newProducer(t, cfg), newConsumer(t, cfg)

	if err := p.Publish(t.Context(), nil); err == nil {
		t.Error("Publish(nil) succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Publish(ctx, pushTo("", 0, "a")); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled ctx: %v, want %v", err, context.Canceled)
	}
	if err := c.Consume(t.Context(), nil); err == nil {
		t.Error("Consume(nil handler) succeeded")
	}
	for range 2 {
		if err := p.Close(); err != nil {
			t.Errorf("Producer.Close: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("Consumer.Close: %v", err)
		}
	}
	if err := p.Publish(t.Context(), pushTo("", 1, "a")); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Publish after Close: %v, want %v", err, queue.ErrClosed)
	}
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(t.Context(), func(context.Context, *pb.PushMsg, func()) error { return nil })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Consume after Close: %v", err)
		}
	case <-time.After(time.Second):
		t.Error("Consume after Close did not return at once")
	}
}

// TestTooLarge: a push over the largest record the producer sends is
// refused with queue.ErrTooLarge (not ErrUnavailable: retrying cannot help);
// one of MaxRecordBytes less its framing goes through, and so does the next.
func TestTooLarge(t *testing.T) {
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	p := newProducer(t, cfg)
	big := pushTo("", 0, "a")
	big.Msg = make([]byte, MaxRecordBytes)
	err := p.Publish(t.Context(), big)
	if !errors.Is(err, queue.ErrTooLarge) || errors.Is(err, queue.ErrUnavailable) {
		t.Fatalf("Publish of %d bytes: %v, want %v alone", len(big.Msg), err, queue.ErrTooLarge)
	}
	fits := pushTo("", 1, "a")
	fits.Msg = make([]byte, MaxRecordBytes-4096)
	if err := p.Publish(t.Context(), fits); err != nil {
		t.Fatalf("Publish of %d bytes: %v", len(fits.Msg), err)
	}
	if err := p.Publish(t.Context(), pushTo("", 2, "a")); err != nil {
		t.Fatalf("Publish after a refused one: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	got, err := Config{Brokers: []string{"k:9092"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Brokers: []string{"k:9092"}, Topic: "imcloud-push", Group: "imcloud-job", Partitions: 8,
		ReplicationFactor: 1, ClientID: "imcloud", MaxInFlight: 1024, DialTimeout: 3 * time.Second,
		PublishTimeout: 5 * time.Second, Version: "2.8.0",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	for _, cfg := range []Config{
		{},
		{Brokers: []string{"k:9092"}, ReplicationFactor: -2},
		{Brokers: []string{"k:9092"}, Version: "not a version"},
	} {
		if _, err := NewProducer(t.Context(), cfg, nil); err == nil || errors.Is(err, queue.ErrUnavailable) {
			t.Errorf("NewProducer(%+v): %v, want a configuration error", cfg, err)
		}
	}
	if _, err := (Config{Brokers: []string{"k:9092"}, ReplicationFactor: -1}).withDefaults(); err != nil {
		t.Errorf("replication factor -1 (broker default): %v", err)
	}
	if !strings.Contains(DefaultVersion, ".") {
		t.Error("DefaultVersion is not a version")
	}
}

// TestBrokerHangs: a broker that takes produce requests but never answers
// makes Publish fail with queue.ErrUnavailable after PublishTimeout.
func TestBrokerHangs(t *testing.T) {
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	cfg.PublishTimeout = time.Second
	p := newProducer(t, cfg)
	if err := p.Publish(t.Context(), pushTo("", 0, "node-a")); err != nil {
		t.Fatal(err)
	}
	b.Cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		b.Cluster.KeepControl()
		return nil, nil, true // handled, never answered
	})
	start := time.Now()
	err := p.Publish(context.Background(), pushTo("", 1, "node-a"))
	elapsed := time.Since(start)
	if !errors.Is(err, queue.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish to a hung broker: %v, want %v and %v", err, queue.ErrUnavailable, context.DeadlineExceeded)
	}
	if elapsed > 3*time.Second {
		t.Errorf("Publish to a hung broker took %v, want about PublishTimeout (1s)", elapsed)
	}
	b.Close() // so that Close does not wait for sarama's read timeouts
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTopicRecreated: a topic that goes missing under a running producer
// (deleted, or lost by a broker that kept it in memory) is created again,
// and publishing recovers by itself.
func TestTopicRecreated(t *testing.T) {
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	cfg.Partitions = 2
	cfg.PublishTimeout = 3 * time.Second
	p := newProducer(t, cfg)
	msg := &pb.PushMsg{Id: "r1", Type: pb.PushMsg_ROOM, Room: "live://1", Msg: []byte("x")}
	if err := p.Publish(t.Context(), msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := newAdmin(t, cfg).DeleteTopic(cfg.Topic); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	failed := false
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := p.Publish(t.Context(), msg)
		if err == nil {
			break
		}
		failed = true
		if time.Now().After(deadline) {
			t.Fatalf("publishing did not recover after the topic was deleted: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	md, err := newAdmin(t, cfg).DescribeTopics([]string{cfg.Topic})
	if err != nil || len(md) != 1 || !errors.Is(md[0].Err, sarama.ErrNoError) || len(md[0].Partitions) != 2 {
		t.Fatalf("topic after recovery: %+v, %v; want it back with 2 partitions", md, err)
	}
	t.Logf("publishes failed while the topic was missing: %v", failed)
}

// TestAckedMeansStored: every publish the producer acknowledged is in the
// topic, also when produce requests fail and are retried while other
// publishes keep arriving (sarama's idempotent producer sent messages that
// arrived during a retry without their sequence numbers, and the broker
// took them for duplicates: acknowledged, never stored).
func TestAckedMeansStored(t *testing.T) {
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	cfg.Partitions = 1
	cfg.PublishTimeout = 10 * time.Second
	p := newProducer(t, cfg)
	var produces atomic.Int32
	b.Cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		b.Cluster.KeepControl()
		if n := produces.Add(1); n%4 != 2 {
			return nil, nil, false // served as usual
		}
		// Every fourth produce request fails with a retriable error.
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range pr.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	const writers, each = 6, 40
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				m := pushTo(fmt.Sprintf("w%d-", w), i, "node-a")
				if err := p.Publish(context.Background(), m); err == nil {
					mu.Lock()
					acked[m.Id] = true
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if produces.Load() < 4 {
		t.Fatalf("only %d produce requests: no retry happened", produces.Load())
	}
	log := readTopic(t, cfg, 0)
	stored := map[string]bool{}
	last := map[string]int{} // writer -> its last message in the log
	for _, id := range log {
		stored[id] = true
		w, n, _ := strings.Cut(id, "-")
		i, _ := strconv.Atoi(n)
		if prev, ok := last[w]; ok && i < prev {
			t.Errorf("writer %s: message %d stored after %d (each publish waited for the one before)", w, i, prev)
		}
		last[w] = max(last[w], i)
	}
	var lost []string
	for id := range acked {
		if !stored[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		slices.Sort(lost)
		t.Errorf("%d of %d acknowledged publishes are not in the topic: %v", len(lost), len(acked), lost)
	}
	t.Logf("%d of %d publishes acknowledged, %d stored (repeats included), %d produce requests",
		len(acked), writers*each, len(log), produces.Load())
}

// readTopic returns the push ids stored in partition part of cfg's topic,
// in offset order.
func readTopic(t *testing.T, cfg Config, part int32) []string {
	t.Helper()
	c, err := sarama.NewConsumer(cfg.Brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client, err := sarama.NewClient(cfg.Brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	hwm, err := client.GetOffset(cfg.Topic, part, sarama.OffsetNewest)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	if hwm == 0 {
		return out
	}
	pc, err := c.ConsumePartition(cfg.Topic, part, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-pc.Messages():
			var pm pb.PushMsg
			if err := proto.Unmarshal(m.Value, &pm); err != nil {
				t.Fatal(err)
			}
			out = append(out, pm.GetId())
			if m.Offset+1 >= hwm {
				return out
			}
		case <-timeout:
			t.Fatalf("read %d messages of %d", len(out), hwm)
		}
	}
}

// TestRecoversPromptlyAfterBrokerRestart: a broker that comes back (here
// empty, as a broker that kept its topic in memory) is published to again
// within a few seconds, on every key. sarama opens a circuit breaker per
// partition after three failed leader lookups and keeps it open 10 s
// (re-opened by every failed half-open try), so partitions that took
// publishes during the outage went on failing with "circuit breaker is open"
// for up to 10 s after the broker was back.
func TestRecoversPromptlyAfterBrokerRestart(t *testing.T) {
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	cfg.Partitions = 4
	cfg.PublishTimeout = 2 * time.Second
	p := newProducer(t, cfg)
	keys := []string{"node-a", "node-b", "node-c", "node-d", "node-e", "node-f"}
	for i, k := range keys {
		if err := p.Publish(t.Context(), pushTo("", i, k)); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	// Publish on every key until the breakers are open.
	sawOpen := false
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end) && !sawOpen; {
		for i, k := range keys {
			err := p.Publish(t.Context(), pushTo("", i, k))
			if err == nil {
				t.Fatal("publish succeeded with the broker down")
			}
			sawOpen = sawOpen || strings.Contains(err.Error(), "circuit breaker is open")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawOpen {
		t.Log("no circuit breaker opened during the outage")
	}
	restartBroker(t, b)
	back := time.Now()
	const within = 4 * time.Second
	for i, k := range keys {
		for {
			err := p.Publish(t.Context(), pushTo("", i, k))
			if err == nil {
				break
			}
			if time.Since(back) > within {
				t.Fatalf("publish on key %s still fails %v after the broker came back: %v", k, within, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("every key published again %v after the broker came back", time.Since(back).Round(time.Millisecond))
}

// restartBroker starts an empty one-broker cluster on the port of b, which
// has been closed, as a broker restarted without its data.
func restartBroker(t *testing.T, b *kafkatest.Broker) {
	t.Helper()
	_, port, err := net.SplitHostPort(b.Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	portNum, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(portNum))
		if err == nil {
			t.Cleanup(c.Close)
			return
		}
		if time.Now().After(end) { // the port may take a moment to free
			t.Fatalf("could not restart the broker on port %d: %v", portNum, err)
		}
	}
}

// TestConsumerSaysWhenItConsumesAgain: after the broker was down, the
// consumer logs that it consumes again (it had logged only its failures, so
// an operator could not tell from the job's log that it recovered), and
// receives what is published then.
func TestConsumerSaysWhenItConsumesAgain(t *testing.T) {
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	cfg.Partitions = 1
	p := newProducer(t, cfg)
	core, logs := observer.New(zapcore.InfoLevel)
	c, err := NewConsumer(t.Context(), cfg, zap.New(zapcore.NewTee(core, testLogger(t).Core())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	got := make(chan string, 16)
	stop := run(t, c, func(_ context.Context, m *pb.PushMsg, done func()) error {
		done()
		got <- m.GetId()
		return nil
	})
	defer stop()
	if err := p.Publish(t.Context(), &pb.PushMsg{Id: "before", Type: pb.PushMsg_ROOM, Room: "live://1"}); err != nil {
		t.Fatal(err)
	}
	if id := <-got; id != "before" {
		t.Fatalf("received %q", id)
	}
	if n := logs.FilterMessage("kafka consumer group consuming again").Len(); n != 0 {
		t.Fatalf("%d 'consuming again' logs before any failure", n)
	}
	b.Close()
	eventually(t, "a session failure logged", func() bool {
		return logs.FilterMessage("kafka consumer group session failed, retrying").Len() > 0
	})
	restartBroker(t, b)
	full, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if err := ensureTopic(t.Context(), full, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "'consuming again' logged", func() bool {
		return logs.FilterMessage("kafka consumer group consuming again").Len() == 1
	})
	eventually(t, "a push published after the restart received", func() bool {
		if err := p.Publish(t.Context(), &pb.PushMsg{Id: "after", Type: pb.PushMsg_ROOM, Room: "live://1"}); err != nil {
			return false
		}
		for {
			select {
			case id := <-got:
				if id == "after" {
					return true
				}
			case <-time.After(2 * time.Second):
				return false
			}
		}
	})
}
