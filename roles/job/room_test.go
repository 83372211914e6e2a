package job

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/protocol/pb"
)

func bodies(fs []protocol.Frame) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f.Body)
	}
	return out
}

func seqBodies(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, prefix+strconv.Itoa(i))
	}
	return out
}

// roomGroups returns, per room call, the bodies of its frames; and checks
// that each call's ids match its frames one to one.
func roomGroups(t *testing.T, calls []nodeCall) [][]string {
	t.Helper()
	var out [][]string
	for _, c := range calls {
		fs := roomFrames(t, []nodeCall{c})
		if len(c.room.GetIds()) != len(fs) {
			t.Fatalf("room call with %d ids for %d frames", len(c.room.GetIds()), len(fs))
		}
		for i, f := range fs {
			if c.room.GetIds()[i] != "id-"+string(f.Body) {
				t.Fatalf("room call: id %q for frame %q", c.room.GetIds()[i], f.Body)
			}
		}
		out = append(out, bodies(fs))
	}
	return out
}

// TestRoomBatchWindow: the first message of a burst goes out at once and
// alone (leading edge); the rest of the burst wait out the window and go in
// one or a few calls, frames concatenated in publish order; after a quiet
// window the next message is again sent at once.
func TestRoomBatchWindow(t *testing.T) {
	const window = 50 * time.Millisecond
	cl := newCluster()
	cl.register(t, "n1", "n2")
	cfg := testConfig()
	cfg.RoomBatchWindow = window
	cfg.RoomBatchSize = 1000
	j := startJob(t, cl, cfg, nil)
	batches := j.metrics.RoomBatches

	handle(t, j.Job, roomMsg("id-m0", "live://1", 1000, "m0"))
	// The leading-edge flush happens inside Handle.
	if v := metricValue(t, batches.WithLabelValues("idle")); v != 1 {
		t.Fatalf("first message not flushed at once: idle batches = %v", v)
	}
	const burst = 30
	for i := 1; i < burst; i++ {
		handle(t, j.Job, roomMsg("id-m"+strconv.Itoa(i), "live://1", 1000, "m"+strconv.Itoa(i)))
	}
	for _, id := range []string{"n1", "n2"} {
		n := cl.node(id)
		eventually(t, "the whole burst on "+id, func() bool { return len(roomFrames(t, n.snapshot())) == burst })
		groups := roomGroups(t, n.snapshot())
		if !slices.Equal(groups[0], []string{"m0"}) {
			t.Errorf("%s: first call %q, want m0 alone", id, groups[0])
		}
		if got := bodies(roomFrames(t, n.snapshot())); !slices.Equal(got, seqBodies("m", 0, burst)) {
			t.Errorf("%s: frames out of order: %q", id, got)
		}
		// One window batch normally; a stalled machine may split the burst
		// at window boundaries, but it is never sent message by message.
		if len(groups) < 2 || len(groups) > 6 {
			t.Errorf("%s: burst of %d went out in %d calls %q", id, burst, len(groups), groups)
		}
		for _, c := range n.snapshot() {
			if c.room.GetRoom() != "live://1" {
				t.Errorf("%s: call for room %q", id, c.room.GetRoom())
			}
		}
	}
	if v := metricValue(t, batches.WithLabelValues("window")); v < 1 {
		t.Errorf("window batches = %v", v)
	}
	if v := metricValue(t, batches.WithLabelValues("full")); v != 0 {
		t.Errorf("full batches = %v", v)
	}

	// Quiet for more than a window: leading edge again.
	time.Sleep(2 * window)
	handle(t, j.Job, roomMsg("id-late", "live://1", 1000, "late"))
	if v := metricValue(t, batches.WithLabelValues("idle")); v != 2 {
		t.Errorf("message after a quiet window not flushed at once: idle batches = %v", v)
	}
	n1 := cl.node("n1")
	eventually(t, "late message delivered", func() bool { return len(roomFrames(t, n1.snapshot())) == burst+1 })
	groups := roomGroups(t, n1.snapshot())
	if last := groups[len(groups)-1]; !slices.Equal(last, []string{"late"}) {
		t.Errorf("last call %q, want late alone", last)
	}

	// Rooms batch independently: another room's first message is its own
	// leading edge.
	handle(t, j.Job, roomMsg("id-other", "live://2", 1000, "other"))
	if v := metricValue(t, batches.WithLabelValues("idle")); v != 3 {
		t.Errorf("first message of another room not flushed at once: idle batches = %v", v)
	}
}

