package logic

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue"
)

// pushAnswer is the data of a successful push.
type pushAnswer struct {
	ID       string `json:"id"`
	Sessions int64  `json:"sessions"` // sessions targeted
}

// pushKeys pushes to session keys: POST push/keys?operation=&keys=.
func (l *Logic) pushKeys(w http.ResponseWriter, r *http.Request, rt *route) (any, error) {
	p, msg, err := l.pushInput(w, r, rt)
	if err != nil {
		return nil, err
	}
	op, err := p.operation(rt)
	if err != nil {
		return nil, err
	}
	keys, err := p.strings("keys", l.cfg.MaxIDs, protocol.MaxKeyLen)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	bound, err := l.sessions.NodesByKeys(ctx, keys)
	if err != nil {
		return nil, unavailable(backendSessions, err)
	}
	var byNode map[string][]string
	if len(bound) > 0 {
		live, err := l.liveNodes(ctx)
		if err != nil {
			return nil, err
		}
		byNode = make(map[string][]string)
		for _, key := range keys {
			if node, ok := bound[key]; ok && live.has(node) {
				byNode[node] = append(byNode[node], key)
			}
		}
	}
	id, err := l.pushID(p)
	if err != nil {
		return nil, err
	}
	return l.publishKeys(ctx, id, op, msg, byNode)
}

// pushMids pushes to every session of users: POST push/mids?operation=&mids=.
func (l *Logic) pushMids(w http.ResponseWriter, r *http.Request, rt *route) (any, error) {
	p, msg, err := l.pushInput(w, r, rt)
	if err != nil {
		return nil, err
	}
	op, err := p.operation(rt)
	if err != nil {
		return nil, err
	}
	mids, err := p.userIDs("mids", l.cfg.MaxIDs)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	var bound map[int64]map[string]string
	if len(mids) > 0 {
		if bound, err = l.sessions.KeysByMids(ctx, mids); err != nil {
			return nil, unavailable(backendSessions, err)
		}
	}
	var byNode map[string][]string
	if len(bound) > 0 {
		live, err := l.liveNodes(ctx)
		if err != nil {
			return nil, err
		}
		byNode = make(map[string][]string)
		for _, keys := range bound {
			for key, node := range keys {
				if live.has(node) {
					byNode[node] = append(byNode[node], key)
				}
			}
		}
	}
	id, err := l.pushID(p)
	if err != nil {
		return nil, err
	}
	return l.publishKeys(ctx, id, op, msg, byNode)
}

// publishKeys publishes one PUSH message per node, in node order, keys
// sorted, all with push id id. If a publish fails the earlier ones stand:
// the caller gets a 503 that says so, and a retry with the same id is not
// delivered twice by those nodes (see queueFailed).
func (l *Logic) publishKeys(ctx context.Context, id string, op int32, msg []byte, byNode map[string][]string) (any, error) {
	now := l.now()
	nodes := make([]string, 0, len(byNode))
	var n int64
	for node, keys := range byNode {
		nodes = append(nodes, node)
		n += int64(len(keys))
		slices.Sort(keys) // one message for one binding, whatever the map order
	}
	slices.Sort(nodes)
	for i, node := range nodes {
		m := &pb.PushMsg{
			Version:   1,
			Id:        id,
			CreatedAt: now.UnixMilli(),
			Type:      pb.PushMsg_PUSH,
			Operation: op,
			Server:    node,
			Keys:      byNode[node],
			Msg:       msg,
		}
		if err := l.producer.Publish(ctx, m); err != nil {
			return nil, queueFailed(err, id, i > 0)
		}
	}
	return pushAnswer{ID: id, Sessions: n}, nil
}

// pushRoom pushes to a room: POST push/room?operation=&type=&room=. It
// answers the room's connection count; the push stands even if the count
// cannot be had (it is then 0 and the failure logged).
func (l *Logic) pushRoom(w http.ResponseWriter, r *http.Request, rt *route) (any, error) {
	p, msg, err := l.pushInput(w, r, rt)
	if err != nil {
		return nil, err
	}
	op, err := p.operation(rt)
	if err != nil {
		return nil, err
	}
	room, err := p.room()
	if err != nil {
		return nil, err
	}
	id, err := l.pushID(p)
	if err != nil {
		return nil, err
	}
	m := &pb.PushMsg{
		Version:   1,
		Id:        id,
		CreatedAt: l.now().UnixMilli(),
		Type:      pb.PushMsg_ROOM,
		Operation: op,
		Room:      room,
		Msg:       msg,
	}
	if err := l.producer.Publish(r.Context(), m); err != nil {
		return nil, queueFailed(err, m.Id, false)
	}
	a := pushAnswer{ID: m.Id}
	a.Sessions = l.roomCountAfterPush(r.Context(), room)
	return a, nil
}

// pushAll pushes to every session: POST push/all?operation=&speed=. It
// answers the cluster's connection count (0 if it cannot be had).
func (l *Logic) pushAll(w http.ResponseWriter, r *http.Request, rt *route) (any, error) {
	p, msg, err := l.pushInput(w, r, rt)
	if err != nil {
		return nil, err
	}
	op, err := p.operation(rt)
	if err != nil {
		return nil, err
	}
	speed, err := p.intParam("speed", false, 0, 0, math.MaxInt32, "an integer >= 0")
	if err != nil {
		return nil, err
	}
	id, err := l.pushID(p)
	if err != nil {
		return nil, err
	}
	m := &pb.PushMsg{
		Version:   1,
		Id:        id,
		CreatedAt: l.now().UnixMilli(),
		Type:      pb.PushMsg_BROADCAST,
		Operation: op,
		Speed:     int32(speed),
		Msg:       msg,
	}
	if err := l.producer.Publish(r.Context(), m); err != nil {
		return nil, queueFailed(err, m.Id, false)
	}
	a := pushAnswer{ID: m.Id}
	a.Sessions = l.connCountAfterPush(r.Context())
	return a, nil
}

// maxPushID bounds a push id given by the caller.
const maxPushID = 64

// pushID is the push's id: the caller's id parameter, which makes a retry
// idempotent (cloud nodes drop repeats of an id within cloud.dedup_window),
// or a fresh one.
func (l *Logic) pushID(p *params) (string, error) {
	id, err := p.value("id")
	if err != nil {
		return "", err
	}
	if id == "" {
		return l.ids.next(l.now()), nil
	}
	if len(id) > maxPushID || strings.IndexFunc(id, func(r rune) bool { return !idRune(r) }) >= 0 {
		return "", badRequest("id: at most %d letters, digits and . _ : - (got %s)", maxPushID, quote(id))
	}
	return id, nil
}

func idRune(r rune) bool {
	return r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-", r))
}

// queueFailed is the 503 of a failed publish of push id. A publish that
// timed out may still reach the queue (the broker may hold the message and
// answer late), and the earlier messages of a push to several nodes stand:
// then the answer says the push may still be delivered and how to retry
// it without a duplicate.
func queueFailed(err error, id string, partial bool) *httpError {
	if errors.Is(err, queue.ErrTooLarge) {
		e := &httpError{status: http.StatusRequestEntityTooLarge, err: err,
			msg: "push too large for the push queue: send a shorter message or fewer keys per request"}
		if partial {
			e.msg += fmt.Sprintf("; push %s was queued for some of the keys' nodes already", id)
		}
		return e
	}
	e := unavailable(backendQueue, err)
	if partial || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		e.msg += fmt.Sprintf("; push %s may still be delivered: retry with id=%s to have it delivered once", id, id)
	}
	return e
}
