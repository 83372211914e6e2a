package http1

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/transport/http1/http1test"
)

func TestServedHere(t *testing.T) {
	ts := startServer(t, nil, nil)
	tests := []struct {
		name, req, method string
		wantBody          string
	}{
		{"get", "GET /goim/online/total?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", "GET",
			`GET /goim/online/total ?x=1 ct="" host="h" body=""`},
		{"post with body", "POST /goim/push/mids?operation=1000&mids=1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nhello", "POST",
			`POST /goim/push/mids ?operation=1000&mids=1 ct="application/x-www-form-urlencoded" host="h" body="hello"`},
		{"header names any case", "POST /p HTTP/1.1\r\nhOsT: h\r\ncontent-length: 2\r\nCONTENT-TYPE: a/b\r\n\r\nhi", "POST",
			`POST /p ? ct="a/b" host="h" body="hi"`},
		{"escaped path", "GET /a%20b HTTP/1.1\r\nHost: h\r\n\r\n", "GET", `GET /a b ? ct="" host="h" body=""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, ts.addr)
			for range 2 { // the connection is kept alive
				c.Send(tt.req)
				resp, body := c.Answer(tt.method)
				if resp.StatusCode != 200 || resp.Header.Get("X-Served-By") != "fast" || body != tt.wantBody {
					t.Fatalf("got %d %q %q, want 200 fast %q", resp.StatusCode, resp.Header.Get("X-Served-By"), body, tt.wantBody)
				}
				if resp.Header.Get("Date") == "" || resp.ContentLength != int64(len(body)) || resp.Close {
					t.Fatalf("headers %v, close %v", resp.Header, resp.Close)
				}
			}
		})
	}
}

func TestPipelinedAndSplit(t *testing.T) {
	ts := startServer(t, nil, nil)
	c := dialRaw(t, ts.addr)
	var all strings.Builder
	for i := range 3 {
		all.WriteString("POST /p" + string(rune('0'+i)) + " HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n" + string(rune('a'+i)))
	}
	c.Send(all.String())
	for i := range 3 {
		_, body := c.Answer("POST")
		if want := `POST /p` + string(rune('0'+i)) + ` ? ct="" host="h" body="` + string(rune('a'+i)) + `"`; body != want {
			t.Fatalf("answer %d: %q, want %q", i, body, want)
		}
	}
	// One byte at a time, with a body longer than the first buffer.
	long := strings.Repeat("x", initialBuffer+100)
	req := "POST /long HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(len(long)) + "\r\n\r\n" + long
	for i := 0; i < len(req); i += 997 {
		c.Send(req[i:min(i+997, len(req))])
		time.Sleep(time.Millisecond)
	}
	if _, body := c.Answer("POST"); !strings.HasSuffix(body, long+`"`) {
		t.Fatalf("long body answer: %.80q...", body)
	}
}

func TestConnectionPersistence(t *testing.T) {
	ts := startServer(t, nil, nil)
	tests := []struct {
		name, req  string
		wantProto  string
		wantClosed bool
		wantHeader string // the Connection header of the answer
	}{
		{"1.1 default keeps", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1", false, ""},
		{"1.1 close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "HTTP/1.1", true, ""},
		{"1.0 default closes", "GET / HTTP/1.0\r\n\r\n", "HTTP/1.0", true, "close"},
		{"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "HTTP/1.0", false, "keep-alive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, ts.addr)
			c.Send(tt.req)
			resp, _ := c.Answer("GET")
			// ReadResponse turns "Connection: close" into Close.
			if resp.Proto != tt.wantProto || resp.Close != tt.wantClosed || resp.Header.Get("Connection") != tt.wantHeader {
				t.Fatalf("proto %s close %v connection %q, want %s %v %q", resp.Proto, resp.Close, resp.Header.Get("Connection"), tt.wantProto, tt.wantClosed, tt.wantHeader)
			}
			if tt.wantClosed {
				if !c.Closed() {
					t.Fatal("connection left open")
				}
				return
			}
			c.Send("GET /again HTTP/1.1\r\nHost: h\r\n\r\n")
			if resp, _ := c.Answer("GET"); resp.StatusCode != 200 {
				t.Fatalf("second request: %d", resp.StatusCode)
			}
		})
	}
}

func TestHandedOver(t *testing.T) {
	ts := startServer(t, nil, nil)
	big := strings.Repeat("b", maxBuffered)
	tests := []struct {
		name, req  string
		wantStatus int
		wantBody   string // a prefix
	}{
		{"chunked body", "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, `POST /c ? ct="" host="h" body="abc"`},
		{"expect", "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", 200, `POST /e ? ct="" host="h" body="hi"`},
		{"upgrade", "GET /u HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 200, `GET /u ?`},
		{"body beyond the buffer", "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n" + big, 200, `POST /big ?`},
		{"head beyond the limit", "GET /h HTTP/1.1\r\nHost: h\r\nX-Long: " + strings.Repeat("l", maxHead) + "\r\n\r\n", 200, `GET /h ?`},
		{"bare LF", "GET /lf HTTP/1.1\nHost: h\n\n", 200, `GET /lf ?`},
		{"slow path", "GET /slow/metrics HTTP/1.1\r\nHost: h\r\n\r\n", 200, `GET /slow/metrics ?`},
		{"absolute form", "GET http://h/abs HTTP/1.1\r\nHost: h\r\n\r\n", 200, `GET /abs ?`},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400, ""},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, ""},
		{"bad content length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", 400, ""},
		{"two content lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, ""},
		{"bad request line", "GET\r\n\r\n", 400, ""},
		{"HTTP/3", "GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505, ""},
		{"asterisk form", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 200, ""}, // net/http answers it itself
		{"folded header", "GET /f HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 200, `GET /f ?`},
		{"control byte in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, ts.addr)
			c.Send(tt.req)
			resp, body := c.Answer("GET")
			if resp.StatusCode != tt.wantStatus || !strings.HasPrefix(body, tt.wantBody) {
				t.Fatalf("got %d %.100q, want %d %q...", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantStatus == 200 && tt.wantBody != "" && resp.Header.Get("X-Served-By") != "fallback" {
				t.Fatalf("served by %q, want the fallback", resp.Header.Get("X-Served-By"))
			}
		})
	}
}

// TestNotHTTP: bytes that cannot start an HTTP request (a TLS ClientHello
// to this plain port) are answered 400 at once and the connection closed,
// not left waiting for a line end until the read timeout (none here).
func TestNotHTTP(t *testing.T) {
	ts := startServer(t, nil, nil)
	for _, in := range []string{"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", "\x00\x00\x00\x10", "{\"mid\":1}"} {
		c := dialRaw(t, ts.addr)
		c.Send(in)
		if resp, body := c.Answer("GET"); resp.StatusCode != 400 || body != "400 Bad Request" {
			t.Fatalf("%q: got %d %q, want 400", in, resp.StatusCode, body)
		}
		if !c.Closed() {
			t.Fatalf("%q: connection left open", in)
		}
	}
	// A request still arriving in pieces is waited for.
	c := dialRaw(t, ts.addr)
	c.Send("GE")
	c.Send("T /x HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _ := c.Answer("GET"); resp.StatusCode != 200 {
		t.Fatalf("split request: %d", resp.StatusCode)
	}
}

func TestMayStartRequest(t *testing.T) {
	for in, want := range map[string]bool{
		"": true, "G": true, "GET": true, "GET /": true, "M-SEARCH * HTTP/1.1": true, "\r\nGET": true, " x": true,
		"\x16\x03\x01": false, "GE\x00": false, "{\"a\":1}": false, "GET\x7f /": false, "\x00": false,
	} {
		if got := MayStartRequest([]byte(in)); got != want {
			t.Errorf("MayStartRequest(%q) = %v, want %v", in, got, want)
		}
	}
}

// A pipeline that turns to the fallback is answered in order: what was
// read here first, the rest by net/http on the same connection.
func TestPipelineHandedOverInOrder(t *testing.T) {
	ts := startServer(t, nil, nil)
	c := dialRaw(t, ts.addr)
	c.Send("GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /slow/2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n")
	for i, want := range []string{"fast /1", "fallback /slow/2", "fallback /3"} {
		resp, body := c.Answer("GET")
		by, path, _ := strings.Cut(want, " ")
		if resp.Header.Get("X-Served-By") != by || !strings.HasPrefix(body, "GET "+path+" ") {
			t.Fatalf("answer %d: %s %q, want %s", i, resp.Header.Get("X-Served-By"), body, want)
		}
	}
}

func TestHead(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		_, _ = w.Write([]byte("hello"))
	}), nil)
	c := dialRaw(t, ts.addr)
	c.Send("HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c.Answer("HEAD"); resp.ContentLength != 5 || body != "" {
		t.Fatalf("HEAD: length %d body %q", resp.ContentLength, body)
	}
	if _, body := c.Answer("GET"); body != "hello" {
		t.Fatalf("GET after HEAD: %q", body)
	}
}

func TestAnswerHeaders(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			_, _ = w.Write([]byte("dropped"))
		case "/sniff":
			_, _ = w.Write([]byte("<html><body>x</body></html>"))
		case "/inject":
			w.Header().Set("X-Bad", "a\r\nInjected: yes")
			w.WriteHeader(418)
		case "/close":
			w.Header().Set("Connection", "close")
		}
	}), nil)
	c := dialRaw(t, ts.addr)
	c.Send("GET /nocontent HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c.Answer("GET"); resp.StatusCode != 204 || body != "" || resp.Header.Get("Content-Length") != "" {
		t.Fatalf("204: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	c.Send("GET /sniff HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _ := c.Answer("GET"); resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("sniffed type %q", resp.Header.Get("Content-Type"))
	}
	c.Send("GET /inject HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _ := c.Answer("GET"); resp.StatusCode != 418 || resp.Header.Get("Injected") != "" || resp.Header.Get("X-Bad") != "a  Injected: yes" {
		t.Fatalf("header injection: %d %v", resp.StatusCode, resp.Header)
	}
	c.Send("GET /close HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _ := c.Answer("GET"); !resp.Close || !c.Closed() {
		t.Fatal("a handler's Connection: close did not close")
	}
}

