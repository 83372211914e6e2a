package http1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/transport"
)

// Buffer sizes of a connection.
const (
	initialBuffer = 4 << 10
	// maxBuffered bounds a request read here, head and body; a longer one
	// goes to the fallback, which streams its body to the handler.
	maxBuffered = maxHead + 64<<10
	// maxPending bounds the answers a connection holds unwritten: a
	// client that pipelines requests without reading the answers is
	// written to (and waited for) before more of its requests are served,
	// so each of its small requests cannot cost a held answer.
	maxPending = 32 << 10
)

// Server serves small, plain HTTP/1.1 requests itself and hands every other
// connection to Fallback (see the package documentation). Set the fields,
// then call Serve once.
type Server struct {
	// Handler serves the requests read here.
	Handler http.Handler
	// Fallback serves the connections handed over, with its own handler
	// and timeouts. Serve runs it; Shutdown shuts it down.
	Fallback *http.Server
	// Slow names the paths always handed over (nil: none).
	Slow func(path string) bool
	// ReadTimeout bounds the reading of one request, IdleTimeout the wait
	// for the next one on a kept-alive connection, WriteTimeout the write
	// of an answer. Zero means no limit.
	ReadTimeout, IdleTimeout, WriteTimeout time.Duration
	// Log receives handler panics (required).
	Log *zap.Logger
	// ErrorBody, if set, formats the answers given before any handler runs
	// (see errors.go): the status and its text in, the Content-Type and
	// body out. Nil keeps net/http's plain text.
	ErrorBody func(status int, text string) (contentType string, body []byte)

	mu      sync.Mutex
	started bool
	conns   map[*conn]struct{}
	ln      net.Listener
	handoff *Handoff
	ctx     context.Context // requests' context, canceled when Shutdown gives up
	cancel  context.CancelFunc
	closing atomic.Bool
	wg      sync.WaitGroup
}

// init sets up what Serve and Shutdown share; s.mu is held.
func (s *Server) init(addr net.Addr) {
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
		s.handoff = NewHandoff(addr)
		s.ctx, s.cancel = context.WithCancel(context.Background())
	}
}

// Serve accepts connections on ln until Shutdown, then returns
// http.ErrServerClosed; any other error ending it is returned as is.
func (s *Server) Serve(ln net.Listener) error {
	if s.Handler == nil || s.Fallback == nil || s.Log == nil {
		return errors.New("http1: Server needs Handler, Fallback and Log")
	}
	s.mu.Lock()
	if s.started || s.closing.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return http.ErrServerClosed
	}
	s.started = true
	s.init(ln.Addr())
	s.ln = ln
	s.mu.Unlock()
	go func() {
		if err := s.Fallback.Serve(s.handoff); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Log.Warn("fallback http server stopped", zap.Error(err))
		}
	}()
	_ = transport.AcceptLoop(ln, s.Log, func(nc net.Conn) {
		c := &conn{s: s, nc: nc}
		if !s.track(c) {
			_ = nc.Close()
			return
		}
		go c.serve()
	})
	if s.closing.Load() {
		return http.ErrServerClosed
	}
	return net.ErrClosed // closed by someone else
}

// track adds c to the connection set unless the server is closing.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting, closes the connections waiting for a request,
// waits for the others to finish the request they are serving, and shuts
// the fallback down. If ctx ends first, the remaining connections are
// closed, requests' contexts canceled, and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	s.init(nil)
	ln := s.ln
	for c := range s.conns {
		if c.idle.Load() {
			_ = c.nc.SetReadDeadline(time.Unix(1, 0)) // wakes its Read
		}
	}
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	_ = s.handoff.Close()
	fallbackErr := s.Fallback.Shutdown(ctx)
	if fallbackErr != nil {
		_ = s.Fallback.Close() // net/http's Shutdown leaves active connections open
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return fallbackErr
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			_ = c.nc.Close()
		}
		s.mu.Unlock()
		s.cancel()
		return ctx.Err()
	}
}

// conn is one client connection served here.
type conn struct {
	s      *Server
	nc     net.Conn
	idle   atomic.Bool // waiting for a request with nothing buffered
	buf    []byte      // received bytes; buf[r:w] not yet consumed
	r, w   int
	out    []byte // answers not yet written
	resp   response
	date   dateCache
	remote string
}

