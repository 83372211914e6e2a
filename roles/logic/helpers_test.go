package logic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcloud/imcloud/protocol/pb"
	qmem "github.com/imcloud/imcloud/queue/memory"
	"github.com/imcloud/imcloud/registry"
	regmem "github.com/imcloud/imcloud/registry/memory"
	"github.com/imcloud/imcloud/store"
	stmem "github.com/imcloud/imcloud/store/memory"
)

// fixedNow is the clock of every test Logic, so messages are exact.
var fixedNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fakeOnline is a plain OnlineSource.
type fakeOnline struct {
	mu   sync.Mutex
	snap Snapshot
	err  error
}

func (f *fakeOnline) Snapshot(context.Context) (Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap, f.err
}

// failingSessions is a session store that is down.
type failingSessions struct{}

func (failingSessions) KeysByMids(context.Context, []int64) (map[int64]map[string]string, error) {
	return nil, errors.Join(errors.New("redis: connection refused"), store.ErrUnavailable)
}

func (failingSessions) NodesByKeys(context.Context, []string) (map[string]string, error) {
	return nil, errors.Join(errors.New("redis: connection refused"), store.ErrUnavailable)
}

// failingNodes is a registry that is down; watch, if set, is what Watch
// returns.
type failingNodes struct{ watch chan []registry.Node }

func (f failingNodes) Watch(context.Context, string) (<-chan []registry.Node, error) {
	if f.watch != nil {
		return f.watch, nil
	}
	return nil, errors.New("etcd: no leader")
}

func (failingNodes) Nodes(context.Context, string) ([]registry.Node, error) {
	return nil, errors.New("etcd: no leader")
}

// env is a Logic over real memory backends.
type env struct {
	t      testing.TB
	q      *qmem.Queue
	reg    *regmem.Registry
	st     *stmem.Store
	online *fakeOnline
	l      *Logic
	h      http.Handler
}

// envOpts adjust an env before New.
type envOpts struct {
	cfg      Config
	queue    int // size; default 1024
	sessions Sessions
	nodes    Nodes
}

// liveNodes are the cloud nodes every env registers.
var liveNodes = []registry.Node{
	{ID: "n1", Role: registry.RoleCloud, GRPCAddr: "10.0.0.1:3109", Addrs: []registry.Addr{{TCP: "10.0.0.1:3101", WS: "10.0.0.1:3102"}}, Weight: 10, Conns: 5},
	{ID: "n2", Role: registry.RoleCloud, GRPCAddr: "10.0.0.2:3109", Addrs: []registry.Addr{{TCP: "10.0.0.2:3101", WS: "10.0.0.2:3102"}}, Weight: 10, Conns: 3},
}

// bindings are the sessions every env binds: mid 3 is only on a dead
// node, mid 4 on a live and a dead one, "anon" is anonymous (mid 0).
var bindings = []store.Session{
	{Mid: 1, Key: "k1a", Node: "n1"},
	{Mid: 1, Key: "k1b", Node: "n2"},
	{Mid: 2, Key: "k2", Node: "n1"},
	{Mid: 3, Key: "k3", Node: "dead"},
	{Mid: 4, Key: "k4a", Node: "n2"},
	{Mid: 4, Key: "k4b", Node: "dead"},
	{Mid: 0, Key: "anon", Node: "n1"},
}

