package roles_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/roles"
	"github.com/imcloud/imcloud/roles/rolestest"
	"github.com/imcloud/imcloud/transport/client"
)

const wait = 10 * time.Second // generous deadline for anything that should happen

type server struct {
	app   *roles.App
	addrs roles.Addrs
	base  string
}

// startAll runs `imcloud all` in process on random loopback ports.
func startAll(t testing.TB, mutate func(*roles.Config)) *server {
	t.Helper()
	app, _ := rolestest.StartAll(t, func(c *roles.Config) {
		c.Node.ID = "e2e-node"
		if mutate != nil {
			mutate(c)
		}
	})
	a := app.Addrs()
	return &server{app: app, addrs: a, base: "http://" + a.HTTP}
}

type envelope struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

type pushResult struct {
	ID       string `json:"id"`
	Sessions int    `json:"sessions"`
}

// do sends an HTTP request and decodes the JSON envelope.
func (s *server) do(t testing.TB, method, path string, q url.Values, body string) (int, envelope) {
	t.Helper()
	u := s.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("%s %s: answer is not the JSON envelope: %q", method, path, raw)
	}
	return resp.StatusCode, env
}

// push posts a push and requires success; it returns the sessions targeted.
func (s *server) push(t testing.TB, path string, q url.Values, body string) int {
	t.Helper()
	code, env := s.do(t, http.MethodPost, path, q, body)
	if code != http.StatusOK || env.Code != 0 {
		t.Fatalf("POST %s?%s: status %d, %+v", path, q.Encode(), code, env)
	}
	var r pushResult
	if err := json.Unmarshal(env.Data, &r); err != nil || r.ID == "" {
		t.Fatalf("POST %s: push answer %s: %v", path, env.Data, err)
	}
	return r.Sessions
}

func qv(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

func (s *server) addr(network string) string {
	if network == "ws" {
		return "ws://" + s.addrs.WS + "/sub"
	}
	return s.addrs.TCP
}

func (s *server) dial(t testing.TB, network string, a protocol.Auth) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Network: network, Addr: s.addr(network), Auth: a})
	if err != nil {
		t.Fatalf("dial %s: %v", network, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *server) dialRaw(t testing.TB, network string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := client.DialRaw(ctx, client.Options{Network: network, Addr: s.addr(network)})
	if err != nil {
		t.Fatalf("dial %s: %v", network, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func next(t testing.TB, c *client.Client) protocol.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	f, err := c.Next(ctx)
	if err != nil {
		t.Fatalf("%s client: waiting for a frame: %v", c.Network(), err)
	}
	return f
}

// expect reads the next frame and checks its op and body.
func expect(t testing.TB, c *client.Client, op int32, body string) protocol.Frame {
	t.Helper()
	f := next(t, c)
	if f.Op != op || string(f.Body) != body {
		t.Fatalf("%s client: got %v, want op=%d body=%q", c.Network(), f, op, body)
	}
	return f
}

// expectClosed reads until the server closes the connection; a
// DisconnectReply on the way is allowed, any push is not.
func expectClosed(t testing.TB, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		f, err := c.Next(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				t.Fatalf("%s client: connection still open", c.Network())
			}
			return
		}
		if f.Op != protocol.OpDisconnectReply {
			t.Fatalf("%s client: got %v before the close, want only a DisconnectReply", c.Network(), f)
		}
	}
}

func heartbeatCount(t testing.TB, f protocol.Frame) int32 {
	t.Helper()
	if f.Op != protocol.OpHeartbeatReply || len(f.Body) != 4 {
		t.Fatalf("not a heartbeat reply: %v", f)
	}
	return int32(binary.BigEndian.Uint32(f.Body))
}

var networks = []string{"tcp", "ws"}

func TestAuthAndHeartbeat(t *testing.T) {
	s := startAll(t, nil)
	a := s.dial(t, "tcp", protocol.Auth{Mid: 1, RoomID: "live://1000"})
	b := s.dial(t, "ws", protocol.Auth{Mid: 2, RoomID: "live://1000"})
	lone := s.dial(t, "tcp", protocol.Auth{Mid: 3})

	for _, c := range []*client.Client{a, b} {
		if err := c.Send(1, protocol.OpHeartbeat, 7, nil); err != nil {
			t.Fatal(err)
		}
		f := next(t, c)
		if f.Ver != 1 || f.Seq != 7 {
			t.Errorf("%s: heartbeat reply ver=%d seq=%d, want the request's 1/7", c.Network(), f.Ver, f.Seq)
		}
		if n := heartbeatCount(t, f); n != 2 {
			t.Errorf("%s: heartbeat count %d, want 2 (both room members)", c.Network(), n)
		}
	}
	// goim's benchmark client heartbeats with ver 0 and seq 0.
	if err := a.Send(0, protocol.OpHeartbeat, 0, nil); err != nil {
		t.Fatal(err)
	}
	if f := next(t, a); f.Ver != 0 || f.Seq != 0 || heartbeatCount(t, f) != 2 {
		t.Errorf("ver-0 heartbeat reply: %v", f)
	}
	if err := lone.Heartbeat(3); err != nil {
		t.Fatal(err)
	}
	if n := heartbeatCount(t, next(t, lone)); n != 0 {
		t.Errorf("heartbeat count outside any room: %d, want 0", n)
	}
	// SendMsg is answered with op 5 echoing seq, empty body.
	if err := a.Send(1, protocol.OpSendMsg, 11, []byte("client-msg")); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, a, protocol.OpSendMsgReply, ""); f.Seq != 11 {
		t.Errorf("send reply seq %d, want 11", f.Seq)
	}
}

