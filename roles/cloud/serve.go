package cloud

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/store"
	"github.com/imcloud/imcloud/transport"
	"github.com/imcloud/imcloud/transport/tcp"
	"github.com/imcloud/imcloud/transport/ws"
)

// ServeTCP accepts goim TCP clients on ln until ln is closed.
func (h *Hub) ServeTCP(ln net.Listener) error {
	return h.acceptLoop(ln, func(c net.Conn) { _ = c.Close() }, func(c net.Conn) {
		if h.holding.Load() {
			_ = c.Close() // the client retries, here or on another node
			return
		}
		h.serveConn(tcp.New(c, h.cfg.MaxBody), time.Now().Add(h.cfg.HandshakeTimeout))
	})
}

// acceptLoop accepts on ln until it is closed, running serve on a handshake
// worker for each connection the hub still takes (counted in h.wg); once
// Shutdown has begun, refuse gets the connection instead.
func (h *Hub) acceptLoop(ln net.Listener, refuse, serve func(net.Conn)) error {
	return transport.AcceptLoop(ln, h.log, func(c net.Conn) {
		if !h.track() {
			refuse(c)
			return
		}
		h.workers.run(c, serve)
	})
}

// serveConn runs one connection's handshake (on a handshake worker) and
// then starts its session's reader goroutine, runSession. The Auth frame
// must arrive by deadline: handshake_timeout after the connection's first
// read, a WebSocket upgrade included.
func (h *Hub) serveConn(c transport.Conn, deadline time.Time) {
	log := connLog{h.log, c}
	h.pending.add(c)
	if h.shutdown.Load() {
		h.pending.remove(c)
		transport.SetCloseReason(c, transport.CloseGoingAway, "server shutting down")
		_ = c.Close()
		return
	}
	f, err := c.ReadFrame(deadline)
	h.pending.remove(c)
	if err != nil {
		kind := h.readErrorKind(err)
		switch kind {
		case "eof", "timeout":
			log.Debug("handshake failed", zap.String("kind", kind), zap.Error(err))
			if kind == "timeout" {
				transport.SetCloseReason(c, transport.ClosePolicy, "auth timeout")
			}
		default:
			log.Info("connection closed: protocol error", zap.String("kind", kind), zap.Error(err))
			h.metrics.ProtocolErrs.WithLabelValues(kind).Inc()
			goodbye(c, h.cfg.WriteTimeout, protocolErrorCode(kind), "protocol error: "+kind)
		}
		_ = c.Close()
		return
	}
	if f.Op != protocol.OpAuth {
		h.metrics.ProtocolErrs.WithLabelValues("before_auth").Inc()
		log.Info("connection closed: frame before auth", zap.Int32("op", f.Op))
		goodbye(c, h.cfg.WriteTimeout, transport.ClosePolicy, "auth required")
		_ = c.Close()
		return
	}
	a, err := protocol.ParseAuth(f.Body)
	if err != nil {
		// goim closes without a reply; so do we.
		h.metrics.ProtocolErrs.WithLabelValues("bad_auth").Inc()
		log.Info("connection closed: invalid auth", zap.Error(err))
		transport.SetCloseReason(c, transport.ClosePolicy, "invalid auth")
		_ = c.Close()
		return
	}
	key := a.Key
	if key == "" {
		key = rand.Text()
	}
	roomID := a.RoomID
	s := newSession(h, c, key, a, hostOf(c.RemoteAddr()))
	if cc, ok := c.(controlConn); ok {
		cc.SetControl(s.send) // pongs and close replies, in order with the rest
	}
	// The reply is queued before the session is reachable, so it is the
	// first thing the client reads, and the handshake holds the write side
	// until the session is in the hub and bound in the store (release), so
	// a client that has its reply is sure to receive pushes of every kind.
	s.queue = append(s.queue, reply(f, protocol.OpAuthReply, nil))
	s.writing = true
	old, ok := h.add(s, roomID)
	if !ok {
		goodbye(c, h.cfg.WriteTimeout, transport.CloseGoingAway, "server shutting down")
		_ = c.Close()
		return
	}
	// Bound after joining the hub: a teardown of an older session with this
	// key that unbinds meanwhile finds this one in the hub and binds it
	// again (see teardown), so the binding cannot be lost.
	bound := h.bindings()
	if err := h.bind(s, roomID); err != nil {
		log.Warn("connection refused: session store unavailable", zap.Int64("mid", a.Mid), zap.Error(err))
		h.remove(s)
		s.mu.Lock()
		clear(s.queue) // the AuthReply and pushes: never sent
		s.queue = s.queue[:0]
		s.mu.Unlock()
		s.farewell(transport.CloseTryAgainLater, "session store unavailable, retry later")
		s.release()
		// What the bind may have written goes, and so does the binding of
		// the session this one replaced: its teardown no longer finds it
		// in the hub, so would leave it until the store's TTL.
		h.unbind(s, log)
		if old != nil {
			old.farewell(transport.ClosePolicy, "replaced by a new connection")
			h.unbind(old, log)
		}
		return
	}
	if old != nil {
		old.farewell(transport.ClosePolicy, "replaced by a new connection")
		h.metrics.Disconnects.WithLabelValues("replaced").Inc()
	}
	s.release()
	h.metrics.Conns.WithLabelValues(c.Network()).Inc()
	h.metrics.Connects.WithLabelValues(c.Network()).Inc()
	log.Debug("session opened", zap.String("key", key), zap.Int64("mid", a.Mid), zap.String("room", roomID))

	s.roomID, s.bound = roomID, bound
	h.wg.Add(1)
	s.deadline = time.Now().Add(h.cfg.HeartbeatTimeout)
	if is, ok := c.(transport.IdleStopper); ok && h.poller != nil {
		is.StopWhenIdle() // a ping answered, the reader may park
	}
	if h.park(s) {
		return
	}
	// The handshake (JSON, the store) grew this goroutine's stack; the long
	// idle life of the connection continues on a fresh, small one.
	go h.runSession(s, false)
}

