package memory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imcloud/imcloud/store"
)

// DefaultTTL is the binding TTL New uses when given none (DESIGN: 20 min).
const DefaultTTL = 20 * time.Minute

// minSweepEvery bounds how often writes sweep the whole store.
const minSweepEvery = time.Second

// Store is an in-memory session store; see the package documentation.
type Store struct {
	ttl        time.Duration
	sweepEvery time.Duration
	now        func() time.Time

	mu        sync.RWMutex
	keys      map[string]binding           // key -> mid and node
	mids      map[int64]map[string]binding // mid -> key -> node (mid > 0)
	online    map[string]report            // node -> latest report
	nextSweep time.Time
}

// binding is where a key lives until it expires. In keys it also names the
// user the key belongs to, so a key taken over by another user can be
// dropped from the previous one's devices.
type binding struct {
	node    string
	mid     int64
	expires time.Time
}

// report is one node's online report until it expires.
type report struct {
	r       store.NodeOnline
	expires time.Time
}

var (
	_ store.Sessions = (*Store)(nil)
	_ store.Online   = (*Store)(nil)
)

// New returns an empty store whose bindings expire ttl after their last Bind
// or Refresh; a ttl of zero or less means DefaultTTL.
func New(ttl time.Duration) *Store {
	return NewWithClock(ttl, time.Now)
}

// NewWithClock is New with now as the clock, for tests; a nil now means
// time.Now.
func NewWithClock(ttl time.Duration, now func() time.Time) *Store {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Store{
		ttl:        ttl,
		sweepEvery: max(ttl, minSweepEvery),
		now:        now,
		keys:       make(map[string]binding),
		mids:       make(map[int64]map[string]binding),
		online:     make(map[string]report),
	}
}

// Bind records s (mid -> key -> node and key -> node) for the store's TTL,
// replacing whatever the key was bound to; if another user's session held
// the key, the key leaves that user's devices.
func (s *Store) Bind(ctx context.Context, sess store.Session) error {
	if err := checkSession(ctx, "bind", sess); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.maybeSweep(now)
	if old, ok := s.keys[sess.Key]; ok && old.mid != sess.Mid {
		s.dropMidKey(old.mid, sess.Key, old.node)
	}
	b := binding{node: sess.Node, mid: sess.Mid, expires: now.Add(s.ttl)}
	s.keys[sess.Key] = b
	if store.Identified(sess.Mid) {
		s.midKeys(sess.Mid)[sess.Key] = b
	}
	return nil
}

// Refresh renews s's bindings for the store's TTL where they point at
// s.Node, and re-binds them where they are missing or expired. A key
// another node holds is left alone: store.ErrMoved.
func (s *Store) Refresh(ctx context.Context, sess store.Session) error {
	if err := checkSession(ctx, "refresh", sess); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.maybeSweep(now)
	b := binding{node: sess.Node, mid: sess.Mid, expires: now.Add(s.ttl)}
	if old, ok := s.keys[sess.Key]; ok && !old.expired(now) && (old.node != sess.Node || old.mid != sess.Mid) {
		return fmt.Errorf("store/memory: refresh %q of mid %d on %s: %w", sess.Key, sess.Mid, sess.Node, store.ErrMoved)
	}
	s.keys[sess.Key] = b
	if !store.Identified(sess.Mid) {
		return nil
	}
	byKey := s.midKeys(sess.Mid)
	if old, ok := byKey[sess.Key]; !ok || old.expired(now) || old.node == sess.Node {
		byKey[sess.Key] = b
	}
	return nil
}

// Unbind removes s's bindings where they still point at s.Node and reports
// whether an unexpired key binding was removed.
func (s *Store) Unbind(ctx context.Context, sess store.Session) (bool, error) {
	if err := checkSession(ctx, "unbind", sess); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.maybeSweep(now)
	removed := false
	if old, ok := s.keys[sess.Key]; ok && old.node == sess.Node && old.mid == sess.Mid {
		delete(s.keys, sess.Key)
		removed = !old.expired(now)
	}
	s.dropMidKey(sess.Mid, sess.Key, sess.Node)
	return removed, nil
}

// dropMidKey deletes mid's binding of key if it points at node. s.mu is
// held for writing.
func (s *Store) dropMidKey(mid int64, key, node string) {
	byKey := s.mids[mid]
	if old, ok := byKey[key]; ok && old.node == node {
		delete(byKey, key)
		if len(byKey) == 0 {
			delete(s.mids, mid)
		}
	}
}

// UnbindMany is Unbind for each of ss (a batch of disconnects).
func (s *Store) UnbindMany(ctx context.Context, ss []store.Session) error {
	for _, sess := range ss {
		if _, err := s.Unbind(ctx, sess); err != nil {
			return err
		}
	}
	return nil
}

