package roles

import (
	"context"
	"sync"
	"time"

	"github.com/imcloud/imcloud/roles/cloud"
	"github.com/imcloud/imcloud/roles/logic"
	"github.com/imcloud/imcloud/store"
)

// hubOnline answers online figures from the hub in this process.
type hubOnline struct{ hub *cloud.Hub }

func (h hubOnline) Snapshot(context.Context) (logic.Snapshot, error) {
	conns, ips := h.hub.Online()
	return logic.Snapshot{Conns: conns, IPs: ips, Rooms: h.hub.Rooms()}, nil
}

// RoomCount implements logic.LiveCounts.
func (h hubOnline) RoomCount(_ context.Context, room string) (int32, error) {
	return h.hub.RoomCount(room), nil
}

// ConnCount implements logic.LiveCounts.
func (h hubOnline) ConnCount(context.Context) (int64, error) {
	conns, _ := h.hub.Online()
	return conns, nil
}

// liveFunc says whether a cloud node is in the registry; known is false
// until the registry's view is in.
type liveFunc func(node string) (live, known bool)

// departed reports whether node is known to have left the registry: its
// last online report, which outlives the node's lease, is then not
// counted. Until the registry is known (or with no view at all, nil) every
// report counts.
func (f liveFunc) departed(node string) bool {
	if f == nil {
		return false
	}
	live, known := f(node)
	return known && !live
}

// storeOnline sums every cloud node's latest report in the store. The sum
// is reused for up to maxAge: the reports themselves are only refreshed
// every cloud.online_report_interval, and reading them all on every room
// push would cost the store more than the push. Concurrent callers share
// one lookup, and a failed one is answered for failBackoff: while the
// store hangs, requests must not queue up behind one another's timeouts.
type storeOnline struct {
	online store.Online
	maxAge time.Duration
	// live, when set, says whether a node is still in the registry: the
	// report of a node that died lives on until it expires (3 report
	// intervals), longer than the node's lease, and is not counted once the
	// node has left.
	live liveFunc

	mu       sync.Mutex
	at       time.Time // of snap; zero: none yet
	snap     logic.Snapshot
	failedAt time.Time // of failure; zero: the last lookup worked
	failure  error
	inflight *onlineLookup // the lookup under way, if any
}

// onlineLookup is one read of the reports, shared by whoever asks meanwhile.
type onlineLookup struct {
	done chan struct{} // closed once snap and err are set
	snap logic.Snapshot
	err  error
}

const (
	// onlineLookupTimeout bounds one read of the reports; callers wait
	// for it only as long as their own ctx lets them.
	onlineLookupTimeout = 5 * time.Second
	// failBackoff is how long a failed read is the answer, without
	// asking the store again.
	failBackoff = time.Second
)

func (s *storeOnline) Snapshot(ctx context.Context) (logic.Snapshot, error) {
	s.mu.Lock()
	now := time.Now()
	if !s.at.IsZero() && now.Sub(s.at) < s.maxAge {
		defer s.mu.Unlock()
		return s.snap, nil
	}
	if !s.failedAt.IsZero() && now.Sub(s.failedAt) < failBackoff {
		defer s.mu.Unlock()
		return logic.Snapshot{}, s.failure
	}
	l := s.inflight
	if l == nil {
		l = &onlineLookup{done: make(chan struct{})}
		s.inflight = l
		go s.lookup(l) // not bound to this caller's ctx: others wait for it too
	}
	s.mu.Unlock()
	select {
	case <-l.done:
		return l.snap, l.err
	case <-ctx.Done():
		return logic.Snapshot{}, ctx.Err()
	}
}

// lookup reads the reports for l and publishes the result.
func (s *storeOnline) lookup(l *onlineLookup) {
	ctx, cancel := context.WithTimeout(context.Background(), onlineLookupTimeout)
	defer cancel()
	l.snap, l.err = s.sum(ctx)
	s.mu.Lock()
	if l.err != nil {
		s.failedAt, s.failure = time.Now(), l.err
	} else {
		s.snap, s.at, s.failedAt, s.failure = l.snap, time.Now(), time.Time{}, nil
	}
	s.inflight = nil
	s.mu.Unlock()
	close(l.done)
}

func (s *storeOnline) sum(ctx context.Context) (logic.Snapshot, error) {
	reports, err := s.online.AllOnline(ctx)
	if err != nil {
		return logic.Snapshot{}, err
	}
	out := logic.Snapshot{Rooms: map[string]int32{}}
	for _, r := range reports {
		if s.live.departed(r.Node) {
			continue
		}
		out.Conns += r.Conns
		out.IPs += r.IPs
		for room, n := range r.Rooms {
			out.Rooms[room] += n
		}
	}
	return out, nil
}
