package cloud

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/protocol/pb"
)

// call runs one Service method on req and returns its error.
type grpcCall func(ctx context.Context, c pb.CloudServer) error

func pushKeys(r *pb.PushKeysReq) grpcCall {
	return func(ctx context.Context, c pb.CloudServer) error { _, err := c.PushKeys(ctx, r); return err }
}

func broadcastRoom(r *pb.BroadcastRoomReq) grpcCall {
	return func(ctx context.Context, c pb.CloudServer) error { _, err := c.BroadcastRoom(ctx, r); return err }
}

func broadcast(r *pb.BroadcastReq) grpcCall {
	return func(ctx context.Context, c pb.CloudServer) error { _, err := c.Broadcast(ctx, r); return err }
}

// clientAsServer lets the same table run against a gRPC client.
type clientAsServer struct {
	pb.UnimplementedCloudServer
	c pb.CloudClient
}

func (a clientAsServer) PushKeys(ctx context.Context, r *pb.PushKeysReq) (*pb.PushKeysReply, error) {
	return a.c.PushKeys(ctx, r)
}

func (a clientAsServer) BroadcastRoom(ctx context.Context, r *pb.BroadcastRoomReq) (*pb.BroadcastRoomReply, error) {
	return a.c.BroadcastRoom(ctx, r)
}

func (a clientAsServer) Broadcast(ctx context.Context, r *pb.BroadcastReq) (*pb.BroadcastReply, error) {
	return a.c.Broadcast(ctx, r)
}

// TestServiceRejectsMalformedFrames: nothing malformed reaches a client;
// every bad request is InvalidArgument, in process and over the wire.
func TestServiceRejectsMalformedFrames(t *testing.T) {
	one := protocol.EncodePush(1000, []byte("ok"))
	two := append(slices.Clone(one), one...)
	badHeader := slices.Clone(one)
	badHeader[5] = 20 // headerLen 20
	tests := []struct {
		name string
		call grpcCall
	}{
		{"keys: no frame", pushKeys(&pb.PushKeysReq{Keys: []string{"k"}, Operation: 1000})},
		{"keys: truncated", pushKeys(&pb.PushKeysReq{Keys: []string{"k"}, Operation: 1000, Frame: one[:len(one)-1]})},
		{"keys: short header", pushKeys(&pb.PushKeysReq{Keys: []string{"k"}, Operation: 1000, Frame: one[:10]})},
		{"keys: bad header length", pushKeys(&pb.PushKeysReq{Keys: []string{"k"}, Operation: 1000, Frame: badHeader})},
		{"keys: two frames", pushKeys(&pb.PushKeysReq{Keys: []string{"k"}, Operation: 1000, Frame: two})},
		{"keys: trailing garbage", pushKeys(&pb.PushKeysReq{Keys: []string{"k"}, Operation: 1000, Frame: append(slices.Clone(one), 1, 2, 3)})},
		{"room: no room", broadcastRoom(&pb.BroadcastRoomReq{Frames: one})},
		{"room: no frames", broadcastRoom(&pb.BroadcastRoomReq{Room: "r"})},
		{"room: truncated run", broadcastRoom(&pb.BroadcastRoomReq{Room: "r", Frames: two[:len(two)-2]})},
		{"room: bad header length", broadcastRoom(&pb.BroadcastRoomReq{Room: "r", Frames: append(slices.Clone(one), badHeader...)})},
		{"broadcast: no frame", broadcast(&pb.BroadcastReq{Operation: 1000})},
		{"broadcast: two frames", broadcast(&pb.BroadcastReq{Operation: 1000, Frame: two})},
		{"broadcast: truncated", broadcast(&pb.BroadcastReq{Operation: 1000, Frame: one[:17]})},
	}

	th := newTestHub(t, nil)
	c := th.connectFake(t, "", protocol.Auth{Key: "k", RoomID: "r", Accepts: []int32{1000}})
	svc := NewService(t.Context(), th.Hub)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterCloudServer(srv, svc)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })

	for _, via := range []struct {
		name string
		srv  pb.CloudServer
	}{{"in process", svc}, {"grpc", clientAsServer{c: pb.NewCloudClient(cc)}}} {
		for _, tt := range tests {
			t.Run(via.name+"/"+tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				defer cancel()
				err := tt.call(ctx, via.srv)
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
			})
		}
	}
	if fs := c.frames(t); len(fs) != 1 {
		t.Fatalf("a rejected request reached the client: %v", fs)
	}
}

