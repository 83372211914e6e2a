package cloud

import (
	"errors"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport"
)

// Session is one authenticated connection.
type Session struct {
	hub      *Hub
	conn     transport.Conn
	key      string
	mid      int64
	platform string
	ip       string
	writeFn  func()              // s.writeLoop, bound once: starting a writer then allocates nothing
	try      transport.TryWriter // nil when the transport cannot write without blocking

	accepts atomic.Pointer[[]int32] // sorted; copy-on-write

	// Guarded by the bucket's lock.
	room    *room
	roomIdx int

	// The reader goroutine's own (runSession): kept here rather than on its
	// stack, which it keeps small.
	roomID   string       // the room its bindings name
	bound    bindingsAge  // when its bindings were last written
	deadline time.Time    // of the wait for the next frame (zero: none begun)
	pollFD   atomic.Int32 // 1 + the descriptor armed in the hub's poller; 0: never

	// parked: the reader is stopped between frames (park.go); idle is its
	// heartbeat deadline's timer then. Guarded by mu.
	parked bool
	idle   *time.Timer

	mu      sync.Mutex
	queue   []transport.Out
	spare   []transport.Out
	writing bool // a writer goroutine owns the connection's write side
	closing bool // a farewell is queued: accept nothing more, close after it
	closed  bool
	slow    bool // closed as a slow client: the session ends for reason "slow"
}

func newSession(h *Hub, c transport.Conn, key string, a protocol.Auth, ip string) *Session {
	s := &Session{hub: h, conn: c, key: key, mid: a.Mid, platform: a.Platform, ip: ip}
	s.writeFn = s.writeLoop
	s.try, _ = c.(transport.TryWriter)
	s.setAccepts(a.Accepts)
	return s
}

// Key is the session's key.
func (s *Session) Key() string { return s.key }

// Mid is the session's user id.
func (s *Session) Mid() int64 { return s.mid }

func (s *Session) setAccepts(ops []int32) {
	ops = protocol.SortedOps(ops)
	s.accepts.Store(&ops)
}

// Accepts reports whether key, mid and broadcast pushes with op reach s.
func (s *Session) Accepts(op int32) bool {
	_, ok := slices.BinarySearch(*s.accepts.Load(), op)
	return ok
}

// sub adds ops to the accepted ones, unless that would make more than
// protocol.MaxAccepts: then it reports false and changes nothing.
func (s *Session) sub(ops []int32) bool {
	cur := *s.accepts.Load()
	next := protocol.SortedOps(append(slices.Clone(cur), ops...))
	if len(next) > protocol.MaxAccepts {
		return false
	}
	s.accepts.Store(&next)
	return true
}

func (s *Session) unsub(ops []int32) {
	cur := slices.DeleteFunc(slices.Clone(*s.accepts.Load()), func(op int32) bool {
		return slices.Contains(ops, op)
	})
	s.setAccepts(cur)
}

// send queues o. It never blocks: when the queue is full the session is
// closed as a slow consumer and send reports false.
func (s *Session) send(o transport.Out) bool {
	s.mu.Lock()
	if s.closed || s.closing {
		s.mu.Unlock()
		return false
	}
	if len(s.queue) >= s.hub.cfg.SendQueue {
		s.closed, s.slow = true, true
		s.mu.Unlock()
		s.hub.slowConsumer(s, "send queue full")
		return false
	}
	if !s.writing && len(s.queue) == 0 && s.try != nil {
		// Idle: write in place, as a plain loop over sockets would, and wake
		// a writer only for what the socket does not take at once.
		s.writing = true
		s.mu.Unlock()
		return s.tryWrite(o)
	}
	s.queue = append(s.queue, o)
	start := !s.writing
	s.writing = true
	s.mu.Unlock()
	if start {
		go s.writeFn()
	}
	return true
}

// tryWrite writes o without blocking while this goroutine owns the write
// side (s.writing set by the caller); items queued meanwhile, and the rest
// of o, go to a writer goroutine.
func (s *Session) tryWrite(o transport.Out) bool {
	rest, err := s.try.TryWrite(o)
	s.mu.Lock()
	if err != nil {
		s.writing = false
		s.mu.Unlock()
		s.hub.log.Debug("write failed", zap.String("key", s.key), zap.Error(err))
		s.kill()
		return false
	}
	if len(rest) > 0 {
		s.queue = append(s.queue, transport.Out{})
		copy(s.queue[1:], s.queue)
		s.queue[0] = transport.Out{Data: rest, Raw: true}
	}
	start := len(s.queue) > 0 && !s.closed
	s.writing = start
	s.mu.Unlock()
	if start {
		go s.writeFn()
	}
	return true
}

