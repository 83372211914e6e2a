package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport/client"
)

// parkedCount is how many sessions have their reader parked.
func parkedCount(h *Hub) int {
	n := 0
	h.each(func(s *Session) {
		s.mu.Lock()
		if s.parked {
			n++
		}
		s.mu.Unlock()
	})
	return n
}

// readers is how many goroutines are in a session's read loop.
func readers() int {
	buf := make([]byte, 8<<20)
	return bytes.Count(buf[:runtime.Stack(buf, true)], []byte("cloud.(*Hub).readLoop("))
}

// clientAddr starts the hub's TCP or WebSocket listener for network.
func clientAddr(t *testing.T, th *testHub, network string) string {
	t.Helper()
	if network == "ws" {
		return "ws://" + startWSListener(t, th) + "/sub"
	}
	return th.startTCP(t)
}

func dialNetwork(t *testing.T, network, addr string, a protocol.Auth) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Network: network, Addr: addr, Auth: a, Timeout: waitFor})
	if err != nil {
		t.Fatalf("Dial %s: %v", network, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestIdleReadersPark: idle sessions keep no reader goroutine; a frame, a
// push and the peer's close are all handled as before, and the readers park
// again after each frame. With KeepReaders every session keeps its reader.
func TestIdleReadersPark(t *testing.T) {
	for _, tc := range []struct {
		network string
		keep    bool
	}{{"tcp", false}, {"ws", false}, {"tcp", true}} {
		t.Run(fmt.Sprintf("%s keep=%v", tc.network, tc.keep), func(t *testing.T) {
			th := newTestHub(t, func(c *Config) { c.KeepReaders = tc.keep })
			addr := clientAddr(t, th, tc.network)
			const n = 40
			wantParked, wantReaders := n, 0
			if tc.keep {
				wantParked, wantReaders = 0, n
			}
			settled := func(what string) {
				t.Helper()
				eventually(t, what, func() bool {
					return parkedCount(th.Hub) == wantParked && readers() == wantReaders &&
						metricValue(t, th.Hub.metrics.Parked) == float64(wantParked)
				})
			}
			clients := make([]*client.Client, n)
			for i := range clients {
				clients[i] = dialNetwork(t, tc.network, addr, protocol.Auth{Mid: int64(i), Key: fmt.Sprint("p", i), RoomID: "live://p"})
			}
			settled("idle readers settled after connecting")

			for i, c := range clients {
				if err := c.Heartbeat(int32(i)); err != nil {
					t.Fatal(err)
				}
			}
			for i, c := range clients {
				f := nextFrame(t, c)
				if f.Seq != int32(i) || heartbeatCountOf(t, f) != n {
					t.Fatalf("client %d: heartbeat reply %v", i, f)
				}
			}
			settled("idle readers settled after a heartbeat each")

			th.PushRoom("live://p", protocol.EncodePush(1000, []byte("to-parked")))
			for i, c := range clients {
				if f := nextFrame(t, c); f.Op != 1000 || string(f.Body) != "to-parked" {
					t.Fatalf("client %d got %v", i, f)
				}
			}

			for _, c := range clients[:n/2] {
				_ = c.Close()
			}
			eventually(t, "closed clients' sessions torn down", func() bool {
				conns, _ := th.Online()
				return conns == n/2
			})
			if tc.keep {
				wantReaders = n / 2
			} else {
				wantParked = n / 2
			}
			settled("the rest still idle")
		})
	}
}

// TestParkedHeartbeatDeadline: a parked session that stays silent past the
// heartbeat timeout is told so and closed; one that heartbeats in time,
// parking between heartbeats, lives on well past the timeout.
func TestParkedHeartbeatDeadline(t *testing.T) {
	for _, network := range []string{"tcp", "ws"} {
		t.Run(network, func(t *testing.T) {
			const timeout = 400 * time.Millisecond
			th := newTestHub(t, func(c *Config) { c.HeartbeatTimeout = timeout })
			addr := clientAddr(t, th, network)
			silent := dialNetwork(t, network, addr, protocol.Auth{Mid: 1, Key: "silent"})
			alive := dialNetwork(t, network, addr, protocol.Auth{Mid: 2, Key: "alive"})

			for i := range int32(12) { // 12 × 100 ms: three timeouts
				if err := alive.Heartbeat(i); err != nil {
					t.Fatalf("heartbeat %d: %v", i, err)
				}
				if f := nextFrame(t, alive); f.Op != protocol.OpHeartbeatReply || f.Seq != i {
					t.Fatalf("heartbeat %d: got %v", i, f)
				}
				time.Sleep(timeout / 4)
			}
			fs := readToClose(t, silent) // what it got meanwhile, then the close
			if len(fs) != 1 || fs[0].Op != protocol.OpDisconnectReply || string(fs[0].Body) != "heartbeat timeout" {
				t.Fatalf("silent client got %v before the close, want the heartbeat timeout", fs)
			}
		})
	}
}

// TestParkedShutdown: Shutdown reaches parked sessions: each is told and
// closed, and Shutdown returns once they are gone.
func TestParkedShutdown(t *testing.T) {
	th := newTestHub(t, nil)
	tcpAddr, wsAddr := clientAddr(t, th, "tcp"), clientAddr(t, th, "ws")
	cs := []*client.Client{
		dialNetwork(t, "tcp", tcpAddr, protocol.Auth{Mid: 1, Key: "a"}),
		dialNetwork(t, "ws", wsAddr, protocol.Auth{Mid: 2, Key: "b"}),
	}
	eventually(t, "both parked", func() bool { return parkedCount(th.Hub) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, c := range cs {
		fs := readToClose(t, c)
		if len(fs) != 1 || fs[0].Op != protocol.OpDisconnectReply || string(fs[0].Body) != "server shutting down" {
			t.Fatalf("%s client got %v", c.Network(), fs)
		}
	}
}

// TestParkedPartialFrame: a frame that arrives in pieces resumes the reader
// with its first bytes, and the rest is waited for.
func TestParkedPartialFrame(t *testing.T) {
	th := newTestHub(t, nil)
	c := dialClient(t, th.startTCP(t), protocol.Auth{Mid: 1, Key: "k"})
	eventually(t, "parked", func() bool { return parkedCount(th.Hub) == 1 })
	hb := protocol.Encode(1, protocol.OpSendMsg, 5, []byte("hello"))
	for _, part := range [][]byte{hb[:3], hb[3:18], hb[18:]} {
		if err := c.SendRaw(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if f := nextFrame(t, c); f.Op != protocol.OpSendMsgReply || f.Seq != 5 {
		t.Fatalf("got %v, want the SendMsg reply", f)
	}
	eventually(t, "parked again", func() bool { return parkedCount(th.Hub) == 1 && readers() == 0 })
}

// TestParkedWebSocketPing: a ping to a parked WebSocket session is answered
// and the session goes on.
func TestParkedWebSocketPing(t *testing.T) {
	th := newTestHub(t, nil)
	addr := clientAddr(t, th, "ws")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, _, err := websocket.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	body, _ := json.Marshal(protocol.Auth{Mid: 1, Key: "pinger"})
	if err := c.Write(ctx, websocket.MessageBinary, protocol.Encode(1, protocol.OpAuth, 1, body)); err != nil {
		t.Fatal(err)
	}
	msgs := make(chan []byte, 8)
	go func() {
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- b
		}
	}()
	if f, err := protocol.DecodeMessage(<-msgs, 1<<16); err != nil || f.Op != protocol.OpAuthReply {
		t.Fatalf("auth reply %v %v", f, err)
	}
	for range 3 {
		eventually(t, "parked", func() bool { return parkedCount(th.Hub) == 1 })
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("ping: %v", err)
		}
	}
	if err := c.Write(ctx, websocket.MessageBinary, protocol.Encode(1, protocol.OpHeartbeat, 9, nil)); err != nil {
		t.Fatal(err)
	}
	if f, err := protocol.DecodeMessage(<-msgs, 1<<16); err != nil || f.Op != protocol.OpHeartbeatReply || f.Seq != 9 {
		t.Fatalf("heartbeat reply %v %v", f, err)
	}
}

// TestParkedSlowConsumer: a parked session whose client stops reading is
// closed as a slow consumer once its queue overflows, and the close resumes
// its reader to tear it down.
func TestParkedSlowConsumer(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.SendQueue = 4 })
	dialClient(t, th.startTCP(t), protocol.Auth{Mid: 1, Key: "slow", Accepts: []int32{1000}})
	eventually(t, "parked", func() bool { return parkedCount(th.Hub) == 1 })
	push := protocol.EncodePush(1000, bytes.Repeat([]byte("x"), 64<<10))
	eventually(t, "closed as a slow consumer", func() bool {
		th.PushKeys([]string{"slow"}, 1000, push) // the client never reads
		return metricValue(t, th.metrics.SlowClients) == 1
	})
	eventually(t, "the session torn down", func() bool {
		conns, _ := th.Online()
		return conns == 0 && th.sessionsClosed("slow") == 1
	})
}