// TestRoomBatchFlushEarly: a batch that reaches RoomBatchSize messages or
// RoomBatchBytes bytes goes out without waiting for the window (which is
// an hour here, so every flush below is an early one), and what is left
// at shutdown is flushed then.
func TestRoomBatchFlushEarly(t *testing.T) {
	frameLen := func(body int) int { return protocol.HeaderLen + body }
	tests := []struct {
		name      string
		size      int
		bytes     int
		body      int // message body length
		n         int
		want      [][]int // message indexes per call, before shutdown
		wantFinal []int   // flushed at shutdown
	}{
		{"size 3", 3, 0, 4, 10, [][]int{{0}, {1, 2, 3}, {4, 5, 6}, {7, 8, 9}}, nil},
		{"size 3 leaves a rest", 3, 0, 4, 9, [][]int{{0}, {1, 2, 3}, {4, 5, 6}}, []int{7, 8}},
		{"size 1", 1, 0, 4, 4, [][]int{{0}, {1}, {2}, {3}}, nil},
		{"bytes", 100, 2*frameLen(40) + 1, 40, 8, [][]int{{0}, {1, 2, 3}, {4, 5, 6}}, []int{7}},
		{"one message over bytes", 100, 10, 40, 3, [][]int{{0}, {1}, {2}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCluster()
			cl.register(t, "n1")
			cfg := testConfig()
			cfg.RoomBatchWindow = time.Hour
			cfg.RoomBatchSize = tt.size
			cfg.RoomBatchBytes = tt.bytes
			j := startJob(t, cl, cfg, nil)
			name := func(i int) string {
				s := fmt.Sprintf("%03d", i)
				return s + strings.Repeat(".", tt.body-len(s))
			}
			for i := range tt.n {
				handle(t, j.Job, roomMsg("id-"+name(i), "r", 1000, name(i)))
			}
			toNames := func(groups [][]int) [][]string {
				var out [][]string
				for _, g := range groups {
					var names []string
					for _, i := range g {
						names = append(names, name(i))
					}
					out = append(out, names)
				}
				return out
			}
			want := toNames(tt.want)
			n := cl.node("n1")
			got := roomGroups(t, n.waitCalls(t, len(want)))
			if !slices.EqualFunc(got, want, slices.Equal) {
				t.Fatalf("calls = %q, want %q", got, want)
			}
			j.stop()
			if tt.wantFinal != nil {
				want = append(want, toNames([][]int{tt.wantFinal})...)
				if v := metricValue(t, j.metrics.RoomBatches.WithLabelValues("shutdown")); v != 1 {
					t.Errorf("shutdown batches = %v", v)
				}
			}
			// Run has returned: every worker drained, nothing more will come.
			if got := roomGroups(t, n.snapshot()); !slices.EqualFunc(got, want, slices.Equal) {
				t.Fatalf("after shutdown calls = %q, want %q", got, want)
			}
		})
	}
}

// TestRoomWindowZero: without a window every message goes out alone.
func TestRoomWindowZero(t *testing.T) {
	cl := newCluster()
	cl.register(t, "n1")
	cfg := testConfig()
	cfg.RoomBatchWindow = 0
	j := startJob(t, cl, cfg, nil)
	for i := range 10 {
		handle(t, j.Job, roomMsg("id-"+strconv.Itoa(i), "r", 1000, strconv.Itoa(i)))
	}
	got := roomGroups(t, cl.node("n1").waitCalls(t, 10))
	for i, g := range got {
		if !slices.Equal(g, []string{strconv.Itoa(i)}) {
			t.Fatalf("call %d = %q", i, g)
		}
	}
}

