package cloud

import (
	"time"

	"go.uber.org/zap"
)

// Parking idle readers.
//
// A session's reader goroutine spends almost all its life waiting for the
// next frame, and its stack (4 KiB) was half of an idle connection's
// memory. So between frames the reader parks instead: the socket is armed
// in the hub's poller (epoll, one-shot), a timer is set for the heartbeat
// deadline, and the goroutine ends. The first of three things resumes the
// session on a worker goroutine (workers.go), where the reader carries on
// as if it had never stopped:
//
//   - the socket becomes readable (a frame, or the peer's close): the
//     reader reads it;
//   - the heartbeat deadline passes: the read fails at once with a timeout;
//   - the connection is closed by the server (farewell, slow consumer,
//     shutdown): the read fails with net.ErrClosed.
//
// Session.parked, under the session's lock, makes exactly one of them the
// resumer. A reader parks only between frames and when its transport holds
// no bytes of the next frame (parkable.Buffered); a frame that arrives in
// pieces is read by a goroutine that waits for the rest, as before.

// minPark is the least time left before the heartbeat deadline for a
// reader to park.
const minPark = 100 * time.Millisecond

// parkable is a transport whose reader can stop between frames.
type parkable interface {
	// Buffered is how many bytes of the next frames the transport has read
	// from the socket already.
	Buffered() int
	// WithFD runs fn with the socket's descriptor unless the connection is
	// closed (so fn never sees a number that was closed and reused).
	WithFD(fn func(fd int) error) error
}

// park stops s's reader between frames, if it can: it reports true when
// the session is parked (or already resumed by someone else) and the
// calling goroutine must return without touching the reader's state again.
func (h *Hub) park(s *Session) bool {
	pc, ok := s.conn.(parkable)
	if h.poller == nil || !ok || pc.Buffered() > 0 {
		return false
	}
	// A deadline about to pass is met by reading here: its timer must not
	// resume the session while this goroutine is still arming the socket.
	wait := time.Until(s.deadline)
	if wait < minPark {
		return false
	}
	s.mu.Lock()
	if s.closed || s.closing {
		s.mu.Unlock()
		return false
	}
	s.parked = true
	h.metrics.Parked.Inc()
	if s.idle == nil {
		s.idle = time.AfterFunc(wait, func() { h.resume(s) })
	} else {
		s.idle.Reset(wait)
	}
	s.mu.Unlock()
	// From here on another goroutine may own the reader.
	err := pc.WithFD(func(fd int) error {
		s.pollFD.Store(int32(fd) + 1)
		return h.poller.arm(fd, s)
	})
	if err == nil {
		return true
	}
	// Closed meanwhile, or epoll refused: read on this goroutine, unless a
	// resumer (the close, the timer) took the session already.
	s.mu.Lock()
	mine := s.parked
	s.parked = false
	if mine {
		s.idle.Stop()
		h.metrics.Parked.Dec()
	}
	s.mu.Unlock()
	if mine {
		h.log.Debug("reader not parked", zap.String("key", s.key), zap.Error(err))
	}
	return !mine
}

// resume restarts a parked session's reader on a worker; it does nothing
// if the session is not parked (resumed already, or never parked).
func (h *Hub) resume(s *Session) {
	s.mu.Lock()
	if !s.parked {
		s.mu.Unlock()
		return
	}
	s.parked = false
	s.idle.Stop()
	h.metrics.Parked.Dec()
	s.mu.Unlock()
	h.workers.start(job{call: func() { h.runSession(s, true) }})
}

// unpoll forgets s's socket in the poller, at its teardown.
func (h *Hub) unpoll(s *Session) {
	if h.poller == nil {
		return
	}
	if fd := s.pollFD.Load() - 1; fd >= 0 {
		h.poller.forget(int(fd), s)
	}
}
