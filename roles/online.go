package roles

import (
	"context"

	"github.com/imcloud/imcloud/roles/cloud"
	"github.com/imcloud/imcloud/roles/logic"
	"github.com/imcloud/imcloud/store"
)

// hubOnline answers online figures from the hub in this process.
type hubOnline struct{ hub *cloud.Hub }

func (h hubOnline) Snapshot(context.Context) (logic.Snapshot, error) {
	conns, ips := h.hub.Online()
	return logic.Snapshot{Conns: conns, IPs: ips, Rooms: h.hub.Rooms()}, nil
}

// storeOnline sums every cloud node's latest report in the store.
type storeOnline struct{ online store.Online }

func (s storeOnline) Snapshot(ctx context.Context) (logic.Snapshot, error) {
	reports, err := s.online.AllOnline(ctx)
	if err != nil {
		return logic.Snapshot{}, err
	}
	out := logic.Snapshot{Rooms: map[string]int32{}}
	for _, r := range reports {
		out.Conns += r.Conns
		out.IPs += r.IPs
		for room, n := range r.Rooms {
			out.Rooms[room] += n
		}
	}
	return out, nil
}
