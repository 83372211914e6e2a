package job

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol/pb"
)

// doneCounter is a HandleAsync done callback that counts its calls.
type doneCounter struct{ n atomic.Int32 }

func (d *doneCounter) done()        { d.n.Add(1) }
func (d *doneCounter) count() int32 { return d.n.Load() }

func handleAsync(t *testing.T, j *Job, m *pb.PushMsg, d *doneCounter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := j.HandleAsync(ctx, m, d.done); err != nil {
		t.Fatalf("HandleAsync: %v", err)
	}
}

// TestHandleAsyncDoneOnDrop: a message that is not delivered is done at
// once, before HandleAsync returns.
func TestHandleAsyncDoneOnDrop(t *testing.T) {
	old := pushMsg("x", "n1", nil, 1000, "")
	old.CreatedAt = time.Now().Add(-time.Hour).UnixMilli()
	badType := broadcastMsg("x", 1000, 0, "")
	badType.Type = pb.PushMsg_Type(7)
	tests := []struct {
		name string
		msg  *pb.PushMsg
	}{
		{"too old", old},
		{"bad op", pushMsg("x", "n1", nil, 10, "")},
		{"node gone", pushMsg("x", "ghost", nil, 1000, "")},
		{"no room", roomMsg("x", "", 1000, "")},
		{"bad type", badType},
	}
	cl := newCluster()
	cl.register(t, "n1")
	j := startJob(t, cl, testConfig(), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doneCounter
			handleAsync(t, j.Job, tt.msg, &d)
			if d.count() != 1 {
				t.Fatalf("done called %d times, want 1 before HandleAsync returned", d.count())
			}
		})
	}
	t.Run("broadcast without nodes", func(t *testing.T) {
		empty := newCluster()
		je := startJob(t, empty, testConfig(), nil)
		var d doneCounter
		handleAsync(t, je.Job, broadcastMsg("x", 1000, 0, ""), &d)
		if d.count() != 1 {
			t.Fatalf("done called %d times", d.count())
		}
	})
}

// TestHandleAsyncDoneAfterDelivery: done waits until every target node has
// taken the message (or it was given up on), then runs exactly once.
func TestHandleAsyncDoneAfterDelivery(t *testing.T) {
	tests := []struct {
		name string
		msg  *pb.PushMsg
	}{
		{"push", pushMsg("p", "slow", []string{"k"}, 1000, "m")},
		{"broadcast", broadcastMsg("b", 1000, 0, "m")},
		{"room", roomMsg("r", "live://1", 1000, "m")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCluster()
			cl.register(t, "fast1", "fast2", "slow")
			j := startJob(t, cl, testConfig(), nil)
			slow := cl.node("slow")
			slow.hold()
			var d doneCounter
			handleAsync(t, j.Job, tt.msg, &d)
			eventually(t, "slow node reached", func() bool { _, e := slow.counts(); return e == 1 })
			if tt.msg.GetType() != pb.PushMsg_PUSH {
				cl.node("fast1").waitCalls(t, 1)
				cl.node("fast2").waitCalls(t, 1)
			}
			if d.count() != 0 {
				t.Fatal("done before the slow node took the message")
			}
			slow.release()
			eventually(t, "done", func() bool { return d.count() > 0 })
			// A later message's completion proves nothing else is pending.
			var after doneCounter
			handleAsync(t, j.Job, pushMsg("after", "slow", nil, 1000, ""), &after)
			eventually(t, "later done", func() bool { return after.count() == 1 })
			if d.count() != 1 {
				t.Fatalf("done called %d times", d.count())
			}
		})
	}
}

