package roles_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/imcloud/imcloud/internal/freeport"
	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/queue/kafka/kafkatest"
	"github.com/imcloud/imcloud/registry/etcd/etcdtest"
	"github.com/imcloud/imcloud/roles"
	"github.com/imcloud/imcloud/store"
	sredis "github.com/imcloud/imcloud/store/redis"
	"github.com/imcloud/imcloud/store/redis/redistest"
	"github.com/imcloud/imcloud/transport/client"
)

// TestRedisOutage: with Redis down, pushes by mid answer 503 saying so
// (quickly, not after hanging) and new connections are refused with a
// DisconnectReply; everything recovers by itself when Redis is back.
func TestRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	rs := redistest.NewServer(t)
	s := startAll(t, func(c *roles.Config) {
		c.Store.Backend = "redis"
		c.Store.Redis.Addr = rs.Addr
		c.Store.Redis.Prefix = fmt.Sprintf("outage%d:", time.Now().UnixNano())
		c.Cloud.OnlineReportInterval = time.Second
	})
	c := s.dial(t, "tcp", protocol.Auth{Mid: 5, Accepts: []int32{1000}})
	s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "5"), "before")
	expect(t, c, 1000, "before")

	rs.Stop()
	start := time.Now()
	code, env := s.do(t, http.MethodPost, "/goim/push/mids", qv("operation", "1000", "mids", "5"), "during")
	if code != http.StatusServiceUnavailable || env.Code != -503 || !strings.Contains(env.Message, "store") {
		t.Errorf("push with Redis down: %d %+v, want 503 naming the session store", code, env)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("push with Redis down took %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	refused := s.dialRaw(t, "tcp")
	auth := protocol.Encode(1, protocol.OpAuth, 1, []byte(`{"mid":6}`))
	if err := refused.SendRaw(auth); err != nil {
		t.Fatal(err)
	}
	if f, err := refused.Next(ctx); err != nil || f.Op != protocol.OpDisconnectReply {
		t.Errorf("auth with Redis down: %v, %v; want a DisconnectReply", f, err)
	}
	// Room pushes need no store: they keep flowing.
	s.push(t, "/goim/push/all", qv("operation", "1000"), "broadcast-during")
	expect(t, c, 1000, "broadcast-during")

	rs.Start()
	waitUntil(t, "pushes to succeed again", 30*time.Second, func() bool {
		code, _ := s.do(t, http.MethodPost, "/goim/push/mids", qv("operation", "1000", "mids", "5"), "after")
		return code == http.StatusOK
	})
	// The binding made before the outage is lost with a server that does not
	// persist. The node notices at its next online report and binds its
	// sessions again at once: no heartbeat needed (goim's come every 240 s).
	waitUntil(t, "the node to re-bind the session", 30*time.Second, func() bool {
		return s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "5"), "recovered") == 1
	})
	for f := next(t, c); ; f = next(t, c) {
		if f.Op == 1000 && string(f.Body) == "recovered" {
			break
		}
	}
}

// TestKafkaOutage: with the brokers down, pushes answer 503 within a few
// seconds; connected clients are unaffected.
func TestKafkaOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kafka-protocol broker")
	}
	k := kafkatest.Start(t)
	s := startAll(t, func(c *roles.Config) {
		c.Queue.Backend = "kafka"
		c.Queue.Kafka.Brokers = k.Addrs
		c.Queue.Kafka.Topic = fmt.Sprintf("outage-%d", time.Now().UnixNano())
		c.Queue.Kafka.Group = c.Queue.Kafka.Topic
		c.Queue.Kafka.Partitions = 2
	})
	c := s.dial(t, "ws", protocol.Auth{Mid: 8, Accepts: []int32{1000}, RoomID: "live://k"})
	s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "k"), "via-kafka")
	expect(t, c, 1000, "via-kafka")

	k.Close()
	start := time.Now()
	code, env := s.do(t, http.MethodPost, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "k"), "down")
	if code != http.StatusServiceUnavailable || env.Code != -503 || !strings.Contains(env.Message, "queue") {
		t.Errorf("push with Kafka down: %d %+v, want 503 naming the queue", code, env)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("push with Kafka down took %v", d)
	}
	if err := c.Heartbeat(3); err != nil {
		t.Fatal(err)
	}
	if f := next(t, c); f.Op != protocol.OpHeartbeatReply {
		t.Errorf("client after the outage: %v", f)
	}
}

