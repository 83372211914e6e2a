package kafka

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue/kafka/kafkatest"
)

// TestGroupMembersShare runs the consumer group as several jobs do: members
// join and leave (Close) while messages are published. Every message is
// handled, none twice (a member that leaves commits what it handled, and
// the next owner starts there), each key's messages in order, and the
// members that join get a share of the partitions.
func TestGroupMembersShare(t *testing.T) {
	const (
		partitions = 6
		keys       = 12
		total      = 900
	)
	b := kafkatest.Start(t)
	cfg := testConfig(t, b)
	cfg.Partitions = partitions
	p := newProducer(t, cfg)

	type receipt struct {
		member string
		seq    int
	}
	var (
		mu       sync.Mutex
		byKey    = make(map[string][]receipt)
		byMember = make(map[string]int)
		received int
	)
	handler := func(member string) func(context.Context, *pb.PushMsg, func()) error {
		return func(_ context.Context, m *pb.PushMsg, done func()) error {
			seq, err := strconv.Atoi(strings.TrimPrefix(m.GetId(), m.GetServer()+"/"))
			if err != nil {
				t.Errorf("message id %q", m.GetId())
			}
			mu.Lock()
			byKey[m.GetServer()] = append(byKey[m.GetServer()], receipt{member, seq})
			byMember[member]++
			received++
			mu.Unlock()
			done()
			return nil
		}
	}
	receivedAtLeast := func(n int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return received >= n }
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			key := "node-" + strconv.Itoa(i%keys)
			m := pushTo("", i, key)
			m.Id = key + "/" + strconv.Itoa(i/keys)
			if err := p.Publish(t.Context(), m); err != nil {
				t.Fatal(err)
			}
		}
	}

	first := newConsumer(t, cfg)
	run(t, first, handler("first"))
	publish(0, 150)
	eventually(t, "150 messages on the first member", receivedAtLeast(150))

	second := newConsumer(t, cfg)
	run(t, second, handler("second"))
	sessions(t, second, 1)
	publish(150, 450)
	eventually(t, "450 messages", receivedAtLeast(450))

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	sessions(t, second, 2)
	publish(450, 600)
	eventually(t, "600 messages", receivedAtLeast(600))

	third := newConsumer(t, cfg)
	run(t, third, handler("third"))
	sessions(t, third, 1)
	publish(600, total)
	eventually(t, fmt.Sprintf("%d messages", total), receivedAtLeast(total))

	mu.Lock()
	defer mu.Unlock()
	if received != total {
		t.Errorf("received %d messages, want %d (no repeats)", received, total)
	}
	for key, rs := range byKey {
		for i, r := range rs {
			if r.seq != i {
				t.Errorf("key %s: message %d was seq %d (from %s), want %d: %v", key, i, r.seq, r.member, i, rs)
				break
			}
		}
	}
	for _, m := range []string{"second", "third"} {
		if byMember[m] == 0 {
			t.Errorf("member %s got no partition: %v", m, byMember)
		}
	}
	t.Logf("messages per member: %v", byMember)
}

// sessions waits until c has joined at least n group sessions: the
// rebalance that adds or removes a member is then complete.
func sessions(t testing.TB, c *Consumer, n int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d group sessions", n), func() bool { return c.Stats().Sessions >= n })
}
