package cloud

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport/client"
)

// startWSListener serves th on a loopback WSListener for /sub, with an
// http.Server answering /healthz behind it.
func startWSListener(t *testing.T, th *testHub) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := th.WSListener(ln, "/sub")
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := &http.Server{Handler: mux}
	served := make(chan error, 2)
	go func() { served <- wl.Serve() }()
	go func() { served <- srv.Serve(wl) }()
	t.Cleanup(func() {
		_ = wl.Close()
		_ = srv.Close()
		for range 2 {
			<-served
		}
	})
	return ln.Addr().String()
}

// rawExchange writes req on a fresh connection and returns the status line
// of the answer ("" if the connection closed without one).
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitFor))
	go func() { _, _ = io.WriteString(c, req) }() // may stall once the server closes
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

func TestWSListener(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	addr := startWSListener(t, th)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	t.Run("session", func(t *testing.T) {
		c, err := client.Dial(ctx, client.Options{Network: "ws", Addr: "ws://" + addr + "/sub?v=1", Timeout: waitFor,
			Auth: protocol.Auth{Mid: 1, Key: "a", RoomID: "r", Accepts: []int32{1000}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Heartbeat(5); err != nil {
			t.Fatal(err)
		}
		if fs, err := c.NextMessage(ctx); err != nil || len(fs) != 1 || fs[0].Op != protocol.OpHeartbeatReply {
			t.Fatalf("heartbeat: %v %v", fs, err)
		}
	})

	t.Run("other paths reach the http.Server", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "ok" {
			t.Fatalf("healthz: %d %q", resp.StatusCode, b)
		}
		if got := rawExchange(t, addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"); got != "HTTP/1.1 404 Not Found" {
			t.Errorf("unknown path: %q", got)
		}
	})

	// An upgrade request with the Auth frame right behind it, in one write:
	// the frame must not be lost with the request's buffer.
	t.Run("frame behind the request", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(waitFor))
		body, _ := json.Marshal(protocol.Auth{Mid: 2, Key: "b", RoomID: "r"})
		frame := protocol.Encode(protocol.PushVer, protocol.OpAuth, 1, body)
		msg := []byte{0x82, 0x80 | 126, 0, 0, 0, 0, 0, 0} // binary, masked with a zero key: payload as is
		binary.BigEndian.PutUint16(msg[2:4], uint16(len(frame)))
		msg = append(msg, frame...)
		req := "GET /sub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
		if _, err := c.Write(append([]byte(req), msg...)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		head, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(head, "HTTP/1.1 101") {
			t.Fatalf("upgrade answer %q %v", head, err)
		}
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if l == "\r\n" {
				break
			}
		}
		var hdr [2]byte // FIN + binary, unmasked length
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.Fatal(err)
		}
		n := int(hdr[1] & 0x7f)
		if n == 126 {
			var ext [2]byte
			if _, err := io.ReadFull(br, ext[:]); err != nil {
				t.Fatal(err)
			}
			n = int(binary.BigEndian.Uint16(ext[:]))
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			t.Fatal(err)
		}
		f, err := protocol.DecodeMessage(payload, 1<<16)
		if err != nil || f.Op != protocol.OpAuthReply {
			t.Fatalf("first message %v %v, want the auth reply", f, err)
		}
	})

	for _, tc := range []struct{ name, req, want string }{
		{"not an upgrade", "GET /sub HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 426 Upgrade Required"},
		{"malformed header", "GET /sub HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"header too large", "GET /sub HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
		{"request line too long", "GET /sub?" + strings.Repeat("a", 5000) + " HTTP/1.1\r\n\r\n", "HTTP/1.1 414 Request URI Too Long"},
		{"TLS handshake", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", "HTTP/1.1 400 Bad Request"}, // at once, not at the timeout
		{"silence", "", ""}, // closed at the handshake timeout
		{"half a line", "GET /su", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawExchange(t, addr, tc.req); got != tc.want {
				t.Errorf("answer %q, want %q", got, tc.want)
			}
		})
	}

	sctx, scancel := context.WithTimeout(context.Background(), waitFor)
	defer scancel()
	if err := th.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if got := rawExchange(t, addr, "GET /sub HTTP/1.1\r\nHost: x\r\n\r\n"); got != "HTTP/1.1 503 Service Unavailable" {
		t.Errorf("after Shutdown: %q", got)
	}
}