// roleRun is one role running in process.
type roleRun struct {
	app  *roles.App
	done chan struct{} // closed when Run has returned
	err  error         // Run's result, once done is closed
	stop func()        // ends Run and waits for it (also at cleanup)
}

// runRole runs one role in process until the test ends, without waiting for
// it to be ready.
func runRole(t *testing.T, cfg roles.Config, role string) *roleRun {
	t.Helper()
	if err := cfg.Validate(role); err != nil {
		t.Fatalf("%s config: %v", role, err)
	}
	app, err := roles.New(cfg, role, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(role))
	if err != nil {
		t.Fatalf("new %s: %v", role, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &roleRun{app: app, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = app.Run(ctx)
	}()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-r.done:
				if r.err != nil {
					t.Errorf("%s stopped with an error: %v", role, r.err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("%s did not stop in time", role)
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

// TestStartBeforeBackends: cloud, job and logic started while etcd, Redis
// and Kafka are all down wait for them instead of exiting: logic serves at
// once and answers pushes with a 503 that names Kafka, /readyz says what is
// missing, and once the servers are up the cluster delivers by itself.
func TestStartBeforeBackends(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd, redis-server and a Kafka-protocol broker")
	}
	etcdSrv := etcdtest.Start(t)
	etcdSrv.Stop()
	rs := redistest.NewServer(t)
	rs.Stop()
	kafkaAddr := freeport.Addr(t)
	_, port, _ := net.SplitHostPort(kafkaAddr)
	kafkaPort, _ := strconv.Atoi(port)

	base := roles.Default()
	base.Cloud.TCPAddr, base.Cloud.WSAddr, base.Cloud.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	base.Logic.HTTPAddr = "127.0.0.1:0"
	base.Node.AdminAddr = "127.0.0.1:0"
	base.Registry.Backend = "etcd"
	base.Registry.Etcd.Endpoints = []string{etcdSrv.Endpoint}
	base.Registry.Etcd.Prefix = fmt.Sprintf("/early%d", time.Now().UnixNano())
	base.Store.Backend = "redis"
	base.Store.Redis.Addr = rs.Addr
	base.Store.Redis.Prefix = fmt.Sprintf("early%d:", time.Now().UnixNano())
	base.Queue.Backend = "kafka"
	base.Queue.Kafka.Brokers = []string{kafkaAddr}
	base.Queue.Kafka.Topic = fmt.Sprintf("early-%d", time.Now().UnixNano())
	base.Queue.Kafka.Group = base.Queue.Kafka.Topic
	base.Queue.Kafka.Partitions = 2

	runs := map[string]*roleRun{}
	// The cloud node's ports are fixed, to be tried before it is ready; its
	// admin endpoints ride on its WebSocket port.
	tcpAddr, wsAddr := freeport.Addr(t), freeport.Addr(t)
	for _, role := range []string{roles.RoleCloud, roles.RoleJob, roles.RoleLogic} {
		cfg := base
		cfg.Node.ID = "early-" + role
		if role == roles.RoleCloud {
			cfg.Cloud.TCPAddr, cfg.Cloud.WSAddr, cfg.Node.AdminAddr = tcpAddr, wsAddr, ""
		}
		runs[role] = runRole(t, cfg, role)
	}
	waitUntil(t, "logic to serve while its backends are down", wait, runs[roles.RoleLogic].app.Ready)
	time.Sleep(time.Second) // let cloud and job try (and fail) a few times
	for role, r := range runs {
		select {
		case <-r.done:
			t.Fatalf("%s exited while its backends were down: %v", role, r.err)
		default:
		}
		if role != roles.RoleLogic && r.app.Ready() {
			t.Errorf("%s is ready with etcd down", role)
		}
	}
	// The unregistered cloud node turns clients away at once and answers
	// its admin endpoints.
	early := &server{addrs: roles.Addrs{TCP: tcpAddr, WS: wsAddr}}
	hc := &http.Client{Timeout: 2 * time.Second}
	waitUntil(t, "the cloud node's /healthz while etcd is down", wait, func() bool {
		resp, err := hc.Get("http://" + wsAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// No profiler on the port clients reach.
	if resp, err := hc.Get("http://" + wsAddr + "/debug/pprof/cmdline"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("profiler on the client WebSocket port: %v %v, want 404", resp, err)
	} else {
		resp.Body.Close()
	}
	// Its /readyz, and the job's, say what they wait for.
	var jobAdmin string
	waitUntil(t, "the job's admin listener", wait, func() bool {
		jobAdmin = runs[roles.RoleJob].app.Addrs().Admin
		return jobAdmin != ""
	})
	for _, rd := range []struct{ url, want string }{
		{"http://" + wsAddr + "/readyz", "starting: cloud: registering this node in the registry (etcd " + etcdSrv.Endpoint},
		{"http://" + jobAdmin + "/readyz", "starting: job: waiting for the node registry's list of cloud nodes"},
	} {
		resp, err := hc.Get(rd.url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), rd.want) {
			t.Errorf("%s: %d %s, want 503 saying %q", rd.url, resp.StatusCode, body, rd.want)
		}
	}
	tc := early.dialRaw(t, "tcp")
	rctx, rcancel := context.WithTimeout(context.Background(), wait)
	if f, err := tc.Next(rctx); err == nil {
		t.Errorf("TCP client of an unregistered node got %v, want the connection closed", f)
	}
	rcancel()
	dctx, dcancel := context.WithTimeout(context.Background(), wait)
	_, err := client.Dial(dctx, client.Options{Network: "ws", Addr: early.addr("ws"), Auth: protocol.Auth{Mid: 1}})
	dcancel()
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("WebSocket upgrade to an unregistered node: %v, want a 503", err)
	}

	la := runs[roles.RoleLogic].app.Addrs()
	logic := &server{base: "http://" + la.HTTP}
	code, env := logic.do(t, http.MethodPost, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "early"), "too-early")
	if code != http.StatusServiceUnavailable || env.Code != -503 || !strings.Contains(env.Message, "queue") {
		t.Errorf("push before Kafka is up: %d %+v, want a 503 naming the queue", code, env)
	}
	resp, err := http.Get("http://" + la.Admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "kafka") {
		t.Errorf("/readyz before Kafka is up: %d %s, want 503 naming kafka", resp.StatusCode, body)
	}

	rs.Start()
	kafkatest.Start(t, kfake.Ports(kafkaPort))
	waitUntil(t, "logic's /readyz to name the registry it still waits for", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + la.Admin + "/readyz")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "registry")
	})
	etcdSrv.Start()
	for role, r := range runs {
		waitUntil(t, role+" to be ready once its backends are up", 60*time.Second, r.app.Ready)
	}
	waitUntil(t, "logic's /readyz to answer 200", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + la.Admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	ca := runs[roles.RoleCloud].app.Addrs()
	s := &server{addrs: ca, base: logic.base}
	c := s.dial(t, "ws", protocol.Auth{Mid: 9, Accepts: []int32{1000}, RoomID: "live://early"})
	waitUntil(t, "a push by mid to find the session", 30*time.Second, func() bool {
		return s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "9"), "by-mid") == 1
	})
	expect(t, c, 1000, "by-mid")
	s.push(t, "/goim/push/room", qv("operation", "1000", "type", "live", "room", "early"), "in-room")
	for f := next(t, c); f.Op != 1000 || string(f.Body) != "in-room"; f = next(t, c) {
	}
}

