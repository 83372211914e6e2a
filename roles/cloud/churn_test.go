package cloud

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport/client"
)

// TestChurn: while room pushes and pushes by key stream in, other clients
// keep connecting over TCP and WebSocket, changing rooms, being replaced by
// a newer connection with their key and hanging up. Pushes are written on
// the sockets' descriptors directly while those closes happen, so this is
// where a write to a closed (and reused) descriptor would show: every
// client must get only what was meant for it, the steady members every
// room push in order, and the hub must end with just the steady members.
func TestChurn(t *testing.T) {
	th := newTestHub(t, nil)
	addrs := map[string]string{"tcp": th.startTCP(t), "ws": "ws://" + startWSListener(t, th) + "/sub"}
	const room, pushes, churners, keysPerChurner = "live://churn", 400, 4, 3
	dial := func(network, key, roomID string) (*client.Client, error) {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		return client.Dial(ctx, client.Options{Network: network, Addr: addrs[network], Timeout: waitFor,
			Auth: protocol.Auth{Mid: 7, Key: key, RoomID: roomID, Accepts: []int32{1000, 1001}}})
	}

	var steady []*client.Client
	for i, network := range []string{"tcp", "ws", "tcp", "ws"} {
		c, err := dial(network, "steady-"+strconv.Itoa(i), room)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		steady = append(steady, c)
	}
	results := make(chan error, len(steady))
	for _, c := range steady {
		go func() { results <- readRoomPushes(c, pushes) }()
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sessions atomic.Int64
	for g := range churners {
		wg.Go(func() {
			network := []string{"tcp", "ws"}[g%2]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Keys come back, so a connection is sometimes replaced by
				// the next one while it is still open.
				key := fmt.Sprintf("churn-%d-%d", g, i%keysPerChurner)
				roomID := room
				if i%2 == 1 {
					roomID = "live://elsewhere"
				}
				c, err := dial(network, key, roomID)
				if err != nil {
					t.Errorf("churner %d: %v", g, err)
					return
				}
				sessions.Add(1)
				if i%3 == 0 {
					_ = c.Send(1, protocol.OpChangeRoom, 9, []byte("live://other"))
				}
				if err := checkOwnFrames(c, key, roomID == room); err != nil {
					t.Errorf("churner %d, %s connection %d (%s): %v", g, network, i, key, err)
				}
				if i%keysPerChurner != keysPerChurner-1 {
					_ = c.Close() // else left open for the next one with its key to replace
				} else {
					defer c.Close()
				}
			}
		})
	}

	for i := range pushes {
		th.PushRoom(room, protocol.EncodePush(1000, []byte(strconv.Itoa(i))))
		for g := range churners {
			for k := range keysPerChurner {
				key := fmt.Sprintf("churn-%d-%d", g, k)
				th.PushKeys([]string{key}, 1001, protocol.EncodePush(1001, []byte("for "+key)))
			}
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for range steady {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	if n := sessions.Load(); n < 20 {
		t.Errorf("only %d churning sessions during %d pushes", n, pushes)
	}
	eventually(t, "only the steady members left", func() bool {
		return th.conns.Load() == int64(len(steady)) && th.RoomCount(room) == int32(len(steady))
	})
}

// readRoomPushes reads until n room pushes arrived and checks they are
// 0..n-1 in order.
func readRoomPushes(c *client.Client, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	for want := 0; want < n; {
		f, err := c.Next(ctx)
		if err != nil {
			return fmt.Errorf("%s member after %d pushes: %w", c.Network(), want, err)
		}
		if f.Op != 1000 || string(f.Body) != strconv.Itoa(want) {
			return fmt.Errorf("%s member: got op %d %q, want room push %d", c.Network(), f.Op, f.Body, want)
		}
		want++
	}
	return nil
}

// checkOwnFrames reads what arrives for a moment and checks each frame is
// one the client with key may get: a room push if it joined the room, a
// push to key, the reply to its room change, or the goodbye of a replaced
// connection.
func checkOwnFrames(c *client.Client, key string, inRoom bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	last := -1
	for {
		f, err := c.Next(ctx)
		if err != nil {
			// The moment is over, or the connection was replaced.
			return nil
		}
		switch f.Op {
		case 1000:
			if !inRoom {
				return fmt.Errorf("got a push to a room it is not in: %q", f.Body)
			}
			i, err := strconv.Atoi(string(f.Body))
			if err != nil || i <= last {
				return fmt.Errorf("room push %q after %d", f.Body, last)
			}
			last = i
		case 1001:
			if string(f.Body) != "for "+key {
				return fmt.Errorf("got a push for someone else: %q", f.Body)
			}
		case protocol.OpChangeRoomReply, protocol.OpDisconnectReply:
		default:
			return fmt.Errorf("unexpected frame op %d %q", f.Op, f.Body)
		}
	}
}
