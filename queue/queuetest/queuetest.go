package queuetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue"
)

// waitFor bounds every wait in the suite; generous so a real broker passes.
const waitFor = 30 * time.Second

// Run runs the queue contract suite. newPair is called once per subtest and
// returns a producer and a consumer on the same queue (the same value for the
// memory backend); the suite closes both when the subtest ends, so Close must
// tolerate being called on a pair that is one value, and a factory that also
// closes them in its own cleanup must tolerate a second Close.
//
// The contract: every PushMsg field survives the round trip; order holds per
// queue.Key; the handler never runs concurrently for one key; concurrent
// Consume calls on one Consumer share the messages (as consumers of one
// group), each message going to one of them; a handler error redelivers the
// same message before any later message of its key; Consume returns nil
// after its ctx is cancelled and after Close; Publish after Close fails with
// queue.ErrClosed. A publish that fails with queue.ErrFull or
// queue.ErrUnavailable is retried, so a small bounded queue passes too.
func Run(t *testing.T, newPair func(t *testing.T) (queue.Producer, queue.Consumer)) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, p queue.Producer, c queue.Consumer)
	}{
		{"RoundTrip", testRoundTrip},
		{"PerKeyOrder", testPerKeyOrder},
		{"TwoConsumersShare", testTwoConsumers},
		{"RedeliverOnError", testRedeliver},
		{"DoneLater", testDoneLater},
		{"ConsumeReturnsOnCancel", testConsumeCancel},
		{"ConsumeReturnsOnClose", testConsumeClose},
		{"PublishAfterClose", testPublishAfterClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, c := newPair(t)
			t.Cleanup(func() {
				// Errors are ignored: p and c may be one value, closed twice.
				_ = p.Close()
				_ = c.Close()
			})
			tt.fn(t, p, c)
		})
	}
}

// prefix returns an id prefix unique to this subtest and run.
func prefix(t *testing.T) string {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	return fmt.Sprintf("%s-%d-%d-", name, time.Now().UnixNano(), rand.Uint32())
}

// publish publishes m, retrying while the queue is full or unavailable.
func publish(t *testing.T, p queue.Producer, m *pb.PushMsg) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	for {
		err := p.Publish(ctx, m)
		if err == nil {
			return
		}
		if !errors.Is(err, queue.ErrFull) && !errors.Is(err, queue.ErrUnavailable) {
			t.Fatalf("Publish(%s): %v", m.GetId(), err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Publish(%s): still %v after %v", m.GetId(), err, waitFor)
		case <-time.After(time.Millisecond):
		}
	}
}

// consume runs c.Consume(h) in a goroutine until the subtest ends. The
// returned stop cancels it and waits for it; it reports Consume's error, or
// fails the test if Consume does not return within waitFor.
func consume(t *testing.T, c queue.Consumer, h queue.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Consume(ctx, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(waitFor):
				err = fmt.Errorf("Consume did not return %v after its ctx was cancelled", waitFor)
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Consume: %v", err)
		}
	})
	return stop
}

// recorder collects what handlers see, for messages of one subtest.
type recorder struct {
	prefix string

	mu       sync.Mutex
	got      []*pb.PushMsg
	inFlight map[string]bool // key -> a handler call is running
	overlap  []string        // keys seen handled concurrently
	changed  chan struct{}   // cap 1: signalled after each recorded message
}

func newRecorder(prefix string) *recorder {
	return &recorder{prefix: prefix, inFlight: make(map[string]bool), changed: make(chan struct{}, 1)}
}

// handle wraps next (nil: accept) with recording and the per-key overlap
// check. Messages of other subtests are accepted and not recorded.
func (r *recorder) handle(next queue.Handler) queue.Handler {
	return func(ctx context.Context, m *pb.PushMsg, done func()) error {
		if !strings.HasPrefix(m.GetId(), r.prefix) {
			done()
			return nil
		}
		key := queue.Key(m)
		r.mu.Lock()
		if r.inFlight[key] {
			r.overlap = append(r.overlap, key)
		}
		r.inFlight[key] = true
		r.mu.Unlock()

		var err error
		if next != nil {
			err = next(ctx, m, done)
		} else {
			done()
		}

		r.mu.Lock()
		r.inFlight[key] = false
		r.got = append(r.got, m)
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
		return err
	}
}

// wait blocks until at least n messages are recorded, failing the test after
// waitFor, and returns a copy of them.
func (r *recorder) wait(t *testing.T, n int) []*pb.PushMsg {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		r.mu.Lock()
		got := len(r.got)
		r.mu.Unlock()
		if got >= n {
			break
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("received %d of %d messages within %v", got, n, waitFor)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.overlap) > 0 {
		t.Errorf("handler ran concurrently for keys %q", r.overlap)
	}
	return append([]*pb.PushMsg(nil), r.got...)
}