func TestBodyNotReadableAfterHandler(t *testing.T) {
	kept := make(chan *http.Request, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kept <- r
	}), nil)
	c := dialRaw(t, ts.addr)
	c.Send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
	c.Answer("POST")
	r := <-kept
	if n, err := r.Body.Read(make([]byte, 3)); n != 0 || err != http.ErrBodyReadAfterClose {
		t.Fatalf("read after the handler: %d %v", n, err)
	}
}

func TestHandlerPanic(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
	}), nil)
	c := dialRaw(t, ts.addr)
	c.Send("GET /panic HTTP/1.1\r\nHost: h\r\n\r\n")
	if !c.Closed() {
		t.Fatal("connection not closed after a panic")
	}
	if ts.logs.FilterMessage("http handler panicked").Len() != 1 {
		t.Fatalf("logs: %v", ts.logs.All())
	}
	c = dialRaw(t, ts.addr)
	c.Send("GET /fine HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _ := c.Answer("GET"); resp.StatusCode != 200 {
		t.Fatalf("after a panic: %d", resp.StatusCode)
	}
}

func TestTimeouts(t *testing.T) {
	ts := startServer(t, nil, func(s *Server) {
		s.IdleTimeout = 200 * time.Millisecond
		s.ReadTimeout = 300 * time.Millisecond
	})
	idle := dialRaw(t, ts.addr)
	idle.Send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	idle.Answer("GET")
	partial := dialRaw(t, ts.addr)
	partial.Send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
	for name, c := range map[string]*http1test.Conn{"idle": idle, "partial request": partial} {
		if !c.Closed() {
			t.Fatalf("%s connection not closed", name)
		}
	}
	// A new connection owes its first request within ReadTimeout, however
	// long a kept-alive one may wait for its next.
	patient := startServer(t, nil, func(s *Server) {
		s.IdleTimeout = time.Hour
		s.ReadTimeout = 300 * time.Millisecond
	})
	if silent := dialRaw(t, patient.addr); !silent.Closed() {
		t.Fatal("a connection that never sent a request not closed")
	}
}

func TestShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			close(entered)
			<-release
		}
		_, _ = w.Write([]byte("done"))
	}), nil)
	idle := dialRaw(t, ts.addr)
	idle.Send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	idle.Answer("GET")
	handedOver := dialRaw(t, ts.addr)
	handedOver.Send("GET /slow/x HTTP/1.1\r\nHost: h\r\n\r\n")
	handedOver.Answer("GET")
	busy := dialRaw(t, ts.addr)
	busy.Send("GET /block HTTP/1.1\r\nHost: h\r\n\r\n")
	<-entered

	var wg sync.WaitGroup
	var shutdownErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		shutdownErr = ts.Shutdown(ctx)
	}()
	if !idle.Closed() || !handedOver.Closed() {
		t.Fatal("idle connections not closed by Shutdown")
	}
	close(release)
	resp, body := busy.Answer("GET")
	if body != "done" || !resp.Close {
		t.Fatalf("in-flight request: %q close=%v", body, resp.Close)
	}
	wg.Wait()
	if shutdownErr != nil {
		t.Fatalf("Shutdown: %v", shutdownErr)
	}
	if err := <-ts.done; err != http.ErrServerClosed {
		t.Fatalf("Serve returned %v", err)
	}
	ts.done <- nil // for the cleanup
}