// KeysByMids returns, per mid, its unexpired keys and their nodes; mids
// without any are absent.
func (s *Store) KeysByMids(ctx context.Context, mids []int64) (map[int64]map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store/memory: keys by mids: %w", err)
	}
	out := make(map[int64]map[string]string, len(mids))
	stale := false
	s.mu.RLock()
	now := s.now()
	for _, mid := range mids {
		for key, b := range s.mids[mid] {
			if b.expired(now) {
				stale = true
				continue
			}
			keys := out[mid]
			if keys == nil {
				keys = make(map[string]string, len(s.mids[mid]))
				out[mid] = keys
			}
			keys[key] = b.node
		}
	}
	s.mu.RUnlock()
	if stale {
		s.mu.Lock()
		for _, mid := range mids {
			s.purgeMid(mid, now)
		}
		s.mu.Unlock()
	}
	return out, nil
}

// NodesByKeys returns the node of each bound, unexpired key; others are
// absent.
func (s *Store) NodesByKeys(ctx context.Context, keys []string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store/memory: nodes by keys: %w", err)
	}
	out := make(map[string]string, len(keys))
	stale := false
	s.mu.RLock()
	now := s.now()
	for _, key := range keys {
		b, ok := s.keys[key]
		switch {
		case !ok:
		case b.expired(now):
			stale = true
		default:
			out[key] = b.node
		}
	}
	s.mu.RUnlock()
	if stale {
		s.mu.Lock()
		for _, key := range keys {
			if b, ok := s.keys[key]; ok && b.expired(now) {
				delete(s.keys, key)
			}
		}
		s.mu.Unlock()
	}
	return out, nil
}

// ReportOnline replaces r.Node's report; it expires after ttl unless
// renewed. The store keeps a copy of r.Rooms.
func (s *Store) ReportOnline(ctx context.Context, r store.NodeOnline, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/memory: report online %s: %w", r.Node, err)
	}
	if r.Node == "" {
		return errors.New("store/memory: report online: report needs a node")
	}
	if ttl <= 0 {
		return fmt.Errorf("store/memory: report online %s: ttl %v is not positive", r.Node, ttl)
	}
	r.Rooms = maps.Clone(r.Rooms)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.maybeSweep(now)
	s.online[r.Node] = report{r: r, expires: now.Add(ttl)}
	return nil
}

// AllOnline returns every unexpired report, sorted by node.
func (s *Store) AllOnline(ctx context.Context) ([]store.NodeOnline, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store/memory: all online: %w", err)
	}
	stale := false
	s.mu.RLock()
	now := s.now()
	out := make([]store.NodeOnline, 0, len(s.online))
	for _, rep := range s.online {
		if !now.Before(rep.expires) {
			stale = true
			continue
		}
		r := rep.r
		r.Rooms = maps.Clone(r.Rooms)
		out = append(out, r)
	}
	s.mu.RUnlock()
	if stale {
		s.mu.Lock()
		s.purgeOnline(now)
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b store.NodeOnline) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}

// expired reports whether b has expired at now.
func (b binding) expired(now time.Time) bool { return !now.Before(b.expires) }

// midKeys returns mid's key map, creating it. s.mu is held for writing.
func (s *Store) midKeys(mid int64) map[string]binding {
	byKey := s.mids[mid]
	if byKey == nil {
		byKey = make(map[string]binding)
		s.mids[mid] = byKey
	}
	return byKey
}

// purgeMid deletes mid's entries expired at now. s.mu is held for writing.
func (s *Store) purgeMid(mid int64, now time.Time) {
	byKey := s.mids[mid]
	if byKey == nil {
		return
	}
	maps.DeleteFunc(byKey, func(_ string, b binding) bool { return b.expired(now) })
	if len(byKey) == 0 {
		delete(s.mids, mid)
	}
}

// purgeOnline deletes reports expired at now. s.mu is held for writing.
func (s *Store) purgeOnline(now time.Time) {
	maps.DeleteFunc(s.online, func(_ string, r report) bool { return !now.Before(r.expires) })
}

// maybeSweep frees every expired entry once per sweep interval. s.mu is held
// for writing.
func (s *Store) maybeSweep(now time.Time) {
	if now.Before(s.nextSweep) {
		return
	}
	s.nextSweep = now.Add(s.sweepEvery)
	maps.DeleteFunc(s.keys, func(_ string, b binding) bool { return b.expired(now) })
	for mid := range s.mids {
		s.purgeMid(mid, now)
	}
	s.purgeOnline(now)
}

// checkSession validates ctx and s before a write.
func checkSession(ctx context.Context, op string, s store.Session) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/memory: %s %q: %w", op, s.Key, err)
	}
	if s.Key == "" || s.Node == "" {
		return fmt.Errorf("store/memory: %s: session of mid %d needs a key and a node", op, s.Mid)
	}
	return nil
}