// settle waits briefly for deliveries beyond those expected and returns all.
func (r *recorder) settle() []*pb.PushMsg {
	time.Sleep(100 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*pb.PushMsg(nil), r.got...)
}

// seq is a message's sequence number, the id's suffix after the last "-".
func seq(t *testing.T, m *pb.PushMsg) int {
	t.Helper()
	id := m.GetId()
	n, err := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
	if err != nil {
		t.Fatalf("message id %q has no sequence number", id)
	}
	return n
}

// msgFor returns message i of a test, keyed by key (a server for PUSH, a room
// for ROOM, an operation for BROADCAST).
func msgFor(pre string, i int, typ pb.PushMsg_Type, key string) *pb.PushMsg {
	m := &pb.PushMsg{
		Version:   1,
		Id:        pre + strconv.Itoa(i),
		CreatedAt: time.Now().UnixMilli(),
		Type:      typ,
		Operation: 1000,
		Msg:       []byte(strconv.Itoa(i)),
	}
	switch typ {
	case pb.PushMsg_PUSH:
		m.Server, m.Keys = key, []string{"k" + strconv.Itoa(i)}
	case pb.PushMsg_ROOM:
		m.Room = key
	default:
		op, _ := strconv.Atoi(key)
		m.Operation = int32(op)
	}
	return m
}

func testRoundTrip(t *testing.T, p queue.Producer, c queue.Consumer) {
	pre := prefix(t)
	full := func(id string, typ pb.PushMsg_Type) *pb.PushMsg {
		return &pb.PushMsg{
			Version:   1,
			Id:        pre + id,
			CreatedAt: 1700000000123,
			Type:      typ,
			Operation: 1001,
			Speed:     250,
			Server:    "cloud-1:3109",
			Room:      "live://1000",
			Keys:      []string{"key-a", "key-b", ""},
			Msg:       []byte{0, 1, 2, 0xfe, 0xff, '{', '}'},
		}
	}
	tests := []struct {
		name string
		want *pb.PushMsg
	}{
		{"push all fields", full("push", pb.PushMsg_PUSH)},
		{"room all fields", full("room", pb.PushMsg_ROOM)},
		{"broadcast all fields", full("broadcast", pb.PushMsg_BROADCAST)},
		{"zero values", &pb.PushMsg{Id: pre + "zero"}},
		{"large body", &pb.PushMsg{Id: pre + "large", Server: "s", Msg: make([]byte, 64<<10)}},
	}
	r := newRecorder(pre)
	consume(t, c, r.handle(nil))
	for _, tt := range tests {
		// Publish a clone: the producer must not modify m after Publish.
		publish(t, p, proto.Clone(tt.want).(*pb.PushMsg))
	}
	byID := make(map[string]*pb.PushMsg)
	for _, m := range r.wait(t, len(tests)) {
		byID[m.GetId()] = m
	}
	for _, tt := range tests {
		got, ok := byID[tt.want.GetId()]
		switch {
		case !ok:
			t.Errorf("%s: not received", tt.name)
		case !proto.Equal(got, tt.want):
			t.Errorf("%s: received %v, want %v", tt.name, got, tt.want)
		}
	}
}

func testPerKeyOrder(t *testing.T, p queue.Producer, c queue.Consumer) {
	const total = 1000
	pre := prefix(t)
	keys := []struct {
		typ pb.PushMsg_Type
		key string
	}{
		{pb.PushMsg_PUSH, pre + "node-a"},
		{pb.PushMsg_PUSH, pre + "node-b"},
		{pb.PushMsg_PUSH, pre + "node-c"},
		{pb.PushMsg_ROOM, "live://" + pre + "1"},
		{pb.PushMsg_ROOM, "live://" + pre + "2"},
		{pb.PushMsg_BROADCAST, "1007"},
	}
	r := newRecorder(pre)
	consume(t, c, r.handle(nil))
	for i := range total {
		k := keys[rand.IntN(len(keys))]
		publish(t, p, msgFor(pre, i, k.typ, k.key))
	}
	got := r.wait(t, total)
	got = append(got, r.settle()[len(got):]...)
	if len(got) != total {
		t.Errorf("received %d messages, want %d", len(got), total)
	}
	last := make(map[string]int)
	seen := make(map[int]bool)
	for _, m := range got {
		n, key := seq(t, m), queue.Key(m)
		if seen[n] {
			t.Errorf("message %d delivered twice", n)
		}
		seen[n] = true
		if prev, ok := last[key]; ok && n < prev {
			t.Errorf("key %q: message %d delivered after %d", key, n, prev)
		}
		last[key] = n
	}
}