// TestServiceDelivers: well-formed requests reach the hub and report how
// many sessions they were queued to; Rooms and Online mirror the hub.
func TestServiceDelivers(t *testing.T) {
	th := newTestHub(t, nil)
	c := th.connectFake(t, "198.51.100.7", protocol.Auth{Key: "k", RoomID: "r", Accepts: []int32{1000}})
	th.connectFake(t, "198.51.100.8", protocol.Auth{Key: "other"})
	svc := NewService(t.Context(), th.Hub)
	ctx := t.Context()

	k, err := svc.PushKeys(ctx, &pb.PushKeysReq{Id: "1", Keys: []string{"k", "other"}, Operation: 1000, Frame: protocol.EncodePush(1000, []byte("key"))})
	if err != nil || k.GetDelivered() != 1 {
		t.Fatalf("PushKeys = %v, %v", k, err)
	}
	run := append(protocol.EncodePush(1001, []byte("r1")), protocol.EncodePush(1002, []byte("r2"))...)
	r, err := svc.BroadcastRoom(ctx, &pb.BroadcastRoomReq{Ids: []string{"2", "3"}, Room: "r", Frames: run})
	if err != nil || r.GetDelivered() != 1 {
		t.Fatalf("BroadcastRoom = %v, %v", r, err)
	}
	b, err := svc.Broadcast(ctx, &pb.BroadcastReq{Id: "4", Operation: 1000, Frame: protocol.EncodePush(1000, []byte("all"))})
	if err != nil || b.GetDelivered() != 1 {
		t.Fatalf("Broadcast = %v, %v", b, err)
	}
	if got := pushBodies(c.waitFrames(t, 5)); !slices.Equal(got, []string{"key", "r1", "r2", "all"}) {
		t.Fatalf("client got %q", got)
	}
	rooms, err := svc.Rooms(ctx, &pb.RoomsReq{})
	if err != nil || len(rooms.GetRooms()) != 1 || rooms.GetRooms()["r"] != 1 {
		t.Errorf("Rooms = %v, %v", rooms, err)
	}
	on, err := svc.Online(ctx, &pb.OnlineReq{})
	if err != nil || on.GetConns() != 2 || on.GetIps() != 2 || on.GetRooms()["r"] != 1 {
		t.Errorf("Online = %v, %v", on, err)
	}
}

