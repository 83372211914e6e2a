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
	if _, err := validFrames(r.GetFrame(), true); err != nil {
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
	n, err := validFrames(r.GetFrames(), false)
	if err != nil {
		return nil, err
	}
	frames := r.GetFrames()
	if ids := r.GetIds(); len(ids) > 0 {
		if n != len(ids) {
			return nil, status.Errorf(codes.InvalidArgument, "room batch: %d ids for %d frames", len(ids), n)
		}
		frames = g.dropRepeats(ids, frames)
		if len(frames) == 0 {
			return &pb.BroadcastRoomReply{}, nil
		}
	}
	delivered := g.hub.PushRoom(r.GetRoom(), frames)
	return &pb.BroadcastRoomReply{Delivered: int32(delivered)}, nil
}

// Broadcast implements pb.CloudServer.
func (g *Service) Broadcast(_ context.Context, r *pb.BroadcastReq) (*pb.BroadcastReply, error) {
	if _, err := validFrames(r.GetFrame(), true); err != nil {
		return nil, err
	}
	if g.repeat(r.GetId()) {
		return &pb.BroadcastReply{}, nil
	}
	n, err := g.hub.Broadcast(g.ctx, r.GetOperation(), r.GetFrame(), int(r.GetSpeed()))
	if err != nil {
		g.hub.dedup.forget(r.GetId()) // the job's retry must not be taken for a repeat
		return nil, status.Error(codes.ResourceExhausted, err.Error())
	}
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
// malformed request cannot reach clients, and returns how many.
func validFrames(b []byte, single bool) (int, error) {
	if len(b) == 0 {
		return 0, status.Error(codes.InvalidArgument, "frame is required")
	}
	n := 0
	err := protocol.Split(b, func(protocol.Frame) error { n++; return nil })
	if err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "malformed frame: %v", err)
	}
	if single && n != 1 {
		return 0, status.Errorf(codes.InvalidArgument, "want one frame, got %d", n)
	}
	return n, nil
}

func (g *Service) repeat(id string) bool {
	if g.hub.dedup.seen(id) {
		g.hub.metrics.Repeats.Inc()
		return true
	}
	return false
}

// dropRepeats removes the frames of already delivered push ids from a room
// batch; ids[i] names the i-th frame, which the caller has checked. The
// common case, no repeat, returns frames untouched.
func (g *Service) dropRepeats(ids []string, frames []byte) []byte {
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
		return frames
	}
	out := make([]byte, 0, len(frames))
	i := 0
	_ = protocol.Split(frames, func(f protocol.Frame) error {
		if !repeat[i] {
			out = f.Append(out)
		}
		i++
		return nil
	})
	return out
}
