package roles_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imcloud/imcloud/internal/freeport"
	"github.com/imcloud/imcloud/internal/lockedbuf"
	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/queue/kafka/kafkatest"
	"github.com/imcloud/imcloud/registry/etcd/etcdtest"
	"github.com/imcloud/imcloud/store/redis/redistest"
	"github.com/imcloud/imcloud/transport/client"
)

// proc is one imcloud process of the cluster test.
type proc struct {
	name, role, config string
	bin                string
	admin              string // host:port serving /readyz
	cmd                *exec.Cmd
	log                *lockedbuf.Buffer
	exited             chan struct{}
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(p.bin, p.role, "--config", p.config)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.Env = os.Environ()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", p.name, err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { _ = cmd.Wait(); close(exited) }(p.cmd, p.exited)
	waitUntil(t, p.name+" ready", 60*time.Second, func() bool {
		select {
		case <-p.exited:
			t.Fatalf("%s exited during start:\n%s", p.name, p.log.String())
		default:
		}
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not die", p.name)
	}
}

func waitUntil(t testing.TB, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCluster runs two cloud nodes, a job and a logic as separate processes
// on a real Redis, a real etcd and a Kafka-protocol broker, and checks
// delivery across nodes and what survives killing a job and a cloud node.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers and builds the binary")
	}
	redisAddr := redistest.Start(t)
	etcdSrv := etcdtest.Start(t)
	kafka := kafkatest.Start(t)

	dir := t.TempDir()
	bin := filepath.Join(dir, "imcloud")
	if out, err := exec.Command("go", "build", "-o", bin, "..").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	prefix := fmt.Sprintf("/imcloud-test-%d", time.Now().UnixNano())
	shared := fmt.Sprintf(`
log: {level: info}
registry:
  backend: etcd
  etcd: {endpoints: [%s], prefix: %s, ttl: 3s}
queue:
  backend: kafka
  kafka: {brokers: [%s], topic: push-%d, group: job-%d, partitions: 4}
store:
  backend: redis
  ttl: 8s
  redis: {addr: %s, prefix: "t%d:"}
`, etcdSrv.Endpoint, prefix, strings.Join(kafka.Addrs, ", "), time.Now().UnixNano(), time.Now().UnixNano(), redisAddr, time.Now().UnixNano())

	var procs []*proc
	newProc := func(name, role, body, admin string) *proc {
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(body+shared), 0o600); err != nil {
			t.Fatal(err)
		}
		p := &proc{name: name, role: role, config: path, bin: bin, admin: admin, log: &lockedbuf.Buffer{}}
		procs = append(procs, p)
		return p
	}
	t.Cleanup(func() {
		for _, p := range procs {
			if p.cmd != nil && p.cmd.Process != nil {
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
			if t.Failed() {
				t.Logf("==== %s log:\n%s", p.name, p.log.String())
			}
		}
	})
	type cloudAddrs struct{ tcp, ws string }
	var clouds []cloudAddrs
	var cloudProcs []*proc
	for i := 1; i <= 2; i++ {
		c := cloudAddrs{tcp: freeport.Addr(t), ws: freeport.Addr(t)}
		clouds = append(clouds, c)
		cloudProcs = append(cloudProcs, newProc(fmt.Sprintf("cloud%d", i), "cloud", fmt.Sprintf(`
node: {id: cloud%d}
cloud: {tcp_addr: %s, ws_addr: %s, grpc_addr: %s, online_report_interval: 1s}
`, i, c.tcp, c.ws, freeport.Addr(t)), c.ws))
	}
	jobAdmin := freeport.Addr(t)
	job := newProc("job", "job", fmt.Sprintf("node: {id: job1, admin_addr: %s}\njob: {max_age: 5m}\n", jobAdmin), jobAdmin)
	httpAddr := freeport.Addr(t)
	newProc("logic", "logic", fmt.Sprintf("node: {id: logic1}\nlogic: {http_addr: %s}\n", httpAddr), httpAddr)
	for _, p := range procs {
		p.start(t)
	}
	s := &server{base: "http://" + httpAddr}
	waitNodes := func(want int) {
		t.Helper()
		waitUntil(t, fmt.Sprintf("%d cloud nodes in nodes/instances", want), 30*time.Second, func() bool {
			_, env := s.do(t, "GET", "/goim/nodes/instances", nil, "")
			var nodes []json.RawMessage
			return json.Unmarshal(env.Data, &nodes) == nil && len(nodes) == want
		})
	}
	waitNodes(2)

	dial := func(network, addr string, a protocol.Auth) *client.Client {
		t.Helper()
		if network == "ws" {
			addr = "ws://" + addr + "/sub"
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		c, err := client.Dial(ctx, client.Options{Network: network, Addr: addr, Auth: a})
		if err != nil {
			t.Fatalf("dial %s %s: %v", network, addr, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	accepts := []int32{1000, 1001}
	devA := dial("tcp", clouds[0].tcp, protocol.Auth{Mid: 1, Key: "u1-phone", RoomID: "live://r", Accepts: accepts})
	devB := dial("ws", clouds[1].ws, protocol.Auth{Mid: 1, Key: "u1-web", RoomID: "live://r", Accepts: accepts})
	other := dial("tcp", clouds[1].tcp, protocol.Auth{Mid: 2, Key: "u2", RoomID: "live://r", Accepts: accepts})
	counter := dial("tcp", clouds[0].tcp, protocol.Auth{Mid: 3, Key: "u3", RoomID: "live://r"})
	// Heartbeats keep the bindings of these clients alive past store.ttl, as
	// real clients do; expectPush skips the replies.
	beating := &heartbeats{clients: []*client.Client{devA, devB, other}}
	beating.start(t)

	// Push by mid reaches the user's devices on both nodes.
	if n := s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "1"), "to-user-1"); n != 2 {
		t.Errorf("push by mid targeted %d sessions, want 2", n)
	}
	expectPush(t, devA, 1000, "to-user-1")
	expectPush(t, devB, 1000, "to-user-1")
	// Room push and broadcast reach both nodes.
	s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "r"), "to-room")
	s.push(t, "/goim/push/all", qv("operation", "1001"), "to-all")
	for _, c := range []*client.Client{devA, devB, other} {
		// Different Kafka keys (room, operation): either may come first.
		expectPushes(t, c, "1000:to-room", "1001:to-all")
	}
	// Heartbeat counts are cluster-wide once the nodes have reported.
	waitUntil(t, "cluster-wide heartbeat count", 20*time.Second, func() bool {
		if err := counter.Heartbeat(5); err != nil {
			t.Fatal(err)
		}
		f := next(t, counter)
		for f.Op != protocol.OpHeartbeatReply { // room pushes it got meanwhile
			f = next(t, counter)
		}
		return heartbeatCount(t, f) == 4
	})
	_, env := s.do(t, "GET", "/goim/online/room", qv("type", "live", "rooms", "r"), "")
	if string(env.Data) != `{"r":4}` {
		t.Errorf("online/room across nodes: %s", env.Data)
	}

	// A second connection with a key, on the other node, replaces the first
	// there too: the old one learns it at its next heartbeat refresh (every
	// store.ttl/4 here) and is told so before it is closed.
	dupOld := dial("tcp", clouds[0].tcp, protocol.Auth{Mid: 9, Key: "u9-dup", Accepts: accepts})
	dupNew := dial("ws", clouds[1].ws, protocol.Auth{Mid: 9, Key: "u9-dup", Accepts: accepts})
	waitUntil(t, "the old connection replaced", 30*time.Second, func() bool {
		if err := dupOld.Heartbeat(7); err != nil {
			t.Fatalf("old connection closed without a DisconnectReply: %v", err)
		}
		switch f := next(t, dupOld); f.Op {
		case protocol.OpHeartbeatReply:
			time.Sleep(250 * time.Millisecond)
			return false
		case protocol.OpDisconnectReply:
			if string(f.Body) != "replaced by a new connection" {
				t.Fatalf("old connection disconnected: %q", f.Body)
			}
			return true
		default:
			t.Fatalf("old connection got %v", f)
			return false
		}
	})
	if n := s.push(t, "/goim/push/keys", qv("operation", "1000", "keys", "u9-dup"), "to-dup"); n != 1 {
		t.Errorf("push by key after the replacement targeted %d sessions, want 1", n)
	}
	expect(t, dupNew, 1000, "to-dup")

	// A push made while the only job is dead is delivered when it returns.
	job.kill(t)
	s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "2"), "while-job-down")
	job.start(t)
	expectPush(t, other, 1000, "while-job-down")

	// A cloud node killed leaves the registry within the lease TTL; the other
	// keeps delivering.
	cloudProcs[0].kill(t)
	waitNodes(1)
	s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "r"), "after-kill")
	expectPush(t, devB, 1000, "after-kill")
	expectPush(t, other, 1000, "after-kill")

	// The user's phone reconnects to the surviving node with a new key: the
	// binding to the dead node is ignored at once and expires later; the new
	// one is kept alive by heartbeats.
	phone := dial("tcp", clouds[1].tcp, protocol.Auth{Mid: 1, Key: "u1-phone-2", Accepts: accepts})
	beating.stop()
	beating = &heartbeats{clients: []*client.Client{phone, devB, other}}
	beating.start(t)
	if n := s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "1"), "reconnected"); n != 2 {
		t.Errorf("push by mid after reconnect targeted %d sessions, want 2 (the dead node's binding ignored)", n)
	}
	expectPush(t, phone, 1000, "reconnected")
	expectPush(t, devB, 1000, "reconnected")
	time.Sleep(10 * time.Second) // past store.ttl (8s): the dead node's binding is gone
	if n := s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "1"), "after-expiry"); n != 2 {
		t.Errorf("push by mid after the old binding expired targeted %d sessions, want 2", n)
	}
	expectPush(t, phone, 1000, "after-expiry")
	expectPush(t, devB, 1000, "after-expiry")

	// etcd down: every process keeps its last view and keeps delivering;
	// when etcd is back the node is registered again by itself.
	etcdSrv.Stop()
	if n := s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "1"), "etcd-down"); n != 2 {
		t.Errorf("push by mid with etcd down targeted %d sessions, want 2", n)
	}
	expectPush(t, phone, 1000, "etcd-down")
	expectPush(t, devB, 1000, "etcd-down")
	etcdSrv.Start()
	waitNodes(1)
	s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "r"), "etcd-back")
	expectPush(t, devB, 1000, "etcd-back")
}

