package http1

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// jsonErrors is an ErrorBody as the REST API's.
func jsonErrors(status int, text string) (string, []byte) {
	return "application/json", fmt.Appendf(nil, `{"code":%d,"message":%q}`, -status, text)
}

// TestErrorBody: with ErrorBody set, every answer given before a handler
// runs, here or by net/http on a connection handed over, comes in its
// format, with the status it had; handlers' answers, errors included, are
// left alone.
func TestErrorBody(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "handler error", http.StatusTeapot)
	})
	tests := []struct {
		name   string
		req    string
		status int
		text   string // the message, when it is rewritten
	}{
		{"not HTTP at all", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, "Bad Request"},
		{"garbage line", "HELLO\r\n\r\n", 400, "Bad Request"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, "Bad Request: missing required Host header"},
		{"bad Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400, "Bad Request"},
		{"HTTP/2.0 line", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "HTTP Version Not Supported: unsupported protocol version"},
		{"unknown transfer encoding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Unsupported transfer encoding"},
		{"headers too large", "GET / HTTP/1.1\r\nHost: h\r\nX-A: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431, "Request Header Fields Too Large"},
		{"a handler's error stays", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 418, ""},
		{"a fallback handler's error stays", "GET /slow/x HTTP/1.1\r\nHost: h\r\n\r\n", 418, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, h, func(s *Server) {
				s.ErrorBody = jsonErrors
				s.Fallback.Handler = h
			})
			c := dialRaw(t, ts.addr)
			c.Send(tt.req)
			resp, body := c.Answer(http.MethodGet)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%q)", resp.StatusCode, tt.status, body)
			}
			if tt.text == "" {
				if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !strings.Contains(body, "handler error") {
					t.Errorf("the handler's answer was changed: %s %q", resp.Header.Get("Content-Type"), body)
				}
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if want := fmt.Sprintf(`{"code":%d,"message":%q}`, -tt.status, tt.text); body != want {
				t.Errorf("body %s, want %s", body, want)
			}
			if !resp.Close {
				t.Error("no Connection: close")
			}
		})
	}
}

// TestRewriteErrorLeavesOthers: only net/http's own error answers match.
func TestRewriteErrorLeavesOthers(t *testing.T) {
	for _, p := range []string{
		"HTTP/1.1 200 OK" + plainErrorHeaders + "fine",
		"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nno",
		"HTTP/1.1 400 Bad Request\r\nX: y" + plainErrorHeaders,
		"HTTP/1.0 400 Bad Request" + plainErrorHeaders + "400 Bad Request",
		"HTTP/1.1 4x0 Bad" + plainErrorHeaders,
		"HTTP/1.1 " + plainErrorHeaders,
		"some body bytes" + plainErrorHeaders,
	} {
		if a, ok := rewriteError([]byte(p), jsonErrors); ok {
			t.Errorf("rewrote %q into %q", p, a)
		}
	}
}
