package roles_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/queue/kafka/kafkatest"
	"github.com/imcloud/imcloud/roles"
	"github.com/imcloud/imcloud/store/redis/redistest"
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
	// persist; the heartbeat re-binds it.
	if err := c.Heartbeat(2); err != nil {
		t.Fatal(err)
	}
	for f := next(t, c); f.Op != protocol.OpHeartbeatReply; f = next(t, c) {
	}
	s.push(t, "/goim/push/mids", qv("operation", "1000", "mids", "5"), "recovered")
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