func testTwoConsumers(t *testing.T, p queue.Producer, c queue.Consumer) {
	const total = 400
	pre := prefix(t)
	// One recorder for both consumers checks per-key exclusivity across them.
	r := newRecorder(pre)
	var mu sync.Mutex
	count := [2]int{}
	for i := range 2 {
		consume(t, c, r.handle(func(_ context.Context, _ *pb.PushMsg, done func()) error {
			mu.Lock()
			count[i]++
			mu.Unlock()
			done()
			return nil
		}))
	}
	for i := range total {
		publish(t, p, msgFor(pre, i, pb.PushMsg_PUSH, fmt.Sprintf("%snode-%d", pre, i%8)))
	}
	got := r.wait(t, total)
	got = append(got, r.settle()[len(got):]...)
	seen := make(map[int]int)
	for _, m := range got {
		seen[seq(t, m)]++
	}
	for i := range total {
		if seen[i] != 1 {
			t.Errorf("message %d delivered %d times, want 1", i, seen[i])
		}
	}
	mu.Lock()
	t.Logf("consumer shares: %v", count)
	mu.Unlock()
}

func testRedeliver(t *testing.T, p queue.Producer, c queue.Consumer) {
	pre := prefix(t)
	key, other := pre+"node-a", pre+"node-b"
	failID := pre + "1" // its first delivery fails
	var mu sync.Mutex
	failed := false
	r := newRecorder(pre)
	consume(t, c, r.handle(func(_ context.Context, m *pb.PushMsg, done func()) error {
		mu.Lock()
		defer mu.Unlock()
		if m.GetId() == failID && !failed {
			failed = true
			return errors.New("queuetest: refused once")
		}
		done()
		return nil
	}))
	for i := range 4 {
		publish(t, p, msgFor(pre, i, pb.PushMsg_PUSH, key))
	}
	publish(t, p, msgFor(pre, 4, pb.PushMsg_PUSH, other))
	got := r.wait(t, 6) // 5 messages, one of them twice
	got = append(got, r.settle()[len(got):]...)
	var order []int
	for _, m := range got {
		if queue.Key(m) == key {
			order = append(order, seq(t, m))
		}
	}
	want := []int{0, 1, 1, 2, 3}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("deliveries of key %q: %v, want %v (the refused message again before later ones)", key, order, want)
	}
}

// testDoneLater: the consumer hands over later messages of a key while
// earlier ones are taken but not yet done, and done may come from another
// goroutine, in any order.
func testDoneLater(t *testing.T, p queue.Producer, c queue.Consumer) {
	const total = 20
	pre := prefix(t)
	key := pre + "node"
	var mu sync.Mutex
	var pending []func()
	r := newRecorder(pre)
	consume(t, c, r.handle(func(_ context.Context, _ *pb.PushMsg, done func()) error {
		mu.Lock()
		pending = append(pending, done)
		mu.Unlock()
		return nil
	}))
	for i := range total {
		publish(t, p, msgFor(pre, i, pb.PushMsg_PUSH, key))
	}
	got := r.wait(t, total) // all taken although none is done yet
	for i, m := range got {
		if seq(t, m) != i {
			t.Fatalf("message %d arrived as number %d", seq(t, m), i)
		}
	}
	mu.Lock()
	dones := pending
	mu.Unlock()
	var wg sync.WaitGroup
	for i := len(dones) - 1; i >= 0; i-- {
		wg.Add(1)
		go func() { defer wg.Done(); dones[i]() }()
	}
	wg.Wait()
}

func testConsumeCancel(t *testing.T, p queue.Producer, c queue.Consumer) {
	pre := prefix(t)
	r := newRecorder(pre)
	stop := consume(t, c, r.handle(nil))
	publish(t, p, msgFor(pre, 0, pb.PushMsg_PUSH, pre+"node"))
	r.wait(t, 1)
	if err := stop(); err != nil {
		t.Fatalf("Consume after cancel: %v, want nil", err)
	}
}

func testConsumeClose(t *testing.T, p queue.Producer, c queue.Consumer) {
	pre := prefix(t)
	r := newRecorder(pre)
	done := make(chan error, 1)
	go func() { done <- c.Consume(t.Context(), r.handle(nil)) }()
	publish(t, p, msgFor(pre, 0, pb.PushMsg_PUSH, pre+"node"))
	r.wait(t, 1)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Consume after Close: %v, want nil", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("Consume did not return %v after Close", waitFor)
	}
}

func testPublishAfterClose(t *testing.T, p queue.Producer, _ queue.Consumer) {
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err := p.Publish(t.Context(), &pb.PushMsg{Id: prefix(t) + "0", Server: "s"})
	if !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want %v", err, queue.ErrClosed)
	}
}
