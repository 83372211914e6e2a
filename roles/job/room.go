package job

import (
	"context"
	"sync"
	"time"

	"github.com/imcloud/imcloud/protocol/pb"
)

// roomBatch collects a room's messages. The first message after a quiet
// window goes out at once (low latency when traffic is light); messages
// that follow within the window wait for it to end, or for the batch to
// fill, and then go out together as one frame run, in arrival order.
type roomBatch struct {
	j    *Job
	room string

	mu        sync.Mutex
	frames    []byte
	ids       []string
	dones     []func()
	oldest    int64 // creation time (unix ms) of the oldest message collected; 0: none known
	lastFlush time.Time
	timer     *time.Timer
	armed     bool
}

func (j *Job) addRoom(ctx context.Context, room, id string, created int64, frame []byte, done func()) error {
	j.roomsMu.Lock()
	rb := j.rooms[room]
	if rb == nil {
		rb = &roomBatch{j: j, room: room}
		j.rooms[room] = rb
	}
	j.roomsMu.Unlock()
	return rb.add(ctx, id, created, frame, done)
}

func (rb *roomBatch) add(ctx context.Context, id string, created int64, frame []byte, done func()) error {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	rb.oldest = oldest(rb.oldest, created)
	rb.frames = append(rb.frames, frame...)
	rb.ids = append(rb.ids, id)
	rb.dones = append(rb.dones, done)
	cfg := rb.j.cfg
	switch {
	case len(rb.ids) >= cfg.RoomBatchSize || len(rb.frames) >= cfg.RoomBatchBytes:
		return rb.flushLocked(ctx, "full")
	case rb.armed:
		return nil
	case cfg.RoomBatchWindow == 0 || rb.j.now().Sub(rb.lastFlush) >= cfg.RoomBatchWindow:
		return rb.flushLocked(ctx, "idle")
	default:
		rb.armed = true
		wait := cfg.RoomBatchWindow - rb.j.now().Sub(rb.lastFlush)
		if rb.timer == nil {
			rb.timer = time.AfterFunc(wait, rb.onTimer)
		} else {
			rb.timer.Reset(wait)
		}
		return nil
	}
}

func (rb *roomBatch) onTimer() {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if !rb.armed {
		return // flushed early meanwhile
	}
	if err := rb.flushLocked(context.Background(), "window"); err != nil {
		rb.j.log.Debug("room flush interrupted")
	}
}

// flushLocked sends what is collected to every node. The frames slice is
// handed over (shared by every node and session), never reused.
func (rb *roomBatch) flushLocked(ctx context.Context, why string) error {
	rb.armed = false
	rb.lastFlush = rb.j.now()
	if len(rb.ids) == 0 {
		return nil
	}
	req := &pb.BroadcastRoomReq{Ids: rb.ids, Room: rb.room, Frames: rb.frames}
	rb.j.metrics.RoomBatches.WithLabelValues(why).Inc()
	rb.j.metrics.RoomBatchMsgs.Observe(float64(len(rb.ids)))
	dones, created := rb.dones, rb.oldest
	rb.frames, rb.ids, rb.dones, rb.oldest = nil, nil, nil, 0
	allDone := func() {
		for _, d := range dones {
			d()
		}
	}
	return rb.j.toEach(ctx, allDone, task{room: req, created: created}, func(ctx context.Context, c CloudClient) error {
		_, err := c.BroadcastRoom(ctx, req)
		return err
	}, nil)
}

// oldest returns the earlier of two creation times, 0 standing for unknown.
func oldest(a, b int64) int64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// flushRooms sends every pending batch now (shutdown).
func (j *Job) flushRooms() {
	j.roomsMu.Lock()
	all := make([]*roomBatch, 0, len(j.rooms))
	for _, rb := range j.rooms {
		all = append(all, rb)
	}
	j.roomsMu.Unlock()
	for _, rb := range all {
		rb.mu.Lock()
		_ = rb.flushLocked(context.Background(), "shutdown")
		rb.mu.Unlock()
	}
}

// sweepRooms forgets rooms that have been quiet for a while.
func (j *Job) sweepRooms() {
	j.roomsMu.Lock()
	defer j.roomsMu.Unlock()
	for id, rb := range j.rooms {
		rb.mu.Lock()
		idle := !rb.armed && len(rb.ids) == 0 && j.now().Sub(rb.lastFlush) > time.Minute
		rb.mu.Unlock()
		if idle {
			delete(j.rooms, id)
		}
	}
}
