package store

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable wraps backend failures; logic maps it to 503.
var ErrUnavailable = errors.New("store: unavailable")

// ErrMoved is Refresh's answer when the session's key is bound to another
// node: a newer connection with the key is there, and this one is replaced.
var ErrMoved = errors.New("store: key bound to another node")

// Identified reports whether mid names a user. As in goim, a connection
// that authenticates with mid 0 (or below) is anonymous: it is bound by key
// only, and reached by key, room or broadcast, never by mid.
func Identified(mid int64) bool { return mid > 0 }

// Session is one bound connection.
type Session struct {
	Mid  int64
	Key  string
	Node string
	Room string
}

// Sessions maps users and keys to the cloud node that holds them. Safe for
// concurrent use.
type Sessions interface {
	// Bind records s (mid -> key -> node, key -> mid and node) with the
	// store's TTL; an anonymous mid (see Identified) gets no mid binding. A
	// key that another mid's session held leaves that mid's keys, so a key
	// reused by another user never carries the previous user's pushes.
	Bind(ctx context.Context, s Session) error
	// Refresh extends the TTL of s's bindings (heartbeat); it re-binds if the
	// bindings expired meanwhile. If the key is bound to another node or
	// another mid it changes nothing and returns ErrMoved.
	Refresh(ctx context.Context, s Session) error
	// Unbind removes s's bindings only where they still point at s.Node
	// (compare-and-delete; the key binding also only if it is s.Mid's). It
	// reports whether the key binding was removed.
	Unbind(ctx context.Context, s Session) (bool, error)
	// UnbindMany is Unbind for each of ss, in as few round trips as the
	// backend allows (a mass disconnect).
	UnbindMany(ctx context.Context, ss []Session) error
	// KeysByMids returns, per mid, its keys and the node each is bound to.
	// Mids without sessions are absent.
	KeysByMids(ctx context.Context, mids []int64) (map[int64]map[string]string, error)
	// NodesByKeys returns the node of each bound key; unknown keys are absent.
	NodesByKeys(ctx context.Context, keys []string) (map[string]string, error)
}

// NodeOnline is one cloud node's report of its rooms.
type NodeOnline struct {
	Node  string
	Conns int64
	IPs   int64
	Rooms map[string]int32
}

// Online holds each cloud node's room counts. Safe for concurrent use.
type Online interface {
	// ReportOnline replaces node's report; it expires after ttl unless renewed.
	ReportOnline(ctx context.Context, r NodeOnline, ttl time.Duration) error
	// AllOnline returns every unexpired report.
	AllOnline(ctx context.Context) ([]NodeOnline, error)
}