// twoNodes is two `all` nodes run in the test process, sharing a real
// Redis and etcd: one cluster, whose figures count a node where its peers
// see it in the registry.
type twoNodes struct {
	a      *server
	b      *roleRun
	onB    *server
	redis  string // address
	prefix string // store key prefix
}

func startTwoNodes(t *testing.T, name string, interval time.Duration) *twoNodes {
	t.Helper()
	rs := redistest.NewServer(t)
	etcdSrv := etcdtest.Start(t)
	prefix := fmt.Sprintf("%s%d:", name, time.Now().UnixNano())
	shared := func(c *roles.Config) {
		c.Store.Backend = "redis"
		c.Store.Redis.Addr = rs.Addr
		c.Store.Redis.Prefix = prefix
		c.Registry.Backend = "etcd"
		c.Registry.Etcd.Endpoints = []string{etcdSrv.Endpoint}
		c.Registry.Etcd.Prefix = "/" + strings.TrimSuffix(prefix, ":")
		c.Cloud.OnlineReportInterval = interval
	}
	a := startAll(t, shared)
	cfg := roles.Default()
	cfg.Node.ID = name + "-b"
	cfg.Cloud.TCPAddr, cfg.Cloud.WSAddr, cfg.Cloud.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logic.HTTPAddr = "127.0.0.1:0"
	shared(&cfg)
	b := runRole(t, cfg, roles.RoleAll)
	waitUntil(t, "node b to be ready", wait, b.app.Ready)
	return &twoNodes{a: a, b: b, onB: &server{addrs: b.app.Addrs()}, redis: rs.Addr, prefix: prefix}
}