func TestPushByMidToTwoDevices(t *testing.T) {
	s := startAll(t, nil)
	tcpDev := s.dial(t, "tcp", protocol.Auth{Mid: 42, Key: "dev-tcp", Accepts: []int32{1000, 1001}})
	wsDev := s.dial(t, "ws", protocol.Auth{Mid: 42, Key: "dev-ws", Accepts: []int32{1000, 1001}})
	other := s.dial(t, "tcp", protocol.Auth{Mid: 43, Accepts: []int32{1000, 1001}})

	if n := s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "42"), "hello-mid"); n != 2 {
		t.Errorf("sessions targeted %d, want 2", n)
	}
	expect(t, tcpDev, 1000, "hello-mid")
	// WebSocket: one op-9 message whose body is the inner frame (goim's shape).
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	msg, err := wsDev.NextMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) != 1 || msg[0].Op != protocol.OpRaw || msg[0].Ver != 1 || msg[0].Seq != 0 {
		t.Fatalf("ws push: got %v, want one op-9 frame", msg)
	}
	want := protocol.EncodePush(1000, []byte("hello-mid"))
	if string(msg[0].Body) != string(want) {
		t.Errorf("ws op-9 body %x, want %x", msg[0].Body, want)
	}
	// An offline user is a success with 0 sessions; the other user got nothing.
	if n := s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "999999"), "nobody"); n != 0 {
		t.Errorf("offline push targeted %d sessions", n)
	}
	s.push(t, "/goim/push/mids", qv("operation", "1001", "mids", "43"), "marker")
	expect(t, other, 1001, "marker")
}

func TestAcceptsFiltering(t *testing.T) {
	s := startAll(t, nil)
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			key := "filter-" + network
			c := s.dial(t, network, protocol.Auth{Mid: 7, Key: key, RoomID: "live://f-" + network, Accepts: []int32{1000}})
			s.push(t, "/goim/push/keys", qv("operation", "2000", "keys", key), "filtered-key")
			s.push(t, "/goim/push/all", qv("operation", "2000"), "filtered-all")
			// Room pushes are not filtered.
			s.push(t, "/goim/push/room", qv("operation", "2000", "type", "live", "room", "f-"+network), "room-2000")
			s.push(t, "/goim/push/keys", qv("operation", "1000", "keys", key), "accepted")
			// A room push waits out the job's batching window, so the key
			// push may overtake it: order holds per room and per node, not
			// between the two.
			expectPushes(t, c, "2000:room-2000", "1000:accepted")
		})
	}
}

