package ws

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
)

func TestAcceptKey(t *testing.T) {
	cases := []struct{ key, want string }{
		{"dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, // RFC 6455 section 1.3
		{"x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="}, // RFC 6455 section 1.2
	}
	for _, tc := range cases {
		if got := acceptKey(tc.key); got != tc.want {
			t.Errorf("acceptKey(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

// roundTrip sends a raw HTTP request to ts and returns the raw response
// head and the parsed response.
func roundTrip(t testing.TB, ts *testServer, req string) (string, *http.Response) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr(), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	var head bytes.Buffer
	r := bufio.NewReader(io.TeeReader(nc, &head))
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(r, &http.Request{Method: method}) // a HEAD answer has no body
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	h := head.String()
	if i := strings.Index(h, "\r\n\r\n"); i >= 0 {
		h = h[:i+4]
	}
	return h, resp
}

// TestHandshakeResponse: the 101 holds exactly what goim's comet sends.
func TestHandshakeResponse(t *testing.T) {
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	head, resp := roundTrip(t, ts, upgradeRequest("127.0.0.1:3102"))
	want := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	if head != want {
		t.Fatalf("response head:\n%q\nwant\n%q", head, want)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ts.accept(t)
}

func TestHandshakeRefused(t *testing.T) {
	type hdr = map[string]string
	valid := hdr{
		"Upgrade":               "websocket",
		"Connection":            "Upgrade",
		"Sec-WebSocket-Key":     handshakeKey,
		"Sec-WebSocket-Version": "13",
	}
	with := func(changes hdr) hdr {
		h := hdr{}
		for k, v := range valid {
			h[k] = v
		}
		for k, v := range changes {
			if v == "" {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
		return h
	}
	cases := []struct {
		name        string
		method      string
		header      hdr
		status      int
		wantVersion bool // Sec-WebSocket-Version: 13 in the answer
	}{
		{"valid", "GET", valid, 101, false},
		{"header tokens in lists and any case", "GET", with(hdr{"Connection": "keep-alive, UPGRADE", "Upgrade": "WebSocket"}), 101, false},
		{"key with surrounding spaces", "GET", with(hdr{"Sec-WebSocket-Key": "  " + handshakeKey + " "}), 101, false},
		{"POST", "POST", valid, http.StatusMethodNotAllowed, false},
		{"PUT", "PUT", valid, http.StatusMethodNotAllowed, false},
		{"HEAD", "HEAD", valid, http.StatusMethodNotAllowed, false},
		{"no Upgrade", "GET", with(hdr{"Upgrade": ""}), http.StatusUpgradeRequired, true},
		{"Upgrade to something else", "GET", with(hdr{"Upgrade": "h2c"}), http.StatusUpgradeRequired, true},
		{"no Connection", "GET", with(hdr{"Connection": ""}), http.StatusUpgradeRequired, true},
		{"Connection: keep-alive only", "GET", with(hdr{"Connection": "keep-alive"}), http.StatusUpgradeRequired, true},
		{"version 8", "GET", with(hdr{"Sec-WebSocket-Version": "8"}), http.StatusUpgradeRequired, true},
		{"version 14", "GET", with(hdr{"Sec-WebSocket-Version": "14"}), http.StatusUpgradeRequired, true},
		{"no version", "GET", with(hdr{"Sec-WebSocket-Version": ""}), http.StatusUpgradeRequired, true},
		{"no key", "GET", with(hdr{"Sec-WebSocket-Key": ""}), http.StatusBadRequest, false},
		{"key not base64", "GET", with(hdr{"Sec-WebSocket-Key": "not base64 at all!"}), http.StatusBadRequest, false},
		{"key of 15 bytes", "GET", with(hdr{"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"}), http.StatusBadRequest, false},
		{"key of 17 bytes", "GET", with(hdr{"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAAA="}), http.StatusBadRequest, false},
	}
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var req strings.Builder
			req.WriteString(tc.method + " /sub HTTP/1.1\r\nHost: " + ts.addr() + "\r\n")
			for k, v := range tc.header {
				req.WriteString(k + ": " + v + "\r\n")
			}
			req.WriteString("\r\n")
			_, resp := roundTrip(t, ts, req.String())
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get("Sec-WebSocket-Version"); (got == "13") != tc.wantVersion || (got != "" && got != "13") {
				t.Fatalf("Sec-WebSocket-Version %q in the answer", got)
			}
			if tc.status == http.StatusUpgradeRequired {
				checkUpgradeRequired(t, resp.Header)
			}
			if tc.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "GET" {
				t.Fatalf("405 with Allow %q, want GET", resp.Header.Get("Allow"))
			}
			if tc.status == 101 {
				ts.accept(t)
				return
			}
			select {
			case err := <-ts.errs:
				if !errors.Is(err, ErrHandshake) {
					t.Fatalf("Accept: %v, want ErrHandshake", err)
				}
			case c := <-ts.conns:
				c.Close()
				t.Fatal("a refused request was upgraded")
			case <-time.After(wait):
				t.Fatal("no Accept error")
			}
		})
	}
}

func TestCheckOrigin(t *testing.T) {
	cases := []struct {
		name     string
		patterns []string
		host     string // the request's Host
		origin   string // "" sends none
		ok       bool
	}{
		{"no patterns, any origin", nil, "conn.example.com", "https://evil.example.net", true},
		{"no patterns, odd origin", nil, "conn.example.com", "null", true},
		{"no patterns, garbage origin", nil, "conn.example.com", "%zz", true},
		{"no origin header", []string{"app.example.com"}, "conn.example.com", "", true},
		{"exact host", []string{"app.example.com"}, "conn.example.com", "https://app.example.com", true},
		{"exact host, other case", []string{"App.Example.com"}, "conn.example.com", "HTTPS://APP.EXAMPLE.COM", true},
		{"wildcard", []string{"*.example.com"}, "conn.example.com", "https://web.example.com", true},
		{"wildcard does not match the apex", []string{"*.example.com"}, "conn.example.com", "https://example.com", false},
		{"pattern with port", []string{"localhost:*"}, "conn.example.com", "http://localhost:8080", true},
		{"port not in the pattern", []string{"localhost"}, "conn.example.com", "http://localhost:8080", false},
		{"second pattern", []string{"a.test", "b.test"}, "conn.example.com", "http://b.test", true},
		{"the request's own host", []string{"app.example.com"}, "conn.example.com:3102", "http://conn.example.com:3102", true},
		{"own host, other case", []string{"app.example.com"}, "Conn.Example.com:3102", "http://conn.example.COM:3102", true},
		{"own host name, other port", []string{"app.example.com"}, "conn.example.com:3102", "http://conn.example.com:9999", false},
		{"other origin", []string{"app.example.com"}, "conn.example.com", "https://evil.example.net", false},
		{"suffix trick", []string{"example.com"}, "conn.example.com", "https://example.com.evil.net", false},
		{"null origin", []string{"app.example.com"}, "conn.example.com", "null", false},
		{"unparsable origin", []string{"app.example.com"}, "conn.example.com", "http://[::1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://"+tc.host+"/sub", nil)
			r.Host = tc.host
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			err := checkOrigin(HeadOf(r), tc.patterns)
			if (err == nil) != tc.ok {
				t.Fatalf("checkOrigin: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrHandshake) {
				t.Fatalf("%v does not wrap ErrHandshake", err)
			}
		})
	}
}

// TestOriginAllowList end to end: allowed origins upgrade, others get 403.
func TestOriginAllowList(t *testing.T) {
	cases := []struct {
		name     string
		patterns []string
		origin   func(ts *testServer) string
		status   int
	}{
		{"none configured", nil, func(*testServer) string { return "https://anything.test" }, 101},
		{"matching pattern", []string{"*.allowed.test"}, func(*testServer) string { return "https://app.allowed.test" }, 101},
		{"own host", []string{"*.allowed.test"}, func(ts *testServer) string { return "http://" + ts.addr() }, 101},
		{"refused", []string{"*.allowed.test"}, func(*testServer) string { return "https://evil.test" }, http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, AcceptOptions{OriginPatterns: tc.patterns, MaxBody: protocol.DefaultMaxBody})
			req := strings.Replace(upgradeRequest(ts.addr()), "\r\n\r\n", "\r\nOrigin: "+tc.origin(ts)+"\r\n\r\n", 1)
			_, resp := roundTrip(t, ts, req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 101 {
				ts.accept(t)
			} else if err := <-ts.errs; !errors.Is(err, ErrHandshake) {
				t.Fatalf("Accept: %v", err)
			}
		})
	}
}

// TestSubprotocol: the first of the server's protocols that the client
// offers (in any of its Sec-WebSocket-Protocol headers) is selected; an
// offer the server does not speak, or none, selects nothing.
func TestSubprotocol(t *testing.T) {
	cases := []struct {
		name      string
		supported []string
		offer     []string // one header each
		want      string
	}{
		{"nothing offered", []string{"goim"}, nil, ""},
		{"nothing supported", nil, []string{"goim"}, ""},
		{"offered", []string{"goim"}, []string{"goim"}, "goim"},
		{"server preference wins", []string{"v2", "v1"}, []string{"v1, v2"}, "v2"},
		{"in a second header", []string{"goim"}, []string{"json", " goim "}, "goim"},
		{"not spoken", []string{"goim"}, []string{"json, xml"}, ""},
		{"case-sensitive", []string{"goim"}, []string{"GOIM"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, AcceptOptions{Subprotocols: tc.supported, MaxBody: protocol.DefaultMaxBody})
			extra := ""
			for _, o := range tc.offer {
				extra += "Sec-WebSocket-Protocol: " + o + "\r\n"
			}
			req := strings.Replace(upgradeRequest(ts.addr()), "\r\n\r\n", "\r\n"+extra+"\r\n", 1)
			head, resp := roundTrip(t, ts, req)
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got, ok := resp.Header["Sec-Websocket-Protocol"]
			if tc.want == "" && ok {
				t.Fatalf("selected %q, want none:\n%s", got, head)
			}
			if tc.want != "" && (len(got) != 1 || got[0] != tc.want) {
				t.Fatalf("selected %q, want %q:\n%s", got, tc.want, head)
			}
			ts.accept(t)
		})
	}
}

// TestPipelinedFirstFrame: frames sent in the same write as the handshake,
// which net/http has already buffered when Accept runs, are not lost.
func TestPipelinedFirstFrame(t *testing.T) {
	auth := protocol.Encode(1, protocol.OpAuth, 1, []byte(`{"mid":1}`))
	hb := protocol.Encode(1, protocol.OpHeartbeat, 2, nil)
	cases := []struct {
		name  string
		extra []byte
		want  [][]byte
	}{
		{"one frame", msg(auth), [][]byte{auth}},
		{"two frames", cat(msg(auth), msg(hb)), [][]byte{auth, hb}},
		{"a frame and a half", cat(msg(auth), msg(hb)[:5]), [][]byte{auth}},
		{"a ping first", cat(msgFragment(true, opPing, []byte("hi")), msg(auth)), [][]byte{auth}},
	}
	ts := newTestServer(t, AcceptOptions{MaxBody: protocol.DefaultMaxBody})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc, srv := dialRaw(t, ts, tc.extra)
			if len(srv.pending) == 0 {
				// Not a failure: TCP may deliver the bytes apart; then
				// TestPendingBytes still covers the path.
				t.Log("the frame did not arrive with the handshake this time")
			}
			for i, w := range tc.want {
				f, err := srv.ReadFrame(readDeadline())
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if got := f.Append(nil); !bytes.Equal(got, w) {
					t.Fatalf("frame %d: %v", i, f)
				}
			}
			if tc.name == "a frame and a half" { // the other half arrives later
				rc.send(t, msg(hb)[5:])
				if f, err := srv.ReadFrame(readDeadline()); err != nil || f.Op != protocol.OpHeartbeat {
					t.Fatalf("second frame: %v, %v", f, err)
				}
			}
		})
	}
}

