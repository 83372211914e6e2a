package cloud

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/transport/http1"
	"github.com/imcloud/imcloud/transport/ws"
)

// maxUpgradeHeader bounds an upgrade request's head (request line and
// headers); http.ReadRequest itself has no limit.
const maxUpgradeHeader = 16 << 10

// WSListener serves WebSocket clients on a listener without net/http's
// per-connection server: a connect storm is mostly upgrades, and net/http's
// connection state, response writer, hijack and extra goroutine were a third
// of a connect's CPU. Requests for path are upgraded here; every other
// request (the admin endpoints share the port) is handed on unread, through
// Accept, to an http.Server serving this WSListener.
type WSListener struct {
	hub  *Hub
	ln   net.Listener
	path string

	readers sync.Pool      // *bufio.Reader (4 KiB) that handshakes parse requests with
	others  *http1.Handoff // the connections for the http.Server
}

// WSListener wraps ln; call Serve to run it.
func (h *Hub) WSListener(ln net.Listener, path string) *WSListener {
	l := &WSListener{hub: h, ln: ln, path: path, others: http1.NewHandoff(ln.Addr())}
	l.readers.New = func() any { return bufio.NewReaderSize(nil, 4096) }
	return l
}

// Serve accepts connections until ln is closed, then closes l (so the
// http.Server's Accept ends too).
func (l *WSListener) Serve() error {
	defer l.Close()
	return l.hub.acceptLoop(l.ln, func(nc net.Conn) { go refuseShuttingDown(nc) }, l.handle)
}

// refuseShuttingDown answers 503 on a connection whose request has not been
// read: it reads the request head first (for at most a second), because an
// answer sent before the request confuses HTTP clients (Go's reports an
// unsolicited response and fails the request) and closing a socket with
// unread data resets the connection instead of delivering the answer.
func refuseShuttingDown(nc net.Conn) {
	_ = nc.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = http.ReadRequest(bufio.NewReader(&io.LimitedReader{R: nc, N: maxUpgradeHeader}))
	ws.Refuse(nc, http.StatusServiceUnavailable, "", "shutting down")
}

// handle reads the request line: an upgrade for l.path becomes a session on
// this goroutine; anything else goes to the http.Server with nothing
// consumed.
func (l *WSListener) handle(nc net.Conn) {
	h := l.hub
	// Shutdown closes what is still in its handshake (checked again after
	// the store: Shutdown may have swept the map just before).
	h.pending.add(nc)
	defer h.pending.remove(nc)
	if h.shutdown.Load() {
		refuseShuttingDown(nc)
		return
	}
	deadline := time.Now().Add(h.cfg.HandshakeTimeout) // the upgrade and Auth together
	_ = nc.SetReadDeadline(deadline)
	lr := &io.LimitedReader{R: nc, N: maxUpgradeHeader}
	br := l.readers.Get().(*bufio.Reader)
	br.Reset(lr)
	release := func() { br.Reset(nil); l.readers.Put(br) }

	line, err := peekLine(br)
	if err != nil {
		release()
		switch {
		case errors.Is(err, errLineTooLong):
			ws.Refuse(nc, http.StatusRequestURITooLong, "", "request line too long")
			return
		case errors.Is(err, errNotHTTP):
			// E.g. a TLS ClientHello (wss:// to a plain port): answered at
			// once, not left to the handshake timeout.
			ws.Refuse(nc, http.StatusBadRequest, "", "not an HTTP request")
			return
		}
		_ = nc.Close() // nothing, or not even a line, before the deadline
		return
	}
	if !forPath(line, l.path) {
		// Not ours: the http.Server reads the request from the start.
		_ = nc.SetReadDeadline(time.Time{})
		read, _ := br.Peek(br.Buffered()) // keeps br: what it holds is the request
		if !l.others.Give(&http1.PrefixConn{Conn: nc, Prefix: read}) {
			_ = nc.Close()
		}
		return
	}
	head, err := readHead(br)
	if err != nil {
		release()
		if lr.N == 0 {
			ws.Refuse(nc, http.StatusRequestHeaderFieldsTooLarge, "", "request header too large")
		} else {
			ws.Refuse(nc, http.StatusBadRequest, "", "malformed request")
		}
		return
	}
	head.RemoteAddr = nc.RemoteAddr().String()
	if h.shutdown.Load() {
		release()
		ws.Refuse(nc, http.StatusServiceUnavailable, "", "shutting down")
		return
	}
	if h.holding.Load() {
		release()
		ws.Refuse(nc, http.StatusServiceUnavailable, "Retry-After: 1\r\n", "starting: not registered yet")
		return
	}
	// From the upgrade on, a Shutdown must not cut nc: the client may hold
	// a 101 already and is owed a close frame, which serveConn (tracking c
	// from its first line) sends when it finds the hub shutting down. The
	// upgrade's write is bounded by its own deadline.
	h.pending.remove(nc)
	c, err := ws.Upgrade(nc, head, br, ws.AcceptOptions{
		OriginPatterns: h.cfg.WSOrigins, Subprotocols: h.cfg.WSSubprotocols, MaxBody: h.cfg.MaxBody,
	})
	release()
	if err != nil {
		h.log.Debug("websocket upgrade failed", zap.String("remote", head.RemoteAddr), zap.Error(err))
		return
	}
	h.serveConn(c, deadline)
}