func TestPushByKey(t *testing.T) {
	s := startAll(t, nil)
	a := s.dial(t, "tcp", protocol.Auth{Mid: 1, Key: "tcp-key-1", Accepts: []int32{1001}})
	b := s.dial(t, "ws", protocol.Auth{Mid: 2, Key: "ws-key-2", Accepts: []int32{1001}})
	if n := s.push(t, "/goim/push/keys", qv("operation", "1001", "keys", "tcp-key-1", "keys", "ws-key-2"), "hello-key"); n != 2 {
		t.Errorf("sessions %d, want 2", n)
	}
	expect(t, a, 1001, "hello-key")
	expect(t, b, 1001, "hello-key")
	// Comma-separated keys on the im-cloud path.
	s.push(t, "/im/push/keys", qv("keys", "tcp-key-1,ws-key-2", "operation", "1001"), "im-path")
	expect(t, a, 1001, "im-path")
	expect(t, b, 1001, "im-path")
	// An empty message: the op alone.
	s.push(t, "/goim/push/keys", qv("operation", "1001", "keys", "tcp-key-1,ws-key-2"), "")
	expect(t, a, 1001, "")
	expect(t, b, 1001, "")
}

func TestRoomPushReachesMembersOnly(t *testing.T) {
	s := startAll(t, nil)
	in1 := s.dial(t, "tcp", protocol.Auth{Mid: 1, RoomID: "live://1000"})
	in2 := s.dial(t, "ws", protocol.Auth{Mid: 2, RoomID: "live://1000"})
	out := s.dial(t, "tcp", protocol.Auth{Mid: 3, RoomID: "live://2000"})
	if n := s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "1000"), "room-msg"); n != 2 {
		t.Errorf("room push targeted %d, want 2", n)
	}
	expect(t, in1, 1000, "room-msg")
	expect(t, in2, 1000, "room-msg")
	s.push(t, "/im/push/room", qv("type", "live", "room", "2000"), "other-room")
	expect(t, out, 1000, "other-room")
}

func TestBroadcast(t *testing.T) {
	s := startAll(t, nil)
	var cs []*client.Client
	for i, network := range []string{"tcp", "ws", "tcp"} {
		cs = append(cs, s.dial(t, network, protocol.Auth{Mid: int64(i + 1), Accepts: []int32{1000}}))
	}
	if n := s.push(t, "/goim/push/all", qv("operation", "1000"), "bcast-1"); n != 3 {
		t.Errorf("broadcast targeted %d, want 3", n)
	}
	for _, c := range cs {
		expect(t, c, 1000, "bcast-1")
	}
	// With a speed cap it still reaches everyone, and broadcasts stay in
	// order whether paced or not.
	var want []string
	for i := range 12 {
		q := qv("operation", "1000")
		if i%3 != 2 {
			q.Set("speed", strconv.Itoa(100*(1+i%4)))
		}
		body := fmt.Sprintf("bcast-%02d", i)
		want = append(want, body)
		s.push(t, "/goim/push/all", q, body)
	}
	for _, c := range cs {
		for _, body := range want {
			expect(t, c, 1000, body)
		}
	}
}