// TestPendingBytes drives the handshake leftovers directly: whatever part
// of a frame came with the handshake, the rest is read from the socket. The
// ping, read before any SetControl (as before auth), is answered at once.
func TestPendingBytes(t *testing.T) {
	auth := protocol.Encode(1, protocol.OpAuth, 1, []byte(`{"mid":1,"key":"k"}`))
	stream := cat(msg(auth), msgFragment(true, opPing, []byte("p")), msg(auth))
	for split := 0; split <= len(stream); split++ {
		a, b := net.Pipe()
		c := newConn(a, protocol.DefaultMaxBody, "pipe", bytes.Clone(stream[:split]))
		go func() { _, _ = b.Write(stream[split:]) }()
		pong := make(chan []byte, 1)
		go func() {
			p := make([]byte, 3)
			_, _ = io.ReadFull(b, p)
			pong <- p
		}()
		for i := range 2 {
			f, err := c.ReadFrame(readDeadline())
			if err != nil || !bytes.Equal(f.Append(nil), auth) {
				t.Fatalf("split %d, frame %d: %v, %v", split, i, f, err)
			}
		}
		if p := <-pong; !bytes.Equal(p, []byte{0x8a, 1, 'p'}) {
			t.Fatalf("split %d: pong %x", split, p)
		}
		if len(c.pending) != 0 {
			t.Fatalf("split %d: %d pending bytes left", split, len(c.pending))
		}
		a.Close()
		b.Close()
	}
}