// TestWSSubprotocol: cloud.ws_subprotocols reaches the upgrade: a client
// offering a listed protocol gets it selected and a working session; one
// offering nothing listed gets none (a browser then refuses the socket).
func TestWSSubprotocol(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.WSSubprotocols = []string{"goim", "goim.v2"} })
	addr := startWSListener(t, th)
	for _, tc := range []struct {
		name  string
		offer []string
		want  string
	}{
		{"listed", []string{"chat", "goim.v2"}, "goim.v2"},
		{"server preference", []string{"goim.v2", "goim"}, "goim"},
		{"not listed", []string{"chat"}, ""},
		{"none offered", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws://"+addr+"/sub", &websocket.DialOptions{Subprotocols: tc.offer})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if got := c.Subprotocol(); got != tc.want {
				t.Fatalf("selected %q, want %q", got, tc.want)
			}
			body, _ := json.Marshal(protocol.Auth{Mid: 3, Key: "sp-" + tc.name})
			if err := c.Write(ctx, websocket.MessageBinary, protocol.Encode(1, protocol.OpAuth, 1, body)); err != nil {
				t.Fatal(err)
			}
			_, msg, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if f, err := protocol.DecodeMessage(msg, 1<<16); err != nil || f.Op != protocol.OpAuthReply {
				t.Fatalf("first message %v %v, want the auth reply", f, err)
			}
		})
	}
}

func TestForPath(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"GET /sub HTTP/1.1\r", true},
		{"GET /sub?a=b HTTP/1.1\r", true},
		{"POST /sub HTTP/1.1\r", true},
		{"GET /subx HTTP/1.1\r", false},
		{"GET /healthz HTTP/1.1\r", false},
		{"GET http://example.com/sub HTTP/1.1\r", true},
		{"GET ws://example.com:80/sub?a=b HTTP/1.1\r", true},
		{"GET http://example.com/subx HTTP/1.1\r", false},
		{"GET http://example.com HTTP/1.1\r", false},
		{"GET /x?u=http://a/sub HTTP/1.1\r", false},
		{"GET", false},
		{"", false},
	} {
		if got := forPath([]byte(tc.line), "/sub"); got != tc.want {
			t.Errorf("%q: %v", tc.line, got)
		}
	}
}

// The request line is found as soon as it is complete, however it arrives.
func TestPeekLine(t *testing.T) {
	pr, pw := io.Pipe()
	br := bufio.NewReaderSize(pr, 64)
	got := make(chan string, 1)
	go func() {
		l, err := peekLine(br)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(l)
	}()
	for _, part := range []string{"GET /s", "ub HTTP/1.1\r", "\nHost: x\r\n"} {
		if _, err := io.WriteString(pw, part); err != nil {
			t.Fatal(err)
		}
	}
	select { // the writer never closes: peekLine must not wait for more
	case l := <-got:
		if l != "GET /sub HTTP/1.1\r" {
			t.Fatalf("line %q", l)
		}
	case <-time.After(waitFor):
		t.Fatal("peekLine still waiting")
	}
	if b, _ := br.Peek(br.Buffered()); !strings.HasPrefix(string(b), "GET /sub") {
		t.Errorf("line consumed: buffer holds %q", b)
	}
	_ = pw.Close()

	for _, in := range []string{"\x16\x03\x01", "GE\x00T / HTTP/1.1", "{\"mid\":1}"} {
		if _, err := peekLine(bufio.NewReader(strings.NewReader(in))); err != errNotHTTP {
			t.Errorf("peekLine(%q): %v, want errNotHTTP", in, err)
		}
	}

	long := bufio.NewReaderSize(strings.NewReader(strings.Repeat("a", 100)+"\n"), 16)
	if _, err := peekLine(long); err != errLineTooLong {
		t.Errorf("long line: %v", err)
	}
}