func TestChangeRoomSubUnsub(t *testing.T) {
	s := startAll(t, nil)
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			key := "mover-" + network
			c := s.dial(t, network, protocol.Auth{Mid: 9, Key: key, RoomID: "live://a-" + network, Accepts: []int32{1000}})
			if err := c.Send(1, protocol.OpChangeRoom, 13, []byte("live://b-"+network)); err != nil {
				t.Fatal(err)
			}
			if f := expect(t, c, protocol.OpChangeRoomReply, "live://b-"+network); f.Seq != 13 {
				t.Errorf("change room reply seq %d", f.Seq)
			}
			s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "a-"+network), "old-room")
			s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "b-"+network), "new-room")
			expect(t, c, 1000, "new-room")

			if err := c.Send(1, protocol.OpSub, 14, []byte("2000,2001")); err != nil {
				t.Fatal(err)
			}
			expect(t, c, protocol.OpSubReply, "2000,2001")
			s.push(t, "/goim/push/keys", qv("operation", "2000", "keys", key), "subscribed")
			expect(t, c, 2000, "subscribed")
			if err := c.Send(1, protocol.OpUnsub, 15, []byte("2000")); err != nil {
				t.Fatal(err)
			}
			expect(t, c, protocol.OpUnsubReply, "2000")
			s.push(t, "/goim/push/keys", qv("operation", "2000", "keys", key), "unsubscribed")
			s.push(t, "/goim/push/keys", qv("operation", "2001", "keys", key), "still-sub")
			expect(t, c, 2001, "still-sub")

			// Leaving every room: an empty ChangeRoom body.
			if err := c.Send(1, protocol.OpChangeRoom, 16, nil); err != nil {
				t.Fatal(err)
			}
			expect(t, c, protocol.OpChangeRoomReply, "")
			if err := c.Heartbeat(17); err != nil {
				t.Fatal(err)
			}
			if n := heartbeatCount(t, next(t, c)); n != 0 {
				t.Errorf("count after leaving the room: %d", n)
			}
		})
	}
}

func TestRoomBurstInOrderAndBatched(t *testing.T) {
	// A wide window makes batching certain rather than timing-dependent.
	s := startAll(t, func(c *roles.Config) { c.Job.RoomBatchWindow = 200 * time.Millisecond })
	tcpC := s.dial(t, "tcp", protocol.Auth{Mid: 1, RoomID: "live://burst"})
	wsC := s.dial(t, "ws", protocol.Auth{Mid: 2, RoomID: "live://burst"})
	const n = 50
	for i := range n {
		s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "burst"), fmt.Sprintf("m-%02d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	// TCP: plain inner frames, never op 9.
	for i := range n {
		msg, err := tcpC.NextMessage(ctx)
		if err != nil {
			t.Fatalf("tcp: after %d messages: %v", i, err)
		}
		if len(msg) != 1 || msg[0].Op != 1000 || string(msg[0].Body) != fmt.Sprintf("m-%02d", i) {
			t.Fatalf("tcp message %d: %v", i, msg)
		}
	}
	// WebSocket: op-9 messages; at least one carries several frames.
	got, batched := 0, false
	for got < n {
		msg, err := wsC.NextMessage(ctx)
		if err != nil {
			t.Fatalf("ws: after %d frames: %v", got, err)
		}
		if len(msg) != 1 || msg[0].Op != protocol.OpRaw {
			t.Fatalf("ws: got %v, want one op-9 frame per message", msg)
		}
		inner := 0
		if err := protocol.Split(msg[0].Body, func(f protocol.Frame) error {
			if want := fmt.Sprintf("m-%02d", got); f.Op != 1000 || string(f.Body) != want {
				return fmt.Errorf("frame %d: %v, want %s", got, f, want)
			}
			got++
			inner++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		batched = batched || inner > 1
	}
	if !batched {
		t.Error("no WebSocket message carried more than one frame: room pushes were not batched")
	}
}

func TestSameKeyReplacesOldConnection(t *testing.T) {
	s := startAll(t, nil)
	old := s.dial(t, "tcp", protocol.Auth{Mid: 5, Key: "dup", Accepts: []int32{1000}})
	fresh := s.dial(t, "ws", protocol.Auth{Mid: 5, Key: "dup", Accepts: []int32{1000}})
	expectClosed(t, old)
	if n := s.push(t, "/goim/push/keys", qv("operation", "1000", "keys", "dup"), "to-new"); n != 1 {
		t.Errorf("sessions %d, want 1", n)
	}
	expect(t, fresh, 1000, "to-new")
}

// TestKeyTakenByAnotherUser: a key reused by another user's connection
// leaves the previous user, whose pushes then reach nobody; anonymous
// connections (mid 0) are not a user.
func TestKeyTakenByAnotherUser(t *testing.T) {
	s := startAll(t, nil)
	prev := s.dial(t, "tcp", protocol.Auth{Mid: 111, Key: "shared", Accepts: []int32{1000}})
	next := s.dial(t, "ws", protocol.Auth{Mid: 222, Key: "shared", Accepts: []int32{1000}})
	anon := s.dial(t, "tcp", protocol.Auth{Key: "anon", Accepts: []int32{1000}})
	expectClosed(t, prev)
	if n := s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "111"), "for-111"); n != 0 {
		t.Errorf("push to the previous user targeted %d sessions, want 0", n)
	}
	if n := s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "222"), "for-222"); n != 1 {
		t.Errorf("push to the new user targeted %d sessions, want 1", n)
	}
	expect(t, next, 1000, "for-222") // not "for-111" first
	// As in goim, mid 0 is nobody: 200, no sessions, not the anonymous.
	if n := s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "0"), "for-0"); n != 0 {
		t.Errorf("push to mid 0 targeted %d sessions, want 0", n)
	}
	s.push(t, "/goim/push/keys", qv("operation", "1000", "keys", "anon"), "by-key")
	expect(t, anon, 1000, "by-key") // not "for-0" first
}

