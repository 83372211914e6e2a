package job

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/registry"
	"github.com/imcloud/imcloud/roles/cloud"
	"github.com/imcloud/imcloud/store/memory"
	"github.com/imcloud/imcloud/transport/client"
)

// realNode is a cloud hub serving goim TCP clients and the Cloud gRPC
// service on loopback.
type realNode struct {
	hub      *cloud.Hub
	svc      *cloud.Service
	tcpAddr  string
	grpcAddr string
}

func startRealNode(t *testing.T, id string) *realNode {
	t.Helper()
	hub, err := cloud.New(cloud.Config{
		NodeID: id, HandshakeTimeout: waitFor, HeartbeatTimeout: time.Minute, WriteTimeout: waitFor,
		MaxBody: protocol.DefaultMaxBody, SendQueue: 256, Buckets: 4,
	}, memory.New(time.Hour), zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc := cloud.NewService(ctx, hub)
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterCloudServer(srv, svc)
	served := make(chan struct{}, 2)
	go func() { _ = hub.ServeTCP(tcpLn); served <- struct{}{} }()
	go func() { _ = srv.Serve(grpcLn); served <- struct{}{} }()
	t.Cleanup(func() {
		_ = tcpLn.Close()
		srv.Stop()
		<-served
		<-served
		sctx, scancel := context.WithTimeout(context.Background(), waitFor)
		defer scancel()
		if err := hub.Shutdown(sctx); err != nil {
			t.Errorf("hub Shutdown: %v", err)
		}
		cancel()
	})
	return &realNode{hub: hub, svc: svc, tcpAddr: tcpLn.Addr().String(), grpcAddr: grpcLn.Addr().String()}
}

func dialRealClient(t *testing.T, addr string, a protocol.Auth) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Addr: addr, Auth: a, Timeout: waitFor})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func nextFrame(t *testing.T, c *client.Client) protocol.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	f, err := c.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return f
}

// TestWithRealHub wires a real hub as the CloudClient, in process through
// LocalDialer and over gRPC through GRPCDialer: key, room (batched) and
// broadcast pushes reach a goim client as the frames the job built.
func TestWithRealHub(t *testing.T) {
	tests := []struct {
		name string
		dial func(n *realNode) Dialer
	}{
		{"in process", func(n *realNode) Dialer {
			return LocalDialer("cloud-1", n.svc, func(context.Context, registry.Node) (CloudClient, io.Closer, error) {
				panic("only the local node is registered")
			})
		}},
		{"grpc", func(*realNode) Dialer { return GRPCDialer }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := startRealNode(t, "cloud-1")
			cl := newCluster()
			if err := cl.reg.Register(context.Background(), registry.Node{ID: "cloud-1", Role: registry.RoleCloud, GRPCAddr: node.grpcAddr}); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig()
			cfg.RoomBatchWindow = 20 * time.Millisecond
			j := startJob(t, cl, cfg, tt.dial(node))

			member := dialRealClient(t, node.tcpAddr, protocol.Auth{Mid: 1, Key: "member", RoomID: "live://1", Accepts: []int32{1000}})
			other := dialRealClient(t, node.tcpAddr, protocol.Auth{Mid: 2, Key: "other", Accepts: []int32{1001}})

			handle(t, j.Job, pushMsg("p1", "cloud-1", []string{"member", "nobody"}, 1000, "for member"))
			for i, body := range []string{"r0", "r1", "r2", "r3"} {
				handle(t, j.Job, roomMsg("room-"+body, "live://1", int32(2000+i), body))
			}
			handle(t, j.Job, broadcastMsg("b1", 1001, 0, "for 1001"))
			handle(t, j.Job, broadcastMsg("b2", 1000, 0, "for 1000"))

			want := []protocol.Frame{
				{Ver: 1, Op: 1000, Body: []byte("for member")},
				{Ver: 1, Op: 2000, Body: []byte("r0")},
				{Ver: 1, Op: 2001, Body: []byte("r1")},
				{Ver: 1, Op: 2002, Body: []byte("r2")},
				{Ver: 1, Op: 2003, Body: []byte("r3")},
			}
			// The broadcasts may overtake the batched room messages (they
			// are not held for the window); check them separately.
			var got []protocol.Frame
			var bc []string
			for len(got) < len(want) || len(bc) < 1 {
				f := nextFrame(t, member)
				if f.Op == 1000 && string(f.Body) == "for 1000" {
					bc = append(bc, string(f.Body))
					continue
				}
				got = append(got, f)
			}
			for i := range want {
				if got[i].Op != want[i].Op || got[i].Ver != want[i].Ver || got[i].Seq != 0 || string(got[i].Body) != string(want[i].Body) {
					t.Errorf("member frame %d = %v, want %v", i, got[i], want[i])
				}
			}
			if f := nextFrame(t, other); f.Op != 1001 || string(f.Body) != "for 1001" {
				t.Errorf("other got %v, want only the 1001 broadcast", f)
			}
		})
	}
}
