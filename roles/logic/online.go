package logic

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/protocol"
)

// maxTop bounds online/top's limit.
const maxTop = 1000

// roomCount is one entry of online/top.
type roomCount struct {
	RoomID string `json:"room_id"` // without the type
	Count  int32  `json:"count"`
}

// onlineTotal is the data of online/total.
type onlineTotal struct {
	ConnCount int64 `json:"conn_count"`
	IPCount   int64 `json:"ip_count"`
}

// snapshot returns the online figures or a 503.
func (l *Logic) snapshot(ctx context.Context) (Snapshot, error) {
	snap, err := l.online.Snapshot(ctx)
	if err != nil {
		return Snapshot{}, unavailable(backendOnline, err)
	}
	return snap, nil
}

// snapshotAfterPush returns the online figures for a push's answer; a
// failure is logged, not answered, since the push is already published.
func (l *Logic) snapshotAfterPush(ctx context.Context, kind string) (Snapshot, bool) {
	snap, err := l.online.Snapshot(ctx)
	if err != nil {
		l.figuresFailed(kind, err)
		return Snapshot{}, false
	}
	return snap, true
}

// figuresFailed logs that a push's answer lacks its count, thinned out
// (logthin): while the store is down every room push would log it.
func (l *Logic) figuresFailed(route string, err error) {
	l.figuresLog.Log(l.log, zap.WarnLevel, l.now(), "online figures unavailable for a push answer (it answers 0)",
		zap.String("route", route), zap.Error(err))
}

// roomCountAfterPush is the member count a room push answers with: asked
// of the source directly when it can count one room cheaply (a whole
// snapshot per push would cost more than the push).
func (l *Logic) roomCountAfterPush(ctx context.Context, room string) int64 {
	if lc, ok := l.online.(LiveCounts); ok {
		n, err := lc.RoomCount(ctx, room)
		if err != nil {
			l.figuresFailed("push/room", err)
			return 0
		}
		return int64(n)
	}
	snap, _ := l.snapshotAfterPush(ctx, "push/room")
	return int64(snap.Rooms[room])
}

// connCountAfterPush is the connection count a broadcast answers with.
func (l *Logic) connCountAfterPush(ctx context.Context) int64 {
	if lc, ok := l.online.(LiveCounts); ok {
		n, err := lc.ConnCount(ctx)
		if err != nil {
			l.figuresFailed("push/all", err)
			return 0
		}
		return n
	}
	snap, _ := l.snapshotAfterPush(ctx, "push/all")
	return snap.Conns
}

// onlineTop answers the most populated rooms of a type:
// GET online/top?type=&limit= -> [{"room_id","count"}], count descending,
// then room id ascending.
func (l *Logic) onlineTop(_ http.ResponseWriter, r *http.Request, _ *route) (any, error) {
	p, err := queryParams(r)
	if err != nil {
		return nil, err
	}
	typ, err := p.required("type")
	if err != nil {
		return nil, err
	}
	limit, err := p.intParam("limit", true, 0, 1, maxTop, "an integer from 1 to "+strconv.Itoa(maxTop))
	if err != nil {
		return nil, err
	}
	if err := protocol.ValidRoom(protocol.RoomID(typ, "")); err != nil {
		return nil, badRequest("type: %v", err) // no room could be of it
	}
	snap, err := l.snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	prefix := protocol.RoomID(typ, "")
	top := []roomCount{}
	for id, n := range snap.Rooms {
		if room, ok := strings.CutPrefix(id, prefix); ok && n > 0 {
			top = append(top, roomCount{RoomID: room, Count: n})
		}
	}
	slices.SortFunc(top, func(a, b roomCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.RoomID, b.RoomID))
	})
	if len(top) > int(limit) {
		top = top[:limit]
	}
	return top, nil
}

// onlineRoom answers the counts of rooms of a type:
// GET online/room?type=&rooms= -> {"<room>":count}, 0 for unknown rooms.
func (l *Logic) onlineRoom(_ http.ResponseWriter, r *http.Request, _ *route) (any, error) {
	p, err := queryParams(r)
	if err != nil {
		return nil, err
	}
	typ, err := p.required("type")
	if err != nil {
		return nil, err
	}
	rooms, err := p.strings("rooms", l.cfg.MaxIDs, protocol.MaxRoomLen)
	if err != nil {
		return nil, err
	}
	for _, room := range rooms {
		// Each is a key of the answer: JSON keys are UTF-8.
		if err := protocol.ValidRoom(protocol.RoomID(typ, room)); err != nil {
			return nil, badRequest("type and rooms: %s: %v", quote(room), err)
		}
	}
	snap, err := l.snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int32, len(rooms))
	for _, room := range rooms {
		counts[room] = snap.Rooms[protocol.RoomID(typ, room)]
	}
	return counts, nil
}

// onlineTotal answers the cluster's connection and IP counts:
// GET online/total -> {"conn_count","ip_count"}.
func (l *Logic) onlineTotal(_ http.ResponseWriter, r *http.Request, _ *route) (any, error) {
	snap, err := l.snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	return onlineTotal{ConnCount: snap.Conns, IPCount: snap.IPs}, nil
}