// serve runs the connection until it closes or is handed over.
func (c *conn) serve() {
	defer c.s.untrack(c)
	c.remote = c.nc.RemoteAddr().String()
	c.buf = make([]byte, initialBuffer)
	if !c.loop() {
		_ = c.nc.Close()
	}
}

// loop serves requests; it reports true if the connection was handed over.
func (c *conn) loop() bool {
	s := c.s
	var h head
	var reqDeadline bool // the current request's read deadline is set
	var served bool      // a request was answered here
	var haveHead bool    // h is the head of the request at c.r, whose body is still arriving
	var afterPOST bool   // the last request served was a POST: CR and LF may follow it
	var peeked bool      // the 4 bytes after the last request were waited for
	for {
		// Serve every complete request buffered.
		for c.r < c.w {
			if served && !peeked && c.w-c.r < 4 {
				goto read // as net/http: see the EOF case below
			}
			peeked = true
			if afterPOST {
				// RFC 9112 section 2.2 tolerance, as net/http has it: old
				// clients end a POST body with a CRLF it does not count.
				afterPOST = false
				c.r += leadingCRorLF(c.buf[c.r : c.r+4])
				continue
			}
			if !haveHead {
				switch parseHead(c.buf[c.r:c.w], &h) {
				case headIncomplete:
					goto read
				case headSlow:
					return c.handOver()
				case headNotHTTP:
					c.out = append(c.out, c.badRequest("")...)
					_ = c.flush()
					return false
				case headBad:
					c.out = append(c.out, c.badRequest(h.bad)...)
					_ = c.flush()
					return false
				}
				if s.Slow != nil && s.Slow(h.url.Path) {
					return c.handOver()
				}
			}
			total := int64(h.size) + h.length
			if total > maxBuffered {
				return c.handOver()
			}
			if int64(c.w-c.r) < total {
				haveHead = true
				goto read // the buffer grows as the body arrives, not as declared
			}
			haveHead = false
			body := c.buf[c.r+h.size : c.r+int(total)]
			keep, ok := c.serveRequest(&h, body)
			if !ok {
				return false // the handler panicked: close without an answer
			}
			c.r += int(total)
			reqDeadline = false
			served, peeked = true, false
			afterPOST = h.method == http.MethodPost
			if !keep {
				_ = c.flush()
				return false
			}
			if len(c.out) >= maxPending {
				if err := c.flush(); err != nil {
					return false
				}
			}
		}
	read:
		if err := c.flush(); err != nil {
			return false
		}
		if s.closing.Load() && c.r == c.w {
			if !c.lateRequest() {
				return false
			}
			continue
		}
		if c.r == c.w {
			c.r, c.w = 0, 0
			if cap(c.buf) > initialBuffer {
				c.buf = make([]byte, initialBuffer) // a large request is over
			}
			c.idle.Store(true)
			wait := s.IdleTimeout
			if !served && s.ReadTimeout > 0 {
				wait = s.ReadTimeout // a new connection owes its first request
			}
			if err := c.setReadDeadline(wait); err != nil {
				return false
			}
			if s.closing.Load() { // after the store: Shutdown sees idle or we see closing
				if !c.lateRequest() {
					return false
				}
				c.idle.Store(false)
				continue
			}
		} else if !reqDeadline {
			if err := c.setReadDeadline(s.ReadTimeout); err != nil {
				return false
			}
			reqDeadline = true
		}
		if c.w == len(c.buf) {
			c.reserve(c.w - c.r + 1)
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.idle.Store(false)
		c.w += n
		switch {
		case err == io.EOF && c.r < c.w && (!served || peeked || c.w-c.r >= 4):
			// A request cut short: net/http answers it (400), as it
			// would have (it waits for 4 bytes before any request but
			// the first, and leaves quietly if they never come).
			return c.handOver()
		case err != nil && n == 0 && c.r == c.w && s.closing.Load() && errors.Is(err, os.ErrDeadlineExceeded) && c.lateRequest():
			// Woken by Shutdown with a request already received.
		case err != nil:
			return false // closed, reset or timed out: a partial request is dropped
		}
	}
}

// lateRequest reads, without waiting, what the peer sent to this idle
// connection before Shutdown told it to stop, and reports whether there
// was anything: a request already on its way is then served (its answer
// closes the connection), rather than closed unread, which resets the
// connection and leaves the client unable to tell whether it was served.
func (c *conn) lateRequest() bool {
	c.r, c.w = 0, 0
	c.w = readNow(c.nc, c.buf)
	return c.w > 0
}

// reserve moves the unread bytes to the front of the buffer and makes it
// hold at least n bytes, doubling it up to maxBuffered.
func (c *conn) reserve(n int) {
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	if n > len(c.buf) {
		grown := make([]byte, max(n, min(2*len(c.buf), maxBuffered)))
		copy(grown, c.buf[:c.w])
		c.buf = grown
	}
}

func (c *conn) setReadDeadline(d time.Duration) error {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	return c.nc.SetReadDeadline(t)
}

// serveRequest runs the handler on one request and queues its answer. keep
// reports whether the connection stays open; ok is false if the handler
// panicked.
func (c *conn) serveRequest(h *head, body []byte) (keep, ok bool) {
	req := &http.Request{
		Method:        h.method,
		URL:           h.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    h.minor,
		Header:        h.header,
		Body:          http.NoBody,
		ContentLength: h.length,
		Host:          h.host,
		RemoteAddr:    c.remote,
		RequestURI:    h.target,
	}
	if h.minor == 0 {
		req.Proto = "HTTP/1.0"
	}
	var br *bodyReader
	if len(body) > 0 {
		br = &bodyReader{b: body}
		req.Body = br
	}
	req = req.WithContext(c.s.ctx)
	c.resp.reset(req)
	ok = c.runHandler(req)
	if br != nil {
		br.detach() // body aliases the connection buffer, reused from here
	}
	if !ok {
		return false, false
	}
	keep = h.keepAlive && !c.resp.wantsClose() && !c.s.closing.Load()
	c.out = c.resp.appendTo(c.out, h.minor, keep, c.date.get(time.Now()))
	return keep, true
}

// runHandler calls the handler, turning a panic into a log line (as
// net/http does: http.ErrAbortHandler quietly).
func (c *conn) runHandler(req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			if v != http.ErrAbortHandler {
				c.s.Log.Error("http handler panicked",
					zap.String("remote", c.remote), zap.String("uri", req.RequestURI),
					zap.String("panic", fmt.Sprint(v)), zap.ByteString("stack", debug.Stack()))
			}
		}
	}()
	c.s.Handler.ServeHTTP(&c.resp, req)
	return true
}