// checkUpgradeRequired: a 426 names the protocol in an Upgrade header and
// lists the upgrade option in Connection (RFC 9110 sections 15.5.22, 7.8).
func checkUpgradeRequired(t *testing.T, h http.Header) {
	t.Helper()
	if !strings.EqualFold(h.Get("Upgrade"), "websocket") {
		t.Fatalf("426 with Upgrade %q, want websocket", h.Get("Upgrade"))
	}
	if !hasToken(strings.Join(h.Values("Connection"), ","), "upgrade") {
		t.Fatalf("426 with Connection %q, want the upgrade option", h.Values("Connection"))
	}
}

// TestUpgradeRefused: Upgrade, the path the cloud's own listener takes,
// answers refusals as Accept does.
func TestUpgradeRefused(t *testing.T) {
	valid := Head{Method: http.MethodGet, Host: "h", Connection: "Upgrade", Upgrade: "websocket", Version: "13", Key: handshakeKey}
	cases := []struct {
		name   string
		change func(*Head)
		status int
	}{
		{"version 8", func(h *Head) { h.Version = "8" }, http.StatusUpgradeRequired},
		{"no Upgrade", func(h *Head) { h.Upgrade = "" }, http.StatusUpgradeRequired},
		{"no key", func(h *Head) { h.Key = "" }, http.StatusBadRequest},
		{"POST", func(h *Head) { h.Method = http.MethodPost }, http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := valid
			tc.change(&h)
			a, b := net.Pipe()
			defer b.Close()
			errc := make(chan error, 1)
			go func() {
				_, err := Upgrade(a, h, bufio.NewReader(a), AcceptOptions{MaxBody: protocol.DefaultMaxBody})
				errc <- err
			}()
			_ = b.SetReadDeadline(time.Now().Add(wait))
			raw, _ := io.ReadAll(b) // Refuse closes a
			// http.ReadResponse drops a Connection header that says close:
			// the header is checked as sent.
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
			if err != nil {
				t.Fatal(err)
			}
			head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
			for line := range strings.SplitSeq(head, "\r\n") {
				if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Connection") {
					resp.Header.Set("Connection", strings.TrimSpace(value))
				}
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == http.StatusUpgradeRequired {
				if resp.Header.Get("Sec-WebSocket-Version") != "13" {
					t.Fatalf("426 without Sec-WebSocket-Version: %v", resp.Header)
				}
				checkUpgradeRequired(t, resp.Header)
			}
			if tc.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "GET" {
				t.Fatalf("405 with Allow %q, want GET", resp.Header.Get("Allow"))
			}
			if err := <-errc; !errors.Is(err, ErrHandshake) {
				t.Fatalf("Upgrade: %v, want ErrHandshake", err)
			}
		})
	}
}