func TestRESTErrors(t *testing.T) {
	s := startAll(t, func(c *roles.Config) { c.Logic.MaxMessage = 1024 })
	cases := []struct {
		name, method, path string
		q                  url.Values
		body               string
		status             int
		mention            string
	}{
		{"missing operation", "POST", "/goim/push/mids", qv("mids", "1"), "x", 400, "operation"},
		{"non-numeric operation", "POST", "/goim/push/mids", qv("operation", "abc", "mids", "1"), "x", 400, "operation"},
		{"operation below 1000", "POST", "/goim/push/mids", qv("operation", "999", "mids", "1"), "x", 400, "operation"},
		{"missing mids", "POST", "/goim/push/mids", qv("operation", "1000"), "x", 400, "mids"},
		{"non-numeric mid", "POST", "/goim/push/mids", qv("operation", "1000", "mids", "1,abc"), "x", 400, "mids"},
		{"missing keys", "POST", "/goim/push/keys", qv("operation", "1000"), "x", 400, "keys"},
		{"missing type", "POST", "/goim/push/room", qv("operation", "1000", "room", "1000"), "x", 400, "type"},
		{"missing room", "POST", "/goim/push/room", qv("operation", "1000", "type", "live"), "x", 400, "room"},
		{"bad speed", "POST", "/goim/push/all", qv("operation", "1000", "speed", "fast"), "x", 400, "speed"},
		{"missing limit", "GET", "/goim/online/top", qv("type", "live"), "", 400, "limit"},
		{"missing rooms", "GET", "/goim/online/room", qv("type", "live"), "", 400, "rooms"},
		{"wrong method", "GET", "/goim/push/mids", qv("operation", "1000", "mids", "1"), "", 405, ""},
		{"wrong method on online", "POST", "/goim/online/total", nil, "", 405, ""},
		{"oversized body", "POST", "/goim/push/mids", qv("operation", "1000", "mids", "1"), strings.Repeat("x", 2048), 413, ""},
		{"unknown path", "GET", "/goim/nothing", nil, "", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, env := s.do(t, tc.method, tc.path, tc.q, tc.body)
			if code != tc.status || env.Code != -tc.status {
				t.Fatalf("status %d code %d (%q), want %d", code, env.Code, env.Message, tc.status)
			}
			if !strings.Contains(env.Message, tc.mention) || env.Message == "" {
				t.Errorf("message %q should say what was wrong (%q)", env.Message, tc.mention)
			}
		})
	}
}

