package cloud

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/store"
	"github.com/imcloud/imcloud/store/memory"
	"github.com/imcloud/imcloud/transport"
	"github.com/imcloud/imcloud/transport/client"
)

// Generous bounds: the machine is shared and noisy. Nothing asserts that
// something happened quickly, only that it happened eventually.
const (
	waitFor    = 15 * time.Second
	pollEvery  = 2 * time.Millisecond
	testNodeID = "node-test"
)

// eventually polls cond until it holds or waitFor passes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pollEvery)
	}
}

// metricValue reads a counter or gauge without prometheus/testutil (whose
// dependencies are not in go.sum).
func metricValue(tb testing.TB, m prometheus.Metric) float64 {
	tb.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		tb.Fatalf("read metric: %v", err)
	}
	switch {
	case d.Counter != nil:
		return d.GetCounter().GetValue()
	case d.Gauge != nil:
		return d.GetGauge().GetValue()
	}
	tb.Fatalf("metric is neither a counter nor a gauge: %v", &d)
	return 0
}

// ---------------------------------------------------------------------------
// fakeConn: an in-memory transport.Conn, the test double for a socket.

type fakeConn struct {
	remote  string
	discard atomic.Bool // Write drops items (benchmarks); only calls are counted

	in   chan protocol.Frame // frames the "client" sends
	done chan struct{}
	once sync.Once

	calls atomic.Int64 // Write calls entered

	mu      sync.Mutex
	gate    chan struct{}     // non-nil: Write waits for it to be closed
	blocked int               // Writes waiting on a gate now
	writes  [][]transport.Out // one entry per completed Write call
}

var _ transport.Conn = (*fakeConn)(nil)

var fakePort atomic.Int64

func newFakeConn(ip string) *fakeConn {
	if ip == "" {
		ip = "192.0.2.1"
	}
	return &fakeConn{
		remote: net.JoinHostPort(ip, strconv.FormatInt(10000+fakePort.Add(1), 10)),
		in:     make(chan protocol.Frame, 16),
		done:   make(chan struct{}),
	}
}

func (c *fakeConn) ReadFrame(deadline time.Time) (protocol.Frame, error) {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case f := <-c.in:
		return f, nil
	case <-c.done:
		return protocol.Frame{}, net.ErrClosed
	case <-timeout:
		return protocol.Frame{}, os.ErrDeadlineExceeded
	}
}

// Write records items; while the connection is held it waits for the
// release, the close or the deadline, as a socket the client does not read
// would.
func (c *fakeConn) Write(items []transport.Out, deadline time.Time) error {
	select {
	case <-c.done:
		return net.ErrClosed
	default:
	}
	c.calls.Add(1)
	c.mu.Lock()
	gate := c.gate
	if gate != nil {
		c.blocked++
	}
	c.mu.Unlock()
	if gate != nil {
		var expired <-chan time.Time // none without a deadline
		if !deadline.IsZero() {
			timeout := time.NewTimer(time.Until(deadline))
			defer timeout.Stop()
			expired = timeout.C
		}
		var err error
		select {
		case <-gate:
		case <-c.done:
			err = net.ErrClosed
		case <-expired:
			err = os.ErrDeadlineExceeded
		}
		c.mu.Lock()
		c.blocked--
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if c.discard.Load() {
		return nil
	}
	// items is the session's queue, reused after Write returns: keep a copy
	// of the slice (Data itself is shared and immutable).
	cp := append([]transport.Out(nil), items...)
	c.mu.Lock()
	c.writes = append(c.writes, cp)
	c.mu.Unlock()
	return nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *fakeConn) RemoteAddr() string { return c.remote }
func (c *fakeConn) Network() string    { return "fake" }

func (c *fakeConn) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// hold makes later Writes block until release.
func (c *fakeConn) hold() {
	c.mu.Lock()
	if c.gate == nil {
		c.gate = make(chan struct{})
	}
	c.mu.Unlock()
}

func (c *fakeConn) release() {
	c.mu.Lock()
	if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
	c.mu.Unlock()
}

func (c *fakeConn) blockedWriters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blocked
}

// writeCalls returns a copy of every completed Write call's items.
func (c *fakeConn) writeCalls() [][]transport.Out {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]transport.Out(nil), c.writes...)
}

// frames returns every frame written so far, in order, batches split.
func (c *fakeConn) frames(tb testing.TB) []protocol.Frame {
	tb.Helper()
	var out []protocol.Frame
	for _, call := range c.writeCalls() {
		for _, it := range call {
			if err := protocol.Split(it.Data, func(f protocol.Frame) error {
				out = append(out, f)
				return nil
			}); err != nil {
				tb.Fatalf("%s: hub wrote a malformed item: %v", c.remote, err)
			}
		}
	}
	return out
}