// TestServiceDropsRepeats: with a dedup window, a push id seen before is
// not delivered again: whole requests for keys and broadcast, single
// frames inside a room batch.
func TestServiceDropsRepeats(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.DedupWindow = time.Hour })
	c := th.connectFake(t, "", protocol.Auth{Key: "k", RoomID: "r", Accepts: []int32{1000}})
	svc := NewService(t.Context(), th.Hub)
	ctx := t.Context()
	frame := func(body string) []byte { return protocol.EncodePush(1000, []byte(body)) }
	run := func(bodies ...string) []byte {
		var b []byte
		for _, s := range bodies {
			b = append(b, frame(s)...)
		}
		return b
	}

	steps := []struct {
		name      string
		call      func() (int32, error)
		delivered int32
	}{
		{"keys", func() (int32, error) {
			r, err := svc.PushKeys(ctx, &pb.PushKeysReq{Id: "k1", Keys: []string{"k"}, Operation: 1000, Frame: frame("k1")})
			return r.GetDelivered(), err
		}, 1},
		{"keys repeat", func() (int32, error) {
			r, err := svc.PushKeys(ctx, &pb.PushKeysReq{Id: "k1", Keys: []string{"k"}, Operation: 1000, Frame: frame("k1")})
			return r.GetDelivered(), err
		}, 0},
		{"keys without id", func() (int32, error) {
			r, err := svc.PushKeys(ctx, &pb.PushKeysReq{Keys: []string{"k"}, Operation: 1000, Frame: frame("noid")})
			return r.GetDelivered(), err
		}, 1},
		{"keys without id again", func() (int32, error) {
			r, err := svc.PushKeys(ctx, &pb.PushKeysReq{Keys: []string{"k"}, Operation: 1000, Frame: frame("noid")})
			return r.GetDelivered(), err
		}, 1},
		{"room batch", func() (int32, error) {
			r, err := svc.BroadcastRoom(ctx, &pb.BroadcastRoomReq{Ids: []string{"r1", "r2"}, Room: "r", Frames: run("r1", "r2")})
			return r.GetDelivered(), err
		}, 1},
		{"room batch partly repeated", func() (int32, error) {
			r, err := svc.BroadcastRoom(ctx, &pb.BroadcastRoomReq{Ids: []string{"r2", "r3", "r1"}, Room: "r", Frames: run("r2", "r3", "r1")})
			return r.GetDelivered(), err
		}, 1},
		{"room batch all repeated", func() (int32, error) {
			r, err := svc.BroadcastRoom(ctx, &pb.BroadcastRoomReq{Ids: []string{"r3"}, Room: "r", Frames: run("r3")})
			return r.GetDelivered(), err
		}, 0},
		{"broadcast", func() (int32, error) {
			r, err := svc.Broadcast(ctx, &pb.BroadcastReq{Id: "b1", Operation: 1000, Frame: frame("b1")})
			return r.GetDelivered(), err
		}, 1},
		{"broadcast repeat", func() (int32, error) {
			r, err := svc.Broadcast(ctx, &pb.BroadcastReq{Id: "b1", Operation: 1000, Frame: frame("b1")})
			return r.GetDelivered(), err
		}, 0},
	}
	for _, st := range steps {
		n, err := st.call()
		if err != nil || n != st.delivered {
			t.Fatalf("%s: delivered %d, %v; want %d", st.name, n, err, st.delivered)
		}
	}
	want := []string{"k1", "noid", "noid", "r1", "r2", "r3", "b1"}
	if got := pushBodies(c.waitFrames(t, 1+len(want))); !slices.Equal(got, want) {
		t.Fatalf("client got %q, want %q", got, want)
	}
	if v := metricValue(t, th.metrics.Repeats); v != 5 {
		t.Errorf("repeats = %v, want 5", v)
	}
	// Ids that do not match the frames, once a repeat needs them, are refused.
	_, err := svc.BroadcastRoom(ctx, &pb.BroadcastRoomReq{Ids: []string{"r1", "new"}, Room: "r", Frames: run("x")})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("mismatched ids: %v, want InvalidArgument", err)
	}
}

// TestBroadcastQueueBound: broadcasts beyond maxQueuedBroadcasts waiting
// behind a paced one are refused, and a refused push id is not taken for a
// repeat when the job retries it.
func TestBroadcastQueueBound(t *testing.T) {
	th := newTestHub(t, func(c *Config) { c.DedupWindow = time.Minute })
	th.connectFake(t, "", protocol.Auth{Key: "k", Accepts: []int32{1000}})
	th.connectFake(t, "", protocol.Auth{Key: "k2", Accepts: []int32{1000}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends the paced broadcast
	svc := NewService(ctx, th.Hub)
	frame := protocol.EncodePush(1000, []byte("x"))
	// One session now, the next in an hour: the queue stays busy.
	if _, err := svc.Broadcast(ctx, &pb.BroadcastReq{Id: "slow", Operation: 1000, Frame: frame, Speed: 1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the paced broadcast under way", func() bool {
		th.bcast.mu.Lock()
		defer th.bcast.mu.Unlock()
		return th.bcast.running && len(th.bcast.queue) == 0
	})
	for i := range maxQueuedBroadcasts {
		if _, err := svc.Broadcast(ctx, &pb.BroadcastReq{Id: fmt.Sprint("q", i), Operation: 1000, Frame: frame}); err != nil {
			t.Fatalf("broadcast %d refused: %v", i, err)
		}
	}
	_, err := svc.Broadcast(ctx, &pb.BroadcastReq{Id: "over", Operation: 1000, Frame: frame})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("broadcast over the bound: %v, want ResourceExhausted", err)
	}
	if th.dedup.seen("over") {
		t.Error("the refused push id was remembered: the job's retry would be dropped as a repeat")
	}
}