func TestShutdownGivesUp(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-release:
		case <-r.Context().Done(): // canceled when Shutdown gives up
		}
	}), nil)
	c := dialRaw(t, ts.addr)
	c.Send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown: %v, want the deadline", err)
	}
	if !c.Closed() {
		t.Fatal("connection left open after Shutdown gave up")
	}
}

// maxWriteListener records the largest single Write on its connections.
type maxWriteListener struct {
	net.Listener
	max atomic.Int64
}

func (l *maxWriteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &maxWriteConn{Conn: c, l: l}, nil
}

type maxWriteConn struct {
	net.Conn
	l *maxWriteListener
}

func (c *maxWriteConn) Write(p []byte) (int, error) {
	for {
		m := c.l.max.Load()
		if int64(len(p)) <= m || c.l.max.CompareAndSwap(m, int64(len(p))) {
			break
		}
	}
	return c.Conn.Write(p)
}

// TestPendingAnswersBounded: a client that pipelines many small requests
// behind a large one (which grew the read buffer) is answered in writes
// of at most maxPending and one answer, not with every buffered request's
// answer held at once; every request is still answered, in order.
func TestPendingAnswersBounded(t *testing.T) {
	answer := strings.Repeat("a", 1000)
	s := &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, answer)
		}),
		Fallback: &http.Server{Handler: echo("fallback"), ReadHeaderTimeout: wait},
		Log:      zap.NewNop(),
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &maxWriteListener{Listener: inner}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 2000
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", 60<<10, strings.Repeat("b", 60<<10))
	for range n {
		req.WriteString("GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	go func() { _, _ = c.Write(req.Bytes()) }()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(c)
	for i := range n + 1 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != answer {
			t.Fatalf("answer %d: %q", i, body)
		}
	}
	if m := ln.max.Load(); m > maxPending+2<<10 {
		t.Errorf("a write of %d bytes: answers held beyond maxPending (%d)", m, maxPending)
	}
}

// TestAmbiguousFramingRefused: Transfer-Encoding beside Content-Length
// (RFC 9112 section 6.3) or on HTTP/1.0 (section 6.1) is answered 400 and
// the connection closed: nothing behind it is read as a request, where
// net/http would read on (a smuggling vector behind a proxy that framed
// the bytes by Content-Length).
func TestAmbiguousFramingRefused(t *testing.T) {
	ts := startServer(t, nil, nil)
	for _, tc := range []struct{ name, in, detail string }{
		{"TE and CL", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
			"both Transfer-Encoding and Content-Length"},
		{"CL and TE", "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", "both Transfer-Encoding and Content-Length"},
		{"TE on HTTP/1.0", "POST /p HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding on HTTP/1.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts.addr)
			c.Send(tc.in)
			resp, body := c.Answer("POST")
			if resp.StatusCode != 400 || body != "400 Bad Request: "+tc.detail || !resp.Close {
				t.Fatalf("got %d %q %v, want 400 naming %q and Connection: close", resp.StatusCode, body, resp.Header, tc.detail)
			}
			if !c.Closed() {
				t.Fatal("connection left open: what follows would be read as a request")
			}
		})
	}
	// Transfer-Encoding alone is read (by net/http) as it should be.
	c := dialRaw(t, ts.addr)
	c.Send("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	if resp, body := c.Answer("POST"); resp.StatusCode != 200 || !strings.Contains(body, `body="abc"`) {
		t.Fatalf("chunked request: %d %q", resp.StatusCode, body)
	}
}
