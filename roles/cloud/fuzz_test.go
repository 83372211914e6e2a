package cloud

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
)

// pipeListener hands out the server ends of in-memory pipes, so a fuzz run
// makes no sockets (and exhausts no ports).
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial returns the client end of a new pipe whose server end is accepted.
func (l *pipeListener) dial() net.Conn {
	server, client := net.Pipe()
	l.conns <- server
	return client
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// FuzzWSListener: whatever a client sends first on the WebSocket port, the
// listener answers it (an HTTP status line, or a 101 and then frames) or
// just closes, within the handshake and heartbeat timeouts, and never
// panics or hangs. Requests for other paths reach the http.Server behind it.
func FuzzWSListener(f *testing.F) {
	upgrade := "GET /sub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	auth := protocol.Encode(1, protocol.OpAuth, 1, []byte(`{"mid":1,"room_id":"live://1"}`))
	masked := func(payload []byte) []byte { // one masked binary frame, mask 0
		return append([]byte{0x82, 0x80 | byte(len(payload))}, append([]byte{0, 0, 0, 0}, payload...)...)
	}
	for _, seed := range []string{
		upgrade,
		upgrade + string(masked(auth)),
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /sub?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /sub HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"GET /sub HTTP/1.0\r\n\r\n",
		"GET  /sub  HTTP/1.1\r\n\r\n",
		"\r\n\r\n",
		"GET /sub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\n\r\n",
		"\x00\x00\x00\x10\x00\x10\x00\x01\x00\x00\x00\x07\x00\x00\x00\x01",
	} {
		f.Add([]byte(seed))
	}
	th := newTestHub(f, func(c *Config) {
		c.HandshakeTimeout = 200 * time.Millisecond
		c.HeartbeatTimeout = 300 * time.Millisecond // sessions that get in end soon too
	})
	ln := newPipeListener()
	wl := th.WSListener(ln, "/sub")
	srv := &http.Server{
		Handler:     http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		ReadTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond,
	}
	served := make(chan struct{}, 2)
	go func() { _ = wl.Serve(); served <- struct{}{} }()
	go func() { _ = srv.Serve(wl); served <- struct{}{} }()
	f.Cleanup(func() {
		_ = wl.Close()
		_ = srv.Close()
		<-served
		<-served
	})

	f.Fuzz(func(t *testing.T, data []byte) {
		c := ln.dial()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() { _, _ = c.Write(data) }() // stalls once the server stops reading: ended by Close
		var got bytes.Buffer
		_, err := io.Copy(&got, bufio.NewReader(c))
		if err != nil {
			t.Fatalf("no close within 5s after %q (%v); got %q", data, err, got.Bytes())
		}
		if got.Len() > 0 && !bytes.HasPrefix(got.Bytes(), []byte("HTTP/1.")) {
			t.Fatalf("answer to %q is not HTTP: %q", data, got.Bytes())
		}
	})
}

// FuzzTCPSession: whatever a client sends on the TCP port, what the hub
// writes back is well-formed goim frames, the first an AuthReply or a
// DisconnectReply, and the connection ends within the handshake and
// heartbeat timeouts once the client falls silent.
func FuzzTCPSession(f *testing.F) {
	auth := protocol.Encode(1, protocol.OpAuth, 1, []byte(`{"mid":1,"key":"fz","room_id":"live://1","accepts":[1000]}`))
	frame := func(op int32, body string) []byte { return protocol.Encode(1, op, 2, []byte(body)) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, seed := range [][]byte{
		auth,
		cat(auth, frame(protocol.OpHeartbeat, "")),
		cat(auth, frame(protocol.OpChangeRoom, "live://2"), frame(protocol.OpSub, "1000,1001"), frame(protocol.OpUnsub, "x")),
		cat(auth, frame(protocol.OpSendMsg, "hello"), frame(99, "unknown op")),
		frame(protocol.OpHeartbeat, ""), // before auth
		protocol.Encode(1, protocol.OpAuth, 1, []byte("not json")),
		{0, 0, 0, 8, 0, 16, 0, 1, 0, 0, 0, 7, 0, 0, 0, 1},       // packLen too small
		{0, 0, 0x13, 0x88, 0, 16, 0, 1, 0, 0, 0, 7, 0, 0, 0, 1}, // packLen too large
		{0, 0, 0, 16, 0, 12, 0, 1, 0, 0, 0, 7, 0, 0, 0, 1},      // headerLen not 16
	} {
		f.Add(seed)
	}
	th := newTestHub(f, func(c *Config) {
		c.HandshakeTimeout = 50 * time.Millisecond // most inputs end on a timeout: keep it short
		c.HeartbeatTimeout = 100 * time.Millisecond
	})
	ln := newPipeListener()
	served := make(chan struct{})
	go func() { _ = th.ServeTCP(ln); close(served) }()
	f.Cleanup(func() { _ = ln.Close(); <-served })

	f.Fuzz(func(t *testing.T, data []byte) {
		c := ln.dial()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() { _, _ = c.Write(data) }() // stalls once the server stops reading: ended by Close
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("no close within 5s after %q (%v); got %x", data, err, got)
		}
		for i := 0; len(got) > 0; i++ {
			fr, n, err := protocol.Decode(got, 1<<20)
			if err != nil {
				t.Fatalf("answer to %q: frame %d does not decode (%v): %x", data, i, err, got)
			}
			if i == 0 && fr.Op != protocol.OpAuthReply && fr.Op != protocol.OpDisconnectReply {
				t.Fatalf("answer to %q starts with %v, want an AuthReply or a DisconnectReply", data, fr)
			}
			got = got[n:]
		}
	})
}