func newEnv(t testing.TB, opts envOpts) *env {
	t.Helper()
	if opts.queue == 0 {
		opts.queue = 1024
	}
	e := &env{
		t:      t,
		q:      qmem.New(opts.queue),
		reg:    regmem.New(),
		st:     stmem.New(time.Hour),
		online: &fakeOnline{snap: Snapshot{Conns: 20, IPs: 3, Rooms: map[string]int32{"live://1000": 7, "live://2": 9, "live://3": 9, "test://1": 4}}},
	}
	t.Cleanup(func() { _ = e.q.Close() })
	ctx := context.Background()
	for _, n := range liveNodes {
		if err := e.reg.Register(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range bindings {
		if err := e.st.Bind(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var sessions Sessions = e.st
	if opts.sessions != nil {
		sessions = opts.sessions
	}
	var nodes Nodes = e.reg
	if opts.nodes != nil {
		nodes = opts.nodes
	}
	l, err := New(opts.cfg, sessions, e.q, nodes, e.online, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.now = func() time.Time { return fixedNow }
	l.rand = func() float64 { return 0.5 }
	e.l, e.h = l, l.Handler()
	return e
}

// answer is a decoded response.
type answer struct {
	Status  int
	Header  http.Header
	Body    []byte
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// do sends a request and checks what every answer must have: the JSON
// Content-Type, a matching Content-Length, the envelope with code = -status
// (0 for 200), a message on errors, no body for HEAD.
func (e *env) do(method, target, ct string, body io.Reader) answer {
	e.t.Helper()
	req := httptest.NewRequest(method, target, body)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	a := answer{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	if got := a.Header.Get("Content-Type"); got != contentType {
		e.t.Errorf("%s %s: Content-Type %q, want %q", method, target, got, contentType)
	}
	if method == http.MethodHead {
		if len(a.Body) != 0 {
			e.t.Errorf("HEAD %s: body %q, want none", target, a.Body)
		}
		return a
	}
	if got, want := a.Header.Get("Content-Length"), len(a.Body); got != strconv.Itoa(want) {
		e.t.Errorf("%s %s: Content-Length %s, body %d bytes", method, target, got, want)
	}
	if err := json.Unmarshal(a.Body, &a); err != nil {
		e.t.Fatalf("%s %s: body %q is not JSON: %v", method, target, a.Body, err)
	}
	wantCode := -a.Status
	if a.Status == http.StatusOK {
		wantCode = 0
	}
	if a.Code != wantCode {
		e.t.Errorf("%s %s: code %d with status %d", method, target, a.Code, a.Status)
	}
	if a.Status != http.StatusOK && (a.Message == "" || a.Data != nil) {
		e.t.Errorf("%s %s: error answer %s has no message or has data", method, target, a.Body)
	}
	return a
}

// post is do(POST).
func (e *env) post(target, ct, body string) answer {
	e.t.Helper()
	return e.do(http.MethodPost, target, ct, strings.NewReader(body))
}

// push decodes a push answer's data.
func (a answer) push(t testing.TB) pushAnswer {
	t.Helper()
	var p pushAnswer
	if err := json.Unmarshal(a.Data, &p); err != nil {
		t.Fatalf("push data %s: %v", a.Data, err)
	}
	if len(p.ID) != 24 {
		t.Errorf("push id %q: want 24 hex digits", p.ID)
	}
	return p
}

// drain consumes every message waiting in the queue (nothing consumes it
// otherwise, so Len is exactly what the requests published) and returns
// them sorted by server, then room.
func (e *env) drain() []*pb.PushMsg {
	e.t.Helper()
	n := e.q.Len()
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu   sync.Mutex
		got  []*pb.PushMsg
		done = make(chan struct{})
	)
	consumed := make(chan error, 1)
	go func() {
		consumed <- e.q.Consume(ctx, func(_ context.Context, m *pb.PushMsg, _ func()) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, m)
			if len(got) == n {
				close(done)
			}
			return nil
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		e.t.Fatalf("drain: %d of %d messages after 5s", len(got), n)
	}
	cancel()
	if err := <-consumed; err != nil {
		e.t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b *pb.PushMsg) int {
		return strings.Compare(a.Server+"\x00"+a.Room, b.Server+"\x00"+b.Room)
	})
	return got
}

// sameMsg fails unless got marshals to exactly the bytes of want.
func sameMsg(t testing.TB, got, want *pb.PushMsg) {
	t.Helper()
	det := proto.MarshalOptions{Deterministic: true}
	gb, err := det.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := det.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gb, wb) {
		t.Errorf("published message\n got %v\nwant %v", got, want)
	}
}

// pushMsg is a PUSH message as logic builds it at fixedNow.
func pushMsg(id string, op int32, server string, msg string, keys ...string) *pb.PushMsg {
	return &pb.PushMsg{Version: 1, Id: id, CreatedAt: fixedNow.UnixMilli(), Type: pb.PushMsg_PUSH,
		Operation: op, Server: server, Keys: keys, Msg: []byte(msg)}
}

// multipartForm encodes fields (name, value pairs) as multipart/form-data
// with a fixed boundary, as PHP's curl does for an array of fields.
func multipartForm(fields ...string) (ct, body string) {
	const boundary = "------------------------a1b2c3d4e5f6"
	var b strings.Builder
	for i := 0; i+1 < len(fields); i += 2 {
		fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", boundary, fields[i], fields[i+1])
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return "multipart/form-data; boundary=" + boundary, b.String()
}