// release hands over the write side, which the handshake holds (s.writing
// set before the session joined the hub) until the session is bound in the
// store: so no push, and above all not the AuthReply, reaches a client
// before a push by its mid or key can find it, or one the store then
// refuses. What queued meanwhile (the AuthReply, pushes, a farewell) is
// written in place when it is the AuthReply alone and the transport can
// try a write, else on a writer goroutine. A connect storm then starts no
// goroutine and arms no write deadline per connection for its reply.
func (s *Session) release() {
	s.mu.Lock()
	if s.closed || len(s.queue) == 0 {
		s.writing = false
		s.mu.Unlock()
		return
	}
	if len(s.queue) == 1 && s.try != nil && !s.closing {
		o := s.queue[0]
		s.queue[0] = transport.Out{}
		s.queue = s.queue[:0]
		s.mu.Unlock()
		s.tryWrite(o)
		return
	}
	s.mu.Unlock()
	go s.writeFn()
}

// farewell queues a DisconnectReply with reason and closes the connection
// once it is written (or the write times out); a WebSocket's close frame
// then carries code and reason.
func (s *Session) farewell(code uint16, reason string) {
	s.mu.Lock()
	if s.closed || s.closing {
		s.mu.Unlock()
		return
	}
	transport.SetCloseReason(s.conn, code, reason)
	s.closing = true
	s.queue = append(s.queue, transport.Out{Data: protocol.Encode(protocol.PushVer, protocol.OpDisconnectReply, 0, []byte(reason))})
	start := !s.writing
	s.writing = true
	s.mu.Unlock()
	if start {
		go s.writeFn()
	}
}

// wasSlow reports whether s was closed as a slow client.
func (s *Session) wasSlow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slow
}

// kill closes the connection at once; queued items are dropped. The reader
// goroutine notices and tears the session down.
func (s *Session) kill() {
	s.mu.Lock()
	s.closed = true
	s.queue = nil
	s.mu.Unlock()
	s.closeConn()
}

// closeConn closes the connection; a parked reader is resumed to find it
// closed and tear the session down, as a waiting one would.
func (s *Session) closeConn() {
	_ = s.conn.Close()
	s.hub.resume(s)
}

// writeLoop drains the queue, each pass handing everything queued so far to
// the transport in one coalesced write.
func (s *Session) writeLoop() {
	for {
		s.mu.Lock()
		if s.closed || len(s.queue) == 0 {
			closing := s.closing
			if closing {
				s.closed = true
			}
			s.writing = false
			if cap(s.spare) > 64 {
				s.spare = nil // let a burst's buffer go while idle
			}
			s.mu.Unlock()
			if closing {
				s.closeConn()
			}
			return
		}
		batch := s.queue
		s.queue = s.spare[:0]
		s.mu.Unlock()

		err := s.conn.Write(batch, time.Now().Add(s.hub.cfg.WriteTimeout))
		clear(batch)
		s.mu.Lock()
		s.spare = batch[:0]
		s.mu.Unlock()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The client took nothing for write_timeout: as slow a client as
			// one whose queue overflowed, and dropped the same way.
			s.mu.Lock()
			s.closed, s.slow, s.writing = true, true, false
			s.queue = nil
			s.mu.Unlock()
			s.hub.slowConsumer(s, "write timed out")
			return
		}
		if err != nil {
			s.hub.log.Debug("write failed", zap.String("key", s.key), zap.Error(err))
			s.kill()
			s.mu.Lock()
			s.writing = false
			s.mu.Unlock()
			return
		}
	}
}

// roomName reads the session's room under its bucket's lock.
func (s *Session) roomName() string {
	b := s.hub.bucketFor(s.key)
	b.mu.RLock()
	defer b.mu.RUnlock()
	if s.room == nil {
		return ""
	}
	return s.room.id
}