// waitFrames waits until at least n frames have been written and returns all.
func (c *fakeConn) waitFrames(tb testing.TB, n int) []protocol.Frame {
	tb.Helper()
	var fs []protocol.Frame
	eventually(tb, strconv.Itoa(n)+" frames on "+c.remote, func() bool {
		fs = c.frames(tb)
		return len(fs) >= n
	})
	return fs
}

// waitOp waits for a written frame with op (and seq, unless seq < 0).
func (c *fakeConn) waitOp(tb testing.TB, op, seq int32) protocol.Frame {
	tb.Helper()
	var got protocol.Frame
	eventually(tb, "op "+strconv.Itoa(int(op))+" on "+c.remote, func() bool {
		for _, f := range c.frames(tb) {
			if f.Op == op && (seq < 0 || f.Seq == seq) {
				got = f
				return true
			}
		}
		return false
	})
	return got
}

// send delivers a client frame to the hub's reader.
func (c *fakeConn) send(tb testing.TB, op, seq int32, body string) {
	tb.Helper()
	f := protocol.Frame{Ver: 1, Op: op, Seq: seq}
	if body != "" {
		f.Body = []byte(body)
	}
	select {
	case c.in <- f:
	case <-c.done:
		tb.Fatalf("%s: send op %d on a closed connection", c.remote, op)
	case <-time.After(waitFor):
		tb.Fatalf("%s: hub is not reading", c.remote)
	}
}

// ---------------------------------------------------------------------------
// testHub: a hub over the real in-memory session store.

type testHub struct {
	*Hub
	tb    testing.TB
	store *hookStore
	logs  *observer.ObservedLogs

	mu    sync.Mutex
	fakes []*fakeConn
}

// broadcast is Broadcast with the test's context, failing the test on a
// refusal.
func (th *testHub) broadcast(op int32, frame []byte, speed int) int {
	th.tb.Helper()
	n, err := th.Broadcast(th.tb.Context(), op, frame, speed)
	if err != nil {
		th.tb.Fatalf("Broadcast: %v", err)
	}
	return n
}

func defaultTestConfig() Config {
	return Config{
		NodeID:           testNodeID,
		HandshakeTimeout: 10 * time.Second,
		HeartbeatTimeout: time.Minute,
		WriteTimeout:     10 * time.Second,
		StoreTimeout:     10 * time.Second,
		MaxBody:          protocol.DefaultMaxBody,
		SendQueue:        64,
		Buckets:          8,
	}
}

// newTestHub starts a hub; Cleanup releases blocked fake writes and shuts it
// down, failing the test if Shutdown does not finish cleanly.
func newTestHub(tb testing.TB, mut func(*Config)) *testHub {
	tb.Helper()
	cfg := defaultTestConfig()
	if mut != nil {
		mut(&cfg)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	st := &hookStore{Store: memory.New(time.Hour)}
	h, err := New(cfg, st, zap.New(core), nil)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	th := &testHub{Hub: h, tb: tb, store: st, logs: logs}
	tb.Cleanup(func() {
		st.setBindHook(nil)
		th.mu.Lock()
		fakes := th.fakes
		th.mu.Unlock()
		for _, c := range fakes {
			c.release()
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			tb.Errorf("cleanup: Shutdown: %v", err)
		}
		for _, c := range fakes {
			_ = c.Close()
		}
	})
	return th
}

// serve runs serveConn for c the way ServeTCP does (tracked by the hub's
// WaitGroup, so Shutdown waits for it).
func (th *testHub) serve(c *fakeConn) { th.serveAs(c, c) }

// serveAs serves conn, a wrapper of c (another transport.Conn around it).
func (th *testHub) serveAs(c *fakeConn, conn transport.Conn) {
	th.mu.Lock()
	th.fakes = append(th.fakes, c)
	th.mu.Unlock()
	th.wg.Add(1)
	go func() {
		defer th.wg.Done()
		th.serveConn(conn, time.Now().Add(th.cfg.HandshakeTimeout))
	}()
}

func authFrame(tb testing.TB, a protocol.Auth) protocol.Frame {
	tb.Helper()
	body, err := json.Marshal(a)
	if err != nil {
		tb.Fatal(err)
	}
	return protocol.Frame{Ver: 1, Op: protocol.OpAuth, Seq: 1, Body: body}
}

// connectFake authenticates a fake connection (from ip) and waits for the
// auth reply, which must be the first frame written.
func (th *testHub) connectFake(tb testing.TB, ip string, a protocol.Auth) *fakeConn {
	tb.Helper()
	c := newFakeConn(ip)
	th.serve(c)
	c.in <- authFrame(tb, a)
	fs := c.waitFrames(tb, 1)
	if fs[0].Op != protocol.OpAuthReply || fs[0].Seq != 1 {
		tb.Fatalf("first frame = %v, want the auth reply (op 8, seq 1)", fs[0])
	}
	return c
}

// sessionsClosed counts "session closed" log entries for key.
func (th *testHub) sessionsClosed(key string) int {
	return th.logs.FilterMessage("session closed").FilterField(zap.String("key", key)).Len()
}

func (th *testHub) boundNode(tb testing.TB, key string) (string, bool) {
	tb.Helper()
	m, err := th.store.NodesByKeys(context.Background(), []string{key})
	if err != nil {
		tb.Fatal(err)
	}
	n, ok := m[key]
	return n, ok
}

func (th *testHub) keysOf(tb testing.TB, mid int64) map[string]string {
	tb.Helper()
	m, err := th.store.KeysByMids(context.Background(), []int64{mid})
	if err != nil {
		tb.Fatal(err)
	}
	return m[mid]
}

// startTCP serves the hub on a loopback listener until the test ends.
func (th *testHub) startTCP(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- th.ServeTCP(ln) }()
	tb.Cleanup(func() {
		_ = ln.Close()
		if err := <-done; err != nil {
			tb.Errorf("ServeTCP: %v", err)
		}
	})
	return ln.Addr().String()
}