// Shutdown does not wait for a client that connected and said nothing.
func TestWSListenerShutdownClosesHandshakes(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.HandshakeTimeout = time.Hour })
	addr := startWSListener(t, th)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, "the handshake to be pending", func() bool { return th.pending.len() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Shutdown")
	}
}

// TestWSCloseCodes: a WebSocket client the server lets go reads why in the
// close frame (code and reason, RFC 6455 section 7.4), not only in op 6.
func TestWSCloseCodes(t *testing.T) {
	hb := protocol.Encode(protocol.PushVer, protocol.OpHeartbeat, 1, nil)
	badHeader := append([]byte(nil), hb...)
	binary.BigEndian.PutUint16(badHeader[4:], 17)
	cases := []struct {
		name   string
		cfg    func(*Config)
		auth   bool
		act    func(t *testing.T, th *testHub, addr string, c *websocket.Conn)
		code   websocket.StatusCode
		reason string
	}{
		{"auth timeout", func(c *Config) { c.HandshakeTimeout = 100 * time.Millisecond }, false, nil,
			websocket.StatusPolicyViolation, "auth timeout"},
		{"frame before auth", nil, false, func(t *testing.T, _ *testHub, _ string, c *websocket.Conn) {
			wsWrite(t, c, hb)
		}, websocket.StatusPolicyViolation, "auth required"},
		{"bad frame", nil, true, func(t *testing.T, _ *testHub, _ string, c *websocket.Conn) {
			wsWrite(t, c, badHeader)
		}, websocket.StatusProtocolError, "protocol error: header_len"},
		{"heartbeat timeout", func(c *Config) { c.HeartbeatTimeout = 200 * time.Millisecond }, true, nil,
			websocket.StatusPolicyViolation, "heartbeat timeout"},
		{"replaced", nil, true, func(t *testing.T, _ *testHub, addr string, _ *websocket.Conn) {
			wsAuthed(t, addr)
		}, websocket.StatusPolicyViolation, "replaced by a new connection"},
		{"shutdown", nil, true, func(t *testing.T, th *testHub, _ string, _ *websocket.Conn) {
			go func() { _ = th.Shutdown(context.Background()) }()
		}, websocket.StatusGoingAway, "server shutting down"},
		{"shutdown before auth", nil, false, func(t *testing.T, th *testHub, _ string, _ *websocket.Conn) {
			go func() { _ = th.Shutdown(context.Background()) }()
		}, websocket.StatusGoingAway, "server shutting down"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			th := newTestHub(t, tc.cfg)
			addr := startWSListener(t, th)
			var c *websocket.Conn
			if tc.auth {
				c = wsAuthed(t, addr)
			} else {
				c = wsDial(t, addr)
			}
			if tc.act != nil {
				tc.act(t, th, addr, c)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			for {
				_, _, err := c.Read(ctx)
				if err == nil {
					continue // op 6, and what came before it
				}
				var ce websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != tc.code || ce.Reason != tc.reason {
					t.Fatalf("read: %v, want close %d %q", err, tc.code, tc.reason)
				}
				return
			}
		})
	}
}

func wsDial(t *testing.T, addr string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/sub", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// wsAuthed dials and authenticates as key "k" and waits for the reply.
func wsAuthed(t *testing.T, addr string) *websocket.Conn {
	t.Helper()
	c := wsDial(t, addr)
	body, _ := json.Marshal(protocol.Auth{Mid: 1, Key: "k", RoomID: "r"})
	wsWrite(t, c, protocol.Encode(protocol.PushVer, protocol.OpAuth, 1, body))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, b, err := c.Read(ctx); err != nil || len(b) < protocol.HeaderLen || binary.BigEndian.Uint32(b[8:]) != uint32(protocol.OpAuthReply) {
		t.Fatalf("auth reply: %x %v", b, err)
	}
	return c
}

func wsWrite(t *testing.T, c *websocket.Conn, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, b); err != nil {
		t.Fatal(err)
	}
}