var (
	errLineTooLong = errors.New("request line too long")
	errNotHTTP     = errors.New("not an HTTP request")
)

// readHead reads an upgrade request's head from br: parsed in place by
// ws.ParseHead once it is all buffered, or, when it is not of that plain
// shape or does not fit br's buffer, by http.ReadRequest.
func readHead(br *bufio.Reader) (ws.Head, error) {
	blankLine := func(b []byte) bool { return bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n")) }
	if b, err := peekUntil(br, blankLine); err == nil {
		if h, size, ok := ws.ParseHead(b); ok {
			_, _ = br.Discard(size)
			return h, nil
		}
	} // else http.ReadRequest reports the error as it reads
	req, err := http.ReadRequest(br)
	if err != nil {
		return ws.Head{}, err
	}
	return ws.HeadOf(req), nil
}

// peekLine returns the request line (up to LF) without consuming it,
// reading only until it is complete, or errNotHTTP as soon as what came
// cannot start an HTTP request.
func peekLine(br *bufio.Reader) ([]byte, error) {
	b, err := peekUntil(br, func(b []byte) bool { return bytes.IndexByte(b, '\n') >= 0 || !http1.MayStartRequest(b) })
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, errLineTooLong
	}
	if err != nil {
		return nil, err
	}
	if !http1.MayStartRequest(b) {
		return nil, errNotHTTP
	}
	return b[:bytes.IndexByte(b, '\n')], nil
}

// peekUntil reads into br until done holds for what it buffered and
// returns that, consuming nothing; bufio.ErrBufferFull if br fills up
// first, or the read's error.
func peekUntil(br *bufio.Reader, done func([]byte) bool) ([]byte, error) {
	for n := 1; ; n = br.Buffered() + 1 {
		if n > br.Size() {
			return nil, bufio.ErrBufferFull
		}
		_, err := br.Peek(n) // waits for at least n bytes
		b, _ := br.Peek(br.Buffered())
		if done(b) {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// forPath reports whether the request line asks for path (with or without
// a query, in origin or absolute form): "GET /sub HTTP/1.1", "GET
// /sub?x=1 HTTP/1.1", "GET http://host/sub HTTP/1.1". Any method: the
// upgrade answers a wrong one.
func forPath(line []byte, path string) bool {
	_, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return false
	}
	target, _, _ := bytes.Cut(rest, []byte(" "))
	target, _, _ = bytes.Cut(target, []byte("?"))
	if _, afterScheme, ok := bytes.Cut(target, []byte("://")); ok && len(target) > 0 && target[0] != '/' {
		i := bytes.IndexByte(afterScheme, '/')
		if i < 0 {
			return false
		}
		target = afterScheme[i:]
	}
	return string(target) == path
}

// Accept returns the connections that are not upgrades for l's path.
func (l *WSListener) Accept() (net.Conn, error) { return l.others.Accept() }

// Close closes the underlying listener and ends Accept.
func (l *WSListener) Close() error {
	_ = l.others.Close()
	err := l.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Addr is the underlying listener's address.
func (l *WSListener) Addr() net.Addr { return l.ln.Addr() }

var _ net.Listener = (*WSListener)(nil)