// flush writes the queued answers.
func (c *conn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	if d := c.s.WriteTimeout; d > 0 {
		if err := c.nc.SetWriteDeadline(time.Now().Add(d)); err != nil {
			return err
		}
	}
	_, err := c.nc.Write(c.out)
	if cap(c.out) > 2*maxPending {
		c.out = nil // a large answer is gone: no need to keep its room
	} else {
		c.out = c.out[:0]
	}
	return err
}

// badRequest is the 400 answer, before the connection closes, to a
// request that is not read on, with detail saying why (if known): in the
// API's format (Server.ErrorBody), else as net/http words it.
func (c *conn) badRequest(detail string) []byte {
	text := "Bad Request"
	if detail != "" {
		text += ": " + detail
	}
	if c.s.ErrorBody != nil {
		return errorAnswer(http.StatusBadRequest, text, c.s.ErrorBody)
	}
	return []byte("HTTP/1.1 400 Bad Request" + plainErrorHeaders + "400 " + text)
}

// handOver gives the connection, with what is buffered, to the fallback
// server; it reports whether the fallback took it.
func (c *conn) handOver() bool {
	if err := c.flush(); err != nil {
		return false
	}
	_ = c.nc.SetDeadline(time.Time{})
	var nc net.Conn = &PrefixConn{Conn: c.nc, Prefix: c.buf[c.r:c.w]}
	c.buf = nil
	if c.s.ErrorBody != nil {
		nc = &errorConn{Conn: nc, format: c.s.ErrorBody}
	}
	return c.s.handoff.Give(nc)
}

// bodyReader reads a request body held in the connection buffer.
type bodyReader struct {
	b    []byte
	done bool
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		if r.done {
			return 0, http.ErrBodyReadAfterClose
		}
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func (r *bodyReader) Close() error { return nil }

// detach ends reads: the bytes are about to be reused.
func (r *bodyReader) detach() { r.b, r.done = nil, true }

// leadingCRorLF counts the CR and LF bytes b starts with.
func leadingCRorLF(b []byte) int {
	n := 0
	for n < len(b) && (b[n] == '\r' || b[n] == '\n') {
		n++
	}
	return n
}