// TestHandleAsyncDoneWhenGivenUp: a node that keeps failing, or whose queue
// stays full, does not hold the message forever.
func TestHandleAsyncDoneWhenGivenUp(t *testing.T) {
	t.Run("retries exhausted", func(t *testing.T) {
		cl := newCluster()
		cl.register(t, "bad")
		cfg := testConfig()
		cfg.Retries = 1
		j := startJob(t, cl, cfg, nil)
		cl.node("bad").failTimes(100)
		var d doneCounter
		handleAsync(t, j.Job, pushMsg("p", "bad", nil, 1000, ""), &d)
		eventually(t, "done", func() bool { return d.count() == 1 })
		if v := metricValue(t, j.metrics.Calls.WithLabelValues("failed")); v != 1 {
			t.Errorf("failed calls = %v", v)
		}
	})
	t.Run("queue full", func(t *testing.T) {
		cl := newCluster()
		cl.register(t, "full")
		cfg := testConfig()
		cfg.NodeQueue = 1
		cfg.EnqueueTimeout = 10 * time.Millisecond
		j := startJob(t, cl, cfg, nil)
		n := cl.node("full")
		n.hold()
		ds := make([]*doneCounter, 5)
		for i := range ds {
			ds[i] = &doneCounter{}
			handleAsync(t, j.Job, pushMsg(strconv.Itoa(i), "full", nil, 1000, ""), ds[i])
		}
		// At most two are held by the node; the rest were dropped and done.
		eventually(t, "dropped ones done", func() bool {
			k := 0
			for _, d := range ds {
				k += int(d.count())
			}
			return k >= len(ds)-2 && float64(k) == dropped(t, j.Job, "node_queue_full")
		})
		n.release()
		for i, d := range ds {
			eventually(t, "done "+strconv.Itoa(i), func() bool { return d.count() == 1 })
		}
	})
}

// TestHandleAsyncRoomBatchDone: every message of a room batch is done once
// the batch is delivered, not before.
func TestHandleAsyncRoomBatchDone(t *testing.T) {
	cl := newCluster()
	cl.register(t, "n1", "n2")
	cfg := testConfig()
	cfg.RoomBatchWindow = time.Hour
	cfg.RoomBatchSize = 3
	j := startJob(t, cl, cfg, nil)
	ds := make([]*doneCounter, 4)
	for i := range ds {
		ds[i] = &doneCounter{}
	}
	handleAsync(t, j.Job, roomMsg("0", "r", 1000, "0"), ds[0]) // leading edge
	eventually(t, "first done", func() bool { return ds[0].count() == 1 })
	handleAsync(t, j.Job, roomMsg("1", "r", 1000, "1"), ds[1])
	handleAsync(t, j.Job, roomMsg("2", "r", 1000, "2"), ds[2])
	// Still batched (an hour's window, two of three): nothing can have
	// sent them.
	if ds[1].count() != 0 || ds[2].count() != 0 {
		t.Fatal("batched messages done before their batch was sent")
	}
	handleAsync(t, j.Job, roomMsg("3", "r", 1000, "3"), ds[3])
	for i, d := range ds {
		eventually(t, "done "+strconv.Itoa(i), func() bool { return d.count() == 1 })
	}
}

// TestHandleAsyncDoneLostOnDepartingNode: a broadcast whose node snapshot
// still holds a node that then leaves: the task lands in the stopped
// node's channel after its worker drained and exited (enqueue's fast path
// does not look at quit), so it is never delivered and done is never
// called. For a durable queue that stalls the partition's commits.
func TestHandleAsyncDoneLostOnDepartingNode(t *testing.T) {
	for attempt := 0; attempt < 30; attempt++ {
		cl := newCluster()
		cl.register(t, "a", "b")
		cfg := testConfig()
		cfg.NodeQueue = 1
		cfg.EnqueueTimeout = time.Hour
		j := startJob(t, cl, cfg, nil)
		a, b := cl.node("a"), cl.node("b")
		a.hold()
		handle(t, j.Job, pushMsg("fill1", "a", nil, 1000, ""))
		eventually(t, "a busy", func() bool { _, e := a.counts(); return e == 1 })
		handle(t, j.Job, pushMsg("fill2", "a", nil, 1000, "")) // a's queue is now full

		var d doneCounter
		errc := make(chan error, 1)
		go func() { errc <- j.HandleAsync(context.Background(), broadcastMsg("x", 1000, 0, ""), d.done) }()
		eventually(t, "broadcast consumed", func() bool {
			return metricValue(t, j.metrics.Consumed.WithLabelValues("BROADCAST")) == 1
		})
		time.Sleep(50 * time.Millisecond) // let toAll take its snapshot and block on a
		if len(b.snapshot()) > 0 {
			j.stop() // b came first in toAll: this run cannot show the bug
			continue
		}
		cl.deregister(t, "b")
		waitNodes(t, j.Job, "a")
		a.release()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		eventually(t, "broadcast done", func() bool { return d.count() == 1 })
		return
	}
	t.Skip("toAll never reached a before b in 30 runs")
}