// runSession is the reader of an authenticated session, from its first
// frame after Auth to teardown. Without parking it is a goroutine per
// connection whose stack must stay at 4 KiB for the connection's life
// (with parking a partial frame still waits here): what is on it while it waits
// in ReadFrame is kept small (runSession, readLoop, the transports'
// ReadFrame: ~1.2 KiB), frame handling and teardown run in calls that return
// before the next wait, and session store calls, whose clients have deep
// call stacks (go-redis grew every reader to 8 KiB for good), run on a
// worker (workers.callOn).
//
// With parking (park.go) it is also what a resumed session runs (resumed
// set: a read comes first), on a worker, and it returns when the session
// parks again.
func (h *Hub) runSession(s *Session, resumed bool) {
	growStack(0)
	reason, parked := h.readLoop(s, resumed)
	if parked {
		return
	}
	h.endSession(s, reason)
}

// growStack needs a frame bigger than a new goroutine's smallest stack, so
// that calling it first grows the reader's stack to the 4 KiB that handling
// a frame needs while little is on it (one frame to copy): left to the
// first heartbeat, the growth copied a dozen frames and cost ~10 µs per
// connection.
//
//go:noinline
func growStack(i int) byte {
	var b [2048]byte
	b[i%len(b)] = 1 // used, so the frame is not optimized away
	return b[(i+1)%len(b)]
}

// readLoop reads and handles frames until the connection ends, and returns
// why it ended, or until the session parks between frames. Unless resumed,
// it tries to park before each read.
func (h *Hub) readLoop(s *Session, resumed bool) (reason string, parked bool) {
	for {
		if s.deadline.IsZero() {
			s.deadline = time.Now().Add(h.cfg.HeartbeatTimeout)
		}
		if !resumed && h.park(s) {
			return "", true
		}
		resumed = false
		f, err := s.conn.ReadFrame(s.deadline)
		if errors.Is(err, transport.ErrIdle) {
			continue // the deadline still runs
		}
		if err != nil {
			return h.readFailed(s, err), false
		}
		s.deadline = time.Time{}
		if stop := h.handleFrame(s, f); stop != "" {
			return stop, false
		}
	}
}

// endSession tears a session down once its reader stopped for reason.
func (h *Hub) endSession(s *Session, reason string) {
	defer h.wg.Done()
	if s.wasSlow() {
		reason = "slow" // the reader saw only the close
	}
	log := connLog{h.log, s.conn}
	h.metrics.Conns.WithLabelValues(s.conn.Network()).Dec()
	h.metrics.Disconnects.WithLabelValues(reason).Inc()
	h.teardown(s, log)
	log.Debug("session closed", zap.String("key", s.key), zap.String("reason", reason))
}

// controlConn is a transport that has control frames of its own to send.
type controlConn interface {
	SetControl(func(transport.Out) bool)
}

// readFailed says goodbye as the read error err calls for and returns the
// kind of error, the session's end reason.
func (h *Hub) readFailed(s *Session, err error) string {
	kind := h.readErrorKind(err)
	switch kind {
	case "eof":
	case "timeout":
		s.farewell(transport.ClosePolicy, "heartbeat timeout")
	default:
		h.metrics.ProtocolErrs.WithLabelValues(kind).Inc()
		connLog{h.log, s.conn}.Info("connection closed: protocol error", zap.String("key", s.key), zap.String("kind", kind), zap.Error(err))
		s.farewell(protocolErrorCode(kind), "protocol error: "+kind)
	}
	return kind
}