// roomCount is node a's online/room figure for live://<room>.
func (n *twoNodes) roomCount(t *testing.T, room string) int {
	t.Helper()
	code, env := n.a.do(t, http.MethodGet, "/goim/online/room", qv("type", "live", "rooms", room), "")
	var counts map[string]int
	if code != http.StatusOK || json.Unmarshal(env.Data, &counts) != nil {
		t.Fatalf("online/room: %d %+v", code, env)
	}
	return counts[room]
}

// TestStoppedNodeWithdrawsOnlineCounts: a cloud node that stops cleanly
// takes its room counts out of the cluster-wide figures at once, not when
// its last report expires (three report intervals later).
func TestStoppedNodeWithdrawsOnlineCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and etcd")
	}
	const interval = 10 * time.Second // the report lives 30 s
	n := startTwoNodes(t, "withdraw", interval)
	c := n.onB.dial(t, "tcp", protocol.Auth{Mid: 1, RoomID: "live://w"})
	defer c.Close()
	waitUntil(t, "node b's member to be counted", 2*interval+wait, func() bool { return n.roomCount(t, "w") == 1 })
	start := time.Now()
	n.b.stop()
	waitUntil(t, "node b's counts to be withdrawn", interval, func() bool { return n.roomCount(t, "w") == 0 })
	t.Logf("withdrawn %v after the stop", time.Since(start))
}

// TestDepartedNodeReportIgnored: a node killed outright leaves its last
// online report in Redis until it expires; while it does, neither logic's
// online figures nor heartbeat replies count it, only the nodes in the
// registry.
func TestDepartedNodeReportIgnored(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and etcd")
	}
	n := startTwoNodes(t, "departed", 500*time.Millisecond)
	// The last report of a node that is gone, as Redis keeps it for a
	// while: 5 members in live://w.
	ghost, err := sredis.New(sredis.Config{Addr: n.redis, Prefix: n.prefix, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Close()
	if err := ghost.ReportOnline(t.Context(), store.NodeOnline{Node: "ghost", Conns: 5, Rooms: map[string]int32{"live://w": 5}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	ca := n.a.dial(t, "tcp", protocol.Auth{Mid: 1, RoomID: "live://w"})
	defer ca.Close()
	cb := n.onB.dial(t, "tcp", protocol.Auth{Mid: 2, RoomID: "live://w"})
	defer cb.Close()

	seq := int32(0)
	beat := func() int32 {
		seq++
		if err := ca.Heartbeat(seq); err != nil {
			t.Fatal(err)
		}
		for {
			if f := next(t, ca); f.Op == protocol.OpHeartbeatReply && f.Seq == seq {
				return heartbeatCount(t, f)
			}
		}
	}
	// Both live members counted, the ghost's five never.
	waitUntil(t, "online/room to count both nodes' members", wait, func() bool { return n.roomCount(t, "w") == 2 })
	waitUntil(t, "heartbeat replies to count both nodes' members", wait, func() bool { return beat() == 2 })
	for range 3 {
		time.Sleep(600 * time.Millisecond) // another report cycle
		if got := n.roomCount(t, "w"); got != 2 {
			t.Fatalf("online/room counts %d in live://w, want 2 (the departed node's report left out)", got)
		}
		if got := beat(); got != 2 {
			t.Fatalf("heartbeat reply counts %d in live://w, want 2", got)
		}
	}
}