// TestNotHTTPAnsweredInTheEnvelope: requests that are not HTTP get the
// same JSON envelope as every other answer.
func TestNotHTTPAnsweredInTheEnvelope(t *testing.T) {
	s := startAll(t, nil)
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"garbage", "HELLO\r\n\r\n", 400},
		{"no Host", "GET /goim/online/total HTTP/1.1\r\n\r\n", 400},
		{"HTTP/2.0 line", "GET /goim/online/total HTTP/2.0\r\nHost: h\r\n\r\n", 505},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", s.addrs.HTTP, wait)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(wait))
			if _, err := c.Write([]byte(tc.req)); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var env envelope
			if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || resp.StatusCode != tc.status || env.Code != -tc.status || env.Message == "" {
				t.Errorf("%d %s %+v (%v), want %d in the envelope", resp.StatusCode, resp.Header.Get("Content-Type"), env, err, tc.status)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestOnlineAndNodes(t *testing.T) {
	s := startAll(t, nil)
	for i := range 3 {
		s.dial(t, "tcp", protocol.Auth{Mid: int64(i), RoomID: "live://1"})
	}
	s.dial(t, "ws", protocol.Auth{Mid: 9, RoomID: "live://2"})
	_, env := s.do(t, "GET", "/goim/online/room", qv("type", "live", "rooms", "1", "rooms", "2", "rooms", "3"), "")
	var rooms map[string]int
	if err := json.Unmarshal(env.Data, &rooms); err != nil || rooms["1"] != 3 || rooms["2"] != 1 || rooms["3"] != 0 {
		t.Errorf("online/room: %s (%v)", env.Data, err)
	}
	_, env = s.do(t, "GET", "/goim/online/top", qv("type", "live", "limit", "1"), "")
	if string(env.Data) != `[{"room_id":"1","count":3}]` {
		t.Errorf("online/top: %s", env.Data)
	}
	_, env = s.do(t, "GET", "/goim/online/total", nil, "")
	var total struct {
		Conns int `json:"conn_count"`
		IPs   int `json:"ip_count"`
	}
	if err := json.Unmarshal(env.Data, &total); err != nil || total.Conns != 4 || total.IPs != 1 {
		t.Errorf("online/total: %s", env.Data)
	}
	code, env := s.do(t, "GET", "/goim/nodes/instances", nil, "")
	if code != 200 || !strings.Contains(string(env.Data), "e2e-node") {
		t.Errorf("nodes/instances: %d %s", code, env.Data)
	}
	code, env = s.do(t, "GET", "/im/nodes/weighted", qv("platform", "web"), "")
	if code != 200 || !strings.Contains(string(env.Data), s.addrs.TCP) {
		t.Errorf("nodes/weighted: %d %s", code, env.Data)
	}
}

// TestWeightedHeartbeatFollowsTimeout: the heartbeat nodes/weighted tells
// clients to keep is half of cloud.heartbeat_timeout (goim's 240 s for
// its 480 s), so a client following it is never timed out.
func TestWeightedHeartbeatFollowsTimeout(t *testing.T) {
	s := startAll(t, func(c *roles.Config) { c.Cloud.HeartbeatTimeout = 90 * time.Second })
	code, env := s.do(t, "GET", "/goim/nodes/weighted", nil, "")
	var got struct {
		Heartbeat    int `json:"heartbeat"`
		HeartbeatMax int `json:"heartbeat_max"`
	}
	if err := json.Unmarshal(env.Data, &got); code != 200 || err != nil {
		t.Fatalf("nodes/weighted: %d %s %v", code, env.Data, err)
	}
	if got.Heartbeat != 45 || got.HeartbeatMax != 2 {
		t.Errorf("heartbeat %d, heartbeat_max %d; want 45 and 2", got.Heartbeat, got.HeartbeatMax)
	}
}

func TestBadFramesCloseOnlyThatConnection(t *testing.T) {
	s := startAll(t, nil)
	tcpWatch := s.dial(t, "tcp", protocol.Auth{Mid: 100, RoomID: "live://watch"})
	wsWatch := s.dial(t, "ws", protocol.Auth{Mid: 101, RoomID: "live://watch"})
	raw := func(packLen uint32, headerLen uint16, op int32, body string) []byte {
		b := make([]byte, 16, 16+len(body))
		binary.BigEndian.PutUint32(b[0:], packLen)
		binary.BigEndian.PutUint16(b[4:], headerLen)
		binary.BigEndian.PutUint16(b[6:], 1)
		binary.BigEndian.PutUint32(b[8:], uint32(op))
		binary.BigEndian.PutUint32(b[12:], 1)
		return append(b, body...)
	}
	auth := `{"mid":1,"room_id":"live://watch"}`
	good := raw(uint32(16+len(auth)), 16, protocol.OpAuth, auth)
	cases := []struct {
		name      string
		networks  []string
		afterAuth bool
		frame     []byte
	}{
		{"headerLen not 16", networks, false, raw(20, 18, protocol.OpAuth, "abcd")},
		{"headerLen not 16 after auth", networks, true, raw(16, 12, protocol.OpHeartbeat, "")},
		{"packLen below header", networks, false, raw(8, 16, protocol.OpAuth, "")},
		{"packLen below header after auth", networks, true, raw(15, 16, protocol.OpHeartbeat, "")},
		{"packLen over limit", networks, false, raw(5000, 16, protocol.OpAuth, "")},
		{"packLen over limit after auth", []string{"tcp"}, true, raw(1<<30, 16, protocol.OpSendMsg, "")},
		{"ws packLen longer than message", []string{"ws"}, false, raw(100, 16, protocol.OpAuth, auth)},
		{"ws packLen shorter than message", []string{"ws"}, true, raw(16, 16, protocol.OpHeartbeat, "trailing")},
		{"auth not JSON", networks, false, raw(16+8, 16, protocol.OpAuth, "not-json")},
		{"data before auth", networks, false, raw(16, 16, protocol.OpHeartbeat, "")},
		{"unknown op", networks, true, raw(16, 16, 99, "")},
	}
	for _, tc := range cases {
		for _, network := range tc.networks {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				c := s.dialRaw(t, network)
				if tc.afterAuth {
					if err := c.SendRaw(good); err != nil {
						t.Fatal(err)
					}
					expect(t, c, protocol.OpAuthReply, "")
				}
				if err := c.SendRaw(tc.frame); err != nil {
					t.Fatal(err)
				}
				expectClosed(t, c)
			})
		}
	}
	// Everyone else still receives.
	s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "watch"), "still-here")
	expect(t, tcpWatch, 1000, "still-here")
	expect(t, wsWatch, 1000, "still-here")
}