// heartbeats sends a heartbeat on each client every 500 ms until stopped.
type heartbeats struct {
	clients []*client.Client
	quit    chan struct{}
	done    chan struct{}
}

func (h *heartbeats) start(t *testing.T) {
	h.quit, h.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-h.quit:
				return
			case <-tick.C:
				for _, c := range h.clients {
					_ = c.Heartbeat(9)
				}
			}
		}
	}()
	t.Cleanup(h.stop)
}

func (h *heartbeats) stop() {
	select {
	case <-h.quit:
	default:
		close(h.quit)
	}
	<-h.done
}

// expectPush is expect for a client that also heartbeats: replies are skipped.
func expectPush(t testing.TB, c *client.Client, op int32, body string) {
	t.Helper()
	for {
		f := next(t, c)
		if f.Op == protocol.OpHeartbeatReply {
			continue
		}
		if f.Op != op || string(f.Body) != body {
			t.Fatalf("%s client: got %v, want op=%d body=%q", c.Network(), f, op, body)
		}
		return
	}
}

// expectPushes reads len(want) pushes from c, skipping heartbeat replies,
// and requires them to be want ("op:body") in any order.
func expectPushes(t testing.TB, c *client.Client, want ...string) {
	t.Helper()
	var got []string
	for len(got) < len(want) {
		if f := next(t, c); f.Op != protocol.OpHeartbeatReply {
			got = append(got, fmt.Sprintf("%d:%s", f.Op, f.Body))
		}
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("%s client: got %q, want %q in any order", c.Network(), got, want)
	}
}
