package cloud

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/protocol/pb"
)

// Service adapts the hub to the Cloud gRPC service. Job uses it directly in
// process (it has the same methods as job's CloudClient) and over gRPC for
// nodes in other processes.
type Service struct {
	pb.UnimplementedCloudServer
	hub *Hub
	// ctx bounds background work such as paced broadcasts; it ends at shutdown.
	ctx context.Context
}

// NewService returns the adapter; background work stops when ctx ends.
func NewService(ctx context.Context, h *Hub) *Service { return &Service{hub: h, ctx: ctx} }

// PushKeys implements pb.CloudServer.
func (g *Service) PushKeys(_ context.Context, r *pb.PushKeysReq) (*pb.PushKeysReply, error) {
	if err := validFrames(r.GetFrame(), true); err != nil {
		return nil, err
	}
	if g.repeat(r.GetId()) {
		return &pb.PushKeysReply{}, nil
	}
	n := g.hub.PushKeys(r.GetKeys(), r.GetOperation(), r.GetFrame())
	return &pb.PushKeysReply{Delivered: int32(n)}, nil
}

// BroadcastRoom implements pb.CloudServer.
func (g *Service) BroadcastRoom(_ context.Context, r *pb.BroadcastRoomReq) (*pb.BroadcastRoomReply, error) {
	if r.GetRoom() == "" {
		return nil, status.Error(codes.InvalidArgument, "room is required")
	}
	if err := validFrames(r.GetFrames(), false); err != nil {
		return nil, err
	}
	frames := r.GetFrames()
	if ids := r.GetIds(); len(ids) > 0 {
		var err error
		if frames, err = g.dropRepeats(ids, frames); err != nil {
			return nil, err
		}
		if len(frames) == 0 {
			return &pb.BroadcastRoomReply{}, nil
		}
	}
	n := g.hub.PushRoom(r.GetRoom(), frames)
	return &pb.BroadcastRoomReply{Delivered: int32(n)}, nil
}

// Broadcast implements pb.CloudServer.
func (g *Service) Broadcast(_ context.Context, r *pb.BroadcastReq) (*pb.BroadcastReply, error) {
	if err := validFrames(r.GetFrame(), true); err != nil {
		return nil, err
	}
	if g.repeat(r.GetId()) {
		return &pb.BroadcastReply{}, nil
	}
	n := g.hub.Broadcast(g.ctx, r.GetOperation(), r.GetFrame(), int(r.GetSpeed()))
	return &pb.BroadcastReply{Delivered: int32(n)}, nil
}

// Rooms implements pb.CloudServer.
func (g *Service) Rooms(context.Context, *pb.RoomsReq) (*pb.RoomsReply, error) {
	return &pb.RoomsReply{Rooms: g.hub.Rooms()}, nil
}

// Online implements pb.CloudServer.
func (g *Service) Online(context.Context, *pb.OnlineReq) (*pb.OnlineReply, error) {
	conns, ips := g.hub.Online()
	return &pb.OnlineReply{Conns: conns, Ips: ips, Rooms: g.hub.Rooms()}, nil
}

// validFrames checks that b is one (single) or more complete frames, so a
// malformed request cannot reach clients.
func validFrames(b []byte, single bool) error {
	if len(b) == 0 {
		return status.Error(codes.InvalidArgument, "frame is required")
	}
	n := 0
	err := protocol.Split(b, func(protocol.Frame) error { n++; return nil })
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "malformed frame: %v", err)
	}
	if single && n != 1 {
		return status.Errorf(codes.InvalidArgument, "want one frame, got %d", n)
	}
	return nil
}

func (g *Service) repeat(id string) bool {
	if g.hub.dedup.seen(id) {
		g.hub.metrics.Repeats.Inc()
		return true
	}
	return false
}

// dropRepeats removes the frames of already delivered push ids from a room
// batch; ids[i] names the i-th frame. The common case, no repeat, returns
// frames untouched.
func (g *Service) dropRepeats(ids []string, frames []byte) ([]byte, error) {
	var repeat []bool
	for i, id := range ids {
		if g.repeat(id) {
			if repeat == nil {
				repeat = make([]bool, len(ids))
			}
			repeat[i] = true
		}
	}
	if repeat == nil {
		return frames, nil
	}
	out := make([]byte, 0, len(frames))
	i := 0
	err := protocol.Split(frames, func(f protocol.Frame) error {
		if i >= len(ids) || !repeat[i] {
			out = f.Append(out)
		}
		i++
		return nil
	})
	if err != nil || i != len(ids) {
		return nil, status.Errorf(codes.InvalidArgument, "room batch: %d ids for its frames (%v)", len(ids), err)
	}
	return out, nil
}