// runAll runs `imcloud all` on cfg, moved to random loopback ports, until
// the returned cancel; done yields Run's result. It returns once ready.
func runAll(t *testing.T, cfg roles.Config) (s *server, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cfg.Cloud.TCPAddr, cfg.Cloud.WSAddr, cfg.Cloud.GRPCAddr, cfg.Logic.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	app, err := roles.New(cfg, roles.RoleAll, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ran := make(chan error, 1)
	go func() { ran <- app.Run(ctx) }()
	for deadline := time.Now().Add(wait); !app.Ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
	}
	return &server{app: app, addrs: app.Addrs(), base: "http://" + app.Addrs().HTTP}, cancel, ran
}

func TestShutdownIsPrompt(t *testing.T) {
	cfg := roles.Default()
	cfg.Node.ID = "stop-node"
	s, cancel, done := runAll(t, cfg)
	c := s.dial(t, "tcp", protocol.Auth{Mid: 1, RoomID: "live://1", Accepts: []int32{1000}})
	s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "1"), "before-stop")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(4 * roles.StopTimeout):
		t.Fatal("shutdown did not finish")
	}
	// The push made before the stop was delivered; then a goodbye and the close.
	expect(t, c, 1000, "before-stop")
	expectClosed(t, c)
	if _, err := net.DialTimeout("tcp", s.addrs.TCP, time.Second); err == nil {
		t.Error("TCP listener still accepting after shutdown")
	}
}