// handleFrame answers one client frame; a non-empty result ends the session
// with that reason.
func (h *Hub) handleFrame(s *Session, f protocol.Frame) string {
	log := connLog{h.log, s.conn}
	switch f.Op {
	case protocol.OpHeartbeat:
		// Refreshed before the reply, so a client holding the reply knows
		// its binding is in place; at most every RefreshEvery, since
		// with frequent heartbeats the store round trips add up.
		if h.refreshDue(s.bound) {
			now := h.bindings()
			var ok, moved bool
			h.workers.callOn(func() { ok, moved = h.refresh(s, s.roomID, log) })
			if moved {
				return h.movedAway(s, log)
			}
			if ok {
				s.bound = now
			}
		}
		s.send(reply(f, protocol.OpHeartbeatReply, heartbeatBody(h.heartbeatCount(s.roomID))))
	case protocol.OpSendMsg:
		h.upstream(s, f, log)
	case protocol.OpChangeRoom:
		next := string(f.Body)
		if err := protocol.ValidRoom(next); err != nil {
			return h.refuse(s, log, "bad_room", err.Error())
		}
		h.changeRoom(s, next)
		s.roomID = next
		// A refresh, not a bind: an old connection must not take its key
		// back from a newer one on another node.
		now := h.bindings()
		var ok, moved bool
		h.workers.callOn(func() { ok, moved = h.refresh(s, next, log) })
		if moved {
			return h.movedAway(s, log)
		}
		if ok {
			s.bound = now
		}
		s.send(reply(f, protocol.OpChangeRoomReply, f.Body))
	case protocol.OpSub, protocol.OpUnsub:
		ops, err := protocol.ParseOps(f.Body)
		if err != nil {
			return h.refuse(s, log, "bad_ops", err.Error())
		}
		if f.Op == protocol.OpSub {
			if !s.sub(ops) {
				return h.refuse(s, log, "too_many_ops", "more than "+strconv.Itoa(protocol.MaxAccepts)+" accepted ops")
			}
			s.send(reply(f, protocol.OpSubReply, f.Body))
		} else {
			s.unsub(ops)
			s.send(reply(f, protocol.OpUnsubReply, f.Body))
		}
	case protocol.OpAuth:
		return h.refuse(s, log, "auth_twice", "already authenticated")
	default:
		if f.Op >= protocol.MinBusinessOp {
			// A business op sent upstream, as goim's clients may (goim
			// forwards any op it does not know to logic): a SendMsg under
			// the app's own op, not a broken client.
			h.upstream(s, f, log)
			break
		}
		return h.refuse(s, log, "unknown_op", "unknown op "+strconv.Itoa(int(f.Op)))
	}
	return ""
}

// upstream takes a message the client sends to the server (op 4, or a
// business op): counted and logged, answered by op 5 echoing its seq.
func (h *Hub) upstream(s *Session, f protocol.Frame, log connLog) {
	h.metrics.Upstream.Inc()
	log.Debug("client message", zap.String("key", s.key), zap.Int32("op", f.Op), zap.Int("bytes", len(f.Body)))
	s.send(reply(f, protocol.OpSendMsgReply, nil))
}

// movedAway ends s, whose key the store found bound to another node: a
// newer connection with the key is there, and replaces this one as one on
// this node would. When the reader calls it, the session's end counts it
// under Disconnects{reason="replaced"}.
func (h *Hub) movedAway(s *Session, log connLog) string {
	log.Info("connection closed: key taken by a newer connection on another node", zap.String("key", s.key))
	s.farewell(transport.ClosePolicy, "replaced by a new connection")
	return "replaced"
}

func (h *Hub) refuse(s *Session, log connLog, kind, reason string) string {
	h.metrics.ProtocolErrs.WithLabelValues(kind).Inc()
	log.Info("connection closed: protocol error", zap.String("key", s.key), zap.String("kind", kind), zap.String("reason", reason))
	s.farewell(transport.ClosePolicy, reason)
	return kind
}

func (h *Hub) readErrorKind(err error) string {
	switch {
	case errors.Is(err, protocol.ErrHeaderLen):
		return "header_len"
	case errors.Is(err, protocol.ErrPackLen):
		return "pack_len"
	case errors.Is(err, protocol.ErrTooLarge):
		return "too_large"
	case errors.Is(err, protocol.ErrLenMismatch):
		return "len_mismatch"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "eof"
	}
	if errors.Is(err, ws.ErrProtocol) {
		return "ws_protocol"
	}
	return "eof"
}