// TestWSHandshakeStrict: what RFC 6455 section 4.2.1 rules out is refused,
// whichever parser (the fast one or net/http's) read the request.
func TestWSHandshakeStrict(t *testing.T) {
	th := newTestHub(t, nil)
	addr := startWSListener(t, th)
	const ws = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for _, tc := range []struct{ name, req, want string }{
		{"valid", "GET /sub HTTP/1.1\r\nHost: x\r\n" + ws + "\r\n", "HTTP/1.1 101 Switching Protocols"},
		{"absolute form", "GET http://x/sub HTTP/1.1\r\nHost: x\r\n" + ws + "\r\n", "HTTP/1.1 101 Switching Protocols"},
		{"HTTP/1.0", "GET /sub HTTP/1.0\r\nHost: x\r\n" + ws + "\r\n", "HTTP/1.1 400 Bad Request"},
		{"no Host", "GET /sub HTTP/1.1\r\n" + ws + "\r\n", "HTTP/1.1 400 Bad Request"},
		{"two keys", "GET /sub HTTP/1.1\r\nHost: x\r\n" + ws + "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"two versions", "GET /sub HTTP/1.1\r\nHost: x\r\n" + ws + "Sec-WebSocket-Version: 13\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"a body", "GET /sub HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n" + ws + "\r\nhello", "HTTP/1.1 400 Bad Request"},
		{"a chunked body", "GET /sub HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + ws + "\r\n5\r\nhello\r\n0\r\n\r\n", "HTTP/1.1 400 Bad Request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawExchange(t, addr, tc.req); got != tc.want {
				t.Errorf("%q, want %q", got, tc.want)
			}
		})
	}
}

// TestWSClientCloses: a client's close gets the close handshake's answer
// (coder's Close returns nil only once it has it) and ends the session.
func TestWSClientCloses(t *testing.T) {
	th := newTestHub(t, nil)
	addr := startWSListener(t, th)
	c := wsAuthed(t, addr)
	if err := c.Close(websocket.StatusGoingAway, "navigating away"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
	eventually(t, "the session to end", func() bool { return th.current("k") == nil })
}

// TestWSHandshakeTimeoutCoversUpgrade: handshake_timeout bounds the
// upgrade and the Auth frame together, not each in turn. The upgrade
// takes two thirds of it here and Auth comes a further two thirds later:
// the connection is closed ("auth timeout"), never authenticated.
func TestWSHandshakeTimeoutCoversUpgrade(t *testing.T) {
	const timeout = 600 * time.Millisecond
	th := newTestHub(t, func(c *Config) { c.HandshakeTimeout = timeout })
	addr := startWSListener(t, th)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitFor))
	req := "GET /sub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := io.WriteString(c, req[:1]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(timeout * 2 / 3)
	if _, err := io.WriteString(c, req[1:]); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	time.Sleep(timeout * 2 / 3)
	auth := protocol.Encode(1, protocol.OpAuth, 1, []byte(`{"mid":1,"key":"late"}`))
	frame := append([]byte{0x82, 0x80 | byte(len(auth)), 0, 0, 0, 0}, auth...) // masked with a zero key
	_, _ = c.Write(frame)                                                      // the server may have closed already
	head := make([]byte, 2)
	if _, err := io.ReadFull(br, head); err != nil {
		t.Fatalf("no close frame: %v", err)
	}
	if op := head[0] & 0x0f; op != 0x8 {
		t.Fatalf("first frame has opcode %#x, want a close (0x8): the late Auth was taken", op)
	}
	if th.current("late") != nil {
		t.Error("the late Auth made a session")
	}
}