// TestLameDuck: with node.lame_duck, a stopping process answers /readyz
// 503 while it still serves pushes and clients, then stops.
func TestLameDuck(t *testing.T) {
	cfg := roles.Default()
	cfg.Node.ID = "lame-node"
	cfg.Node.LameDuck = 2 * time.Second
	s, cancel, done := runAll(t, cfg)
	c := s.dial(t, "tcp", protocol.Auth{Mid: 1, RoomID: "live://1", Accepts: []int32{1000}})
	cancel()
	// Ready until the signal is seen, then 503 on a listener still open.
	for code := http.StatusOK; code != http.StatusServiceUnavailable; {
		if code != http.StatusOK {
			t.Fatalf("/readyz in the lame duck: %d, want 503", code)
		}
		code, _ = s.do(t, http.MethodGet, "/readyz", nil, "")
	}
	s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "1"), "in-lame-duck")
	expect(t, c, 1000, "in-lame-duck")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(cfg.Node.LameDuck + 4*roles.StopTimeout):
		t.Fatal("shutdown did not finish")
	}
	expectClosed(t, c)
}

// TestShutdownCutsStalledPeers: a client that stops reading, or an HTTP
// request that never arrives whole, holds the drain until the stop
// deadline; then it is cut and the stop is still a clean one (no error:
// exit 0).
func TestShutdownCutsStalledPeers(t *testing.T) {
	tests := []struct {
		name  string
		stall func(t *testing.T, s *server) net.Conn
	}{
		{"client not reading", func(t *testing.T, s *server) net.Conn {
			c, err := net.Dial("tcp", s.addrs.TCP)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
			if _, err := c.Write(protocol.Encode(1, protocol.OpAuth, 1, []byte(`{"mid":9,"room_id":"live://full"}`))); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, protocol.HeaderLen)); err != nil { // the auth reply
				t.Fatal(err)
			}
			big := strings.Repeat("x", 60_000)
			for range 300 { // far more than the socket buffers hold
				s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "full"), big)
			}
			return c
		}},
		{"request never whole", func(t *testing.T, s *server) net.Conn {
			c, err := net.Dial("tcp", s.addrs.HTTP)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("POST /goim/push/keys?operation=1000&keys=x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // the request head is read
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app, stop := rolestest.StartAll(t, func(c *roles.Config) { c.Node.ID = "stall-node" })
			s := &server{app: app, addrs: app.Addrs(), base: "http://" + app.Addrs().HTTP}
			c := tt.stall(t, s)
			defer c.Close()
			start := time.Now()
			stop() // fails the test if the app stops with an error
			if d := time.Since(start); d > 4*roles.StopTimeout {
				t.Errorf("stop took %v", d)
			} else {
				t.Logf("stopped in %v", d)
			}
		})
	}
}

// TestAdminOnTheRESTPort: without node.admin_addr the REST listener also
// serves /healthz, /readyz and /metrics, and the metrics count the pushes.
func TestAdminOnTheRESTPort(t *testing.T) {
	s := startAll(t, nil)
	s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "m"), "counted")
	if code, _ := s.do(t, http.MethodPost, "/goim/push/room", qv("type", "live", "room", "m"), "no-op"); code != http.StatusBadRequest {
		t.Fatalf("push without operation: %d, want 400", code)
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct{ path, want string }{
		{"/healthz", `{"status":"ok"}`},
		{"/readyz", `{"status":"ready"}`},
		{"/metrics", `imcloud_logic_requests_total{code="200",route="/goim/push/room"} 1`},
		{"/metrics", `imcloud_logic_requests_total{code="400",route="/goim/push/room"} 1`},
		{"/metrics", `imcloud_logic_pushes_total{type="room"} 1`},
		{"/metrics", `imcloud_logic_push_duration_seconds_count{type="room"} 1`},
		{"/debug/pprof/cmdline", "test"},
	} {
		code, body := get(tc.path)
		if code != http.StatusOK || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d, want 200 with %q; got %.300q", tc.path, code, tc.want, body)
		}
	}
	// Anything else is the REST API's.
	if code, env := s.do(t, http.MethodGet, "/metricsx", nil, ""); code != http.StatusNotFound || env.Code != -404 {
		t.Errorf("GET /metricsx: %d %+v, want the API's 404", code, env)
	}
}
