package roles_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport/http1/http1test"
)

// restAnswer reads one answer to a POST: its status, envelope and whether
// the server closes the connection after it.
func restAnswer(t *testing.T, c *http1test.Conn) (int, envelope, bool) {
	t.Helper()
	resp, raw := c.Answer(http.MethodPost)
	var env envelope
	if err := json.Unmarshal([]byte(raw), &env); err != nil {
		t.Fatalf("answer %d is not the JSON envelope: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, env, resp.Close
}

func roomPush(body string, extra ...string) string {
	return "POST /goim/push/room?operation=1000&type=live&room=rest HTTP/1.1\r\nHost: x\r\n" +
		strings.Join(extra, "") + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
}

// TestRESTOverOneConnection drives the REST port the way HTTP clients do
// besides Go's: pipelined pushes, HTTP/1.0, an oversized body, a chunked
// body and an admin request, checking both the answers and the deliveries.
func TestRESTOverOneConnection(t *testing.T) {
	s := startAll(t, nil)
	member := s.dial(t, "tcp", protocol.Auth{Mid: 1, RoomID: "live://rest"})
	delivered := func(bodies ...string) {
		t.Helper()
		for _, b := range bodies {
			expect(t, member, 1000, b)
		}
	}

	c := http1test.Dial(t, s.addrs.HTTP, wait)
	var pipeline strings.Builder
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("p-%02d", i))
		pipeline.WriteString(roomPush(want[i]))
	}
	c.Send(pipeline.String()) // one write, twenty requests
	for i := range 20 {
		if code, env, closed := restAnswer(t, c); code != 200 || env.Code != 0 || closed {
			t.Fatalf("pipelined push %d: %d %+v closed=%v", i, code, env, closed)
		}
	}
	delivered(want...)

	// A message over the limit is a 413; the connection goes on.
	c.Send(roomPush(strings.Repeat("x", 64<<10+1)))
	if code, env, closed := restAnswer(t, c); code != 413 || env.Code != -413 || closed {
		t.Fatalf("oversized push: %d %+v closed=%v", code, env, closed)
	}
	// A chunked body and an admin path, pipelined behind a push.
	c.Send(roomPush("after-413") +
		"POST /goim/push/room?operation=1000&type=live&room=rest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nchunked\r\n0\r\n\r\n" +
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	for i, what := range []string{"push", "chunked push"} {
		if code, env, _ := restAnswer(t, c); code != 200 || env.Code != 0 {
			t.Fatalf("%s (%d): %d %+v", what, i, code, env)
		}
	}
	if resp, body := c.Answer(http.MethodGet); resp.StatusCode != 200 {
		t.Fatalf("healthz on the same connection: %d %q", resp.StatusCode, body)
	}
	delivered("after-413", "chunked")

	// HTTP/1.0 without keep-alive: answered, then closed.
	old := http1test.Dial(t, s.addrs.HTTP, wait)
	old.Send(strings.Replace(roomPush("http-1.0"), "HTTP/1.1", "HTTP/1.0", 1))
	if code, _, closed := restAnswer(t, old); code != 200 || !closed {
		t.Fatalf("HTTP/1.0 push: %d closed=%v", code, closed)
	}
	if !old.Closed() {
		t.Fatal("HTTP/1.0 connection left open")
	}
	delivered("http-1.0")
}