// protocolErrorCode is the WebSocket close code for a read error's kind.
func protocolErrorCode(kind string) uint16 {
	if kind == "too_large" {
		return transport.CloseTooBig
	}
	return transport.CloseProtocolError
}

func (h *Hub) storeSession(s *Session, roomID string) store.Session {
	return store.Session{Mid: s.mid, Key: s.key, Node: h.cfg.NodeID, Room: roomID}
}

func (h *Hub) bind(s *Session, roomID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	return h.store.Bind(ctx, h.storeSession(s, roomID))
}

// refresh extends s's bindings, reporting whether the store took it and
// whether the key is bound to another node instead (store.ErrMoved).
func (h *Hub) refresh(s *Session, roomID string, log connLog) (ok, moved bool) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	if err := h.store.Refresh(ctx, h.storeSession(s, roomID)); err != nil {
		if errors.Is(err, store.ErrMoved) {
			return false, true
		}
		log.Warn("session store refresh failed", zap.String("key", s.key), zap.Error(err))
		return false, false
	}
	return true, false
}

// bindingsAge is when a session's bindings were last written: the time and
// the hub's store generation.
type bindingsAge struct {
	at  time.Time
	gen uint64
}

// bindings is the age of bindings written now.
func (h *Hub) bindings() bindingsAge {
	return bindingsAge{at: time.Now(), gen: h.storeGen.Load()}
}

// refreshDue reports whether bindings written at b should be refreshed by
// the heartbeat under way.
func (h *Hub) refreshDue(b bindingsAge) bool {
	return b.gen != h.storeGen.Load() || time.Since(b.at) >= h.cfg.RefreshEvery
}

// teardown removes s from the hub and, if no newer connection took its key
// here meanwhile, from the session store.
func (h *Hub) teardown(s *Session, log connLog) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if !closing {
		s.kill()
	}
	h.unpoll(s)
	if !h.remove(s) {
		return // replaced: the binding belongs to the new session now
	}
	h.unbind(s, log)
}

// unbind removes s's binding from the store (compare-and-delete), on the
// unbinder or, if its queue stays full, here; then a session that holds s's
// key on this node by now is bound again.
func (h *Hub) unbind(s *Session, log connLog) {
	if h.queueUnbind(s) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	if _, err := h.store.Unbind(ctx, h.storeSession(s, "")); err != nil {
		log.Warn("session store unbind failed", zap.String("key", s.key), zap.Error(err))
	}
	h.restoreBinding(s.key)
}

// restoreBinding binds again the session now holding key on this node, if
// any: a reconnect with the key may have bound between an older session's
// removal from the hub and its unbind, which then erased the new binding.
func (h *Hub) restoreBinding(key string) {
	if n := h.current(key); n != nil {
		// rebindNow: if n leaves while this bind is under way, its own
		// unbind may run first, and the bind must not outlive it.
		if _, err := h.rebindNow(n); err != nil {
			connLog{h.log, n.conn}.Warn("session store bind failed", zap.String("key", key), zap.Error(err))
		}
	}
}

// goodbye writes a DisconnectReply on a connection that has no session yet
// and gives its close frame (WebSocket) code and reason.
func goodbye(c transport.Conn, timeout time.Duration, code uint16, reason string) {
	transport.SetCloseReason(c, code, reason)
	_ = c.Write([]transport.Out{{Data: protocol.Encode(protocol.PushVer, protocol.OpDisconnectReply, 0, []byte(reason))}},
		time.Now().Add(min(timeout, time.Second)))
}

// connLog logs with the connection's remote address and transport added at
// the call, so an idle connection holds no logger of its own.
type connLog struct {
	l *zap.Logger
	c transport.Conn
}

func (l connLog) with(fields []zap.Field) []zap.Field {
	return append([]zap.Field{zap.String("remote", l.c.RemoteAddr()), zap.String("transport", l.c.Network())}, fields...)
}

func (l connLog) Debug(msg string, fields ...zap.Field) {
	if ce := l.l.Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(l.with(fields)...)
	}
}

func (l connLog) Info(msg string, fields ...zap.Field) {
	if ce := l.l.Check(zap.InfoLevel, msg); ce != nil {
		ce.Write(l.with(fields)...)
	}
}

func (l connLog) Warn(msg string, fields ...zap.Field) {
	if ce := l.l.Check(zap.WarnLevel, msg); ce != nil {
		ce.Write(l.with(fields)...)
	}
}
