package roles_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
)

// restConn is a raw client connection to the REST port.
type restConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialREST(t *testing.T, s *server) *restConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", s.addrs.HTTP, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(wait))
	return &restConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *restConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// answer reads one answer: its status, envelope and whether the server
// closes the connection after it.
func (c *restConn) answer() (int, envelope, bool) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("read answer: %v", err)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		c.t.Fatalf("answer %d is not the JSON envelope: %q", resp.StatusCode, raw)
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

	c := dialREST(t, s)
	var pipeline strings.Builder
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("p-%02d", i))
		pipeline.WriteString(roomPush(want[i]))
	}
	c.send(pipeline.String()) // one write, twenty requests
	for i := range 20 {
		if code, env, closed := c.answer(); code != 200 || env.Code != 0 || closed {
			t.Fatalf("pipelined push %d: %d %+v closed=%v", i, code, env, closed)
		}
	}
	delivered(want...)

	// A message over the limit is a 413; the connection goes on.
	c.send(roomPush(strings.Repeat("x", 64<<10+1)))
	if code, env, closed := c.answer(); code != 413 || env.Code != -413 || closed {
		t.Fatalf("oversized push: %d %+v closed=%v", code, env, closed)
	}
	// A chunked body and an admin path, pipelined behind a push.
	c.send(roomPush("after-413") +
		"POST /goim/push/room?operation=1000&type=live&room=rest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nchunked\r\n0\r\n\r\n" +
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	for i, what := range []string{"push", "chunked push"} {
		if code, env, _ := c.answer(); code != 200 || env.Code != 0 {
			t.Fatalf("%s (%d): %d %+v", what, i, code, env)
		}
	}
	if resp, err := http.ReadResponse(c.br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz on the same connection: %v %v", resp, err)
	}
	delivered("after-413", "chunked")

	// HTTP/1.0 without keep-alive: answered, then closed.
	old := dialREST(t, s)
	old.send(strings.Replace(roomPush("http-1.0"), "HTTP/1.1", "HTTP/1.0", 1))
	if code, _, closed := old.answer(); code != 200 || !closed {
		t.Fatalf("HTTP/1.0 push: %d closed=%v", code, closed)
	}
	if _, err := old.br.ReadByte(); err == nil {
		t.Fatal("HTTP/1.0 connection left open")
	}
	delivered("http-1.0")
}