// TestRoomOrderUnderLoad: several rooms published concurrently (one
// publisher per room, as the queue guarantees), 200 messages each with
// random small pauses that straddle the window: every node gets every
// message of every room exactly once, in publish order.
func TestRoomOrderUnderLoad(t *testing.T) {
	cl := newCluster()
	nodes := []string{"n1", "n2", "n3"}
	cl.register(t, nodes...)
	cfg := testConfig()
	cfg.RoomBatchWindow = 2 * time.Millisecond
	cfg.RoomBatchSize = 8
	j := startJob(t, cl, cfg, nil)

	const perRoom = 200
	rooms := []string{"live://a", "live://b", "live://c", "live://d"}
	var wg sync.WaitGroup
	for ri, room := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(ri), 42))
			for i := range perRoom {
				body := room + "#" + strconv.Itoa(i)
				if err := j.Handle(t.Context(), roomMsg("id-"+body, room, 1000, body)); err != nil {
					t.Errorf("Handle: %v", err)
					return
				}
				if r.IntN(4) == 0 {
					time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
				}
			}
		}()
	}
	wg.Wait()
	for _, id := range nodes {
		n := cl.node(id)
		eventually(t, "every frame on "+id, func() bool { return len(roomFrames(t, n.snapshot())) == perRoom*len(rooms) })
		calls := n.snapshot()
		roomGroups(t, calls) // ids match frames
		per := map[string][]string{}
		for _, c := range calls {
			fs := roomFrames(t, []nodeCall{c})
			for _, f := range fs {
				room, _, _ := strings.Cut(string(f.Body), "#")
				if room != c.room.GetRoom() {
					t.Fatalf("%s: frame %q in a call for %q", id, f.Body, c.room.GetRoom())
				}
				per[room] = append(per[room], string(f.Body))
			}
			if len(fs) > cfg.RoomBatchSize {
				t.Errorf("%s: a call with %d frames, over the batch size", id, len(fs))
			}
		}
		for _, room := range rooms {
			if got, want := per[room], seqBodies(room+"#", 0, perRoom); !slices.Equal(got, want) {
				t.Errorf("%s: room %s out of order or incomplete: %d frames", id, room, len(got))
			}
		}
	}
	if v := metricValue(t, j.metrics.Dropped.WithLabelValues("node_queue_full")); v != 0 {
		t.Errorf("dropped %v deliveries", v)
	}
}

// TestBusyNodeMergesRoomBatches: batches of one room that queue up behind a
// busy node's call go out as one call, in order, with every done called;
// a batch of another room in between is neither merged nor reordered
// against its own room.
func TestBusyNodeMergesRoomBatches(t *testing.T) {
	cl := newCluster()
	cl.register(t, "n1")
	cfg := testConfig()
	cfg.NoMerge = false
	cfg.RoomBatchWindow = 0 // every message is its own batch
	j := startJob(t, cl, cfg, nil)
	n := cl.node("n1")
	n.hold()
	var done atomic.Int32
	handleAsync := func(m *pb.PushMsg) {
		t.Helper()
		if err := j.HandleAsync(context.Background(), m, func() { done.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	handleAsync(roomMsg("0", "a", 1000, "a#0"))
	eventually(t, "first call held", func() bool { _, e := n.counts(); return e == 1 })
	for i := 1; i <= 5; i++ {
		handleAsync(roomMsg(strconv.Itoa(i), "a", 1000, "a#"+strconv.Itoa(i)))
	}
	handleAsync(roomMsg("b0", "b", 1000, "b#0"))
	handleAsync(roomMsg("6", "a", 1000, "a#6"))
	n.release()
	calls := n.waitCalls(t, 4)
	var shapes []string
	for _, c := range calls {
		var bodies []string
		for _, f := range roomFrames(t, []nodeCall{c}) {
			bodies = append(bodies, string(f.Body))
		}
		shapes = append(shapes, strings.Join(bodies, ","))
		if len(c.room.GetIds()) != len(bodies) {
			t.Errorf("call %v: %d ids for %d frames", bodies, len(c.room.GetIds()), len(bodies))
		}
	}
	want := []string{"a#0", "a#1,a#2,a#3,a#4,a#5", "b#0", "a#6"}
	if !slices.Equal(shapes, want) {
		t.Errorf("calls %q, want %q", shapes, want)
	}
	eventually(t, "every done called", func() bool { return done.Load() == 8 })
	if v := metricValue(t, j.metrics.Merged); v != 4 {
		t.Errorf("merged counter = %v, want 4", v)
	}
}
