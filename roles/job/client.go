package job

import (
	"context"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/registry"
)

// CloudClient delivers to one cloud node. The hub's gRPC adapter satisfies
// it in process; GRPCDialer returns one for nodes in other processes.
type CloudClient interface {
	PushKeys(ctx context.Context, r *pb.PushKeysReq) (*pb.PushKeysReply, error)
	BroadcastRoom(ctx context.Context, r *pb.BroadcastRoomReq) (*pb.BroadcastRoomReply, error)
	Broadcast(ctx context.Context, r *pb.BroadcastReq) (*pb.BroadcastReply, error)
}

// Dialer returns a client for a node; the closer is called when the node
// leaves the registry (nil: nothing to close).
type Dialer func(ctx context.Context, n registry.Node) (CloudClient, io.Closer, error)

type grpcClient struct{ c pb.CloudClient }

func (g grpcClient) PushKeys(ctx context.Context, r *pb.PushKeysReq) (*pb.PushKeysReply, error) {
	return g.c.PushKeys(ctx, r)
}

func (g grpcClient) BroadcastRoom(ctx context.Context, r *pb.BroadcastRoomReq) (*pb.BroadcastRoomReply, error) {
	return g.c.BroadcastRoom(ctx, r)
}

func (g grpcClient) Broadcast(ctx context.Context, r *pb.BroadcastReq) (*pb.BroadcastReply, error) {
	return g.c.Broadcast(ctx, r)
}

// GRPCDialer dials nodes over gRPC (one connection per node).
func GRPCDialer(_ context.Context, n registry.Node) (CloudClient, io.Closer, error) {
	if n.GRPCAddr == "" {
		return nil, nil, fmt.Errorf("job: node %q has no grpc address", n.ID)
	}
	cc, err := grpc.NewClient(n.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("job: dial node %q at %s: %w", n.ID, n.GRPCAddr, err)
	}
	return grpcClient{pb.NewCloudClient(cc)}, cc, nil
}

// LocalDialer serves the node id self with local and dials the rest with next.
func LocalDialer(self string, local CloudClient, next Dialer) Dialer {
	return func(ctx context.Context, n registry.Node) (CloudClient, io.Closer, error) {
		if n.ID == self {
			return local, nil, nil
		}
		return next(ctx, n)
	}
}