// hookStore is the real memory store with an optional hook after Bind, used
// to pause a handshake at a chosen point, a count of Refresh calls and a
// count of Bind and Refresh calls made on a session's reader goroutine.
type hookStore struct {
	*memory.Store
	hook        atomic.Pointer[func(store.Session) error]
	refreshes   atomic.Int64
	lastRefresh atomic.Pointer[store.Session]
	onReader    atomic.Int64
	manyCalls   atomic.Int64 // UnbindMany calls
	manyUnbound atomic.Int64 // sessions in them
}

func (s *hookStore) UnbindMany(ctx context.Context, ss []store.Session) error {
	s.manyCalls.Add(1)
	s.manyUnbound.Add(int64(len(ss)))
	return s.Store.UnbindMany(ctx, ss)
}

// countOnReader counts the call if it runs on a session's reader.
func (s *hookStore) countOnReader() {
	buf := make([]byte, 64<<10)
	if bytes.Contains(buf[:runtime.Stack(buf, false)], []byte("cloud.(*Hub).runSession")) {
		s.onReader.Add(1)
	}
}

func (s *hookStore) Refresh(ctx context.Context, sess store.Session) error {
	s.refreshes.Add(1)
	s.lastRefresh.Store(&sess)
	s.countOnReader()
	return s.Store.Refresh(ctx, sess)
}

// setBindHook has fn called after every successful Bind; an error from fn
// is then what Bind returns (a store that failed after writing).
func (s *hookStore) setBindHook(fn func(store.Session) error) {
	if fn == nil {
		s.hook.Store(nil)
		return
	}
	s.hook.Store(&fn)
}

func (s *hookStore) Bind(ctx context.Context, sess store.Session) error {
	s.countOnReader()
	err := s.Store.Bind(ctx, sess)
	if fn := s.hook.Load(); fn != nil && err == nil {
		err = (*fn)(sess)
	}
	return err
}

// ---------------------------------------------------------------------------
// real TCP clients

func dialClient(tb testing.TB, addr string, a protocol.Auth) *client.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Addr: addr, Auth: a, Timeout: waitFor})
	if err != nil {
		tb.Fatalf("Dial: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func dialRaw(tb testing.TB, addr string) *client.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := client.DialRaw(ctx, client.Options{Addr: addr, Timeout: waitFor})
	if err != nil {
		tb.Fatalf("DialRaw: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func nextFrame(tb testing.TB, c *client.Client) protocol.Frame {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	f, err := c.Next(ctx)
	if err != nil {
		tb.Fatalf("Next: %v", err)
	}
	return f
}

// readToClose reads frames until the server closes the connection; a read
// deadline instead of a close fails the test.
func readToClose(tb testing.TB, c *client.Client) []protocol.Frame {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var fs []protocol.Frame
	for {
		f, err := c.Next(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				tb.Fatalf("connection still open after %v (got %v)", waitFor, fs)
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) && websocket.CloseStatus(err) == -1 {
				tb.Fatalf("read ended with %v, want a close", err)
			}
			return fs
		}
		fs = append(fs, f)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

func heartbeatCountOf(tb testing.TB, f protocol.Frame) int32 {
	tb.Helper()
	if f.Op != protocol.OpHeartbeatReply || len(f.Body) != 4 {
		tb.Fatalf("got %v, want a heartbeat reply with a 4-byte body", f)
	}
	return int32(binary.BigEndian.Uint32(f.Body))
}
