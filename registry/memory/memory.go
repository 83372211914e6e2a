package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imcloud/imcloud/registry"
)

// Registry is an in-memory registry; see the package documentation.
type Registry struct {
	now func() time.Time

	mu      sync.Mutex
	nodes   map[string]map[string]registry.Node // role -> id -> node
	watches map[string]map[*watch]struct{}      // role -> active watches
}

// watch is one Watch call's channel.
type watch struct {
	ch chan []registry.Node // cap 1; closed when the watch ends
}

var (
	_ registry.Registrar = (*Registry)(nil)
	_ registry.Watcher   = (*Registry)(nil)
)

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		now:     time.Now,
		nodes:   make(map[string]map[string]registry.Node),
		watches: make(map[string]map[*watch]struct{}),
	}
}

// Register publishes n under n.Role and n.ID, stamping n.Updated. It returns
// an error wrapping registry.ErrDuplicateID if the id is already registered
// in that role.
func (r *Registry) Register(ctx context.Context, n registry.Node) error {
	if err := check(ctx, "register", n.Role, n.ID); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	byID := r.nodes[n.Role]
	if _, ok := byID[n.ID]; ok {
		return fmt.Errorf("registry/memory: register %s/%s: %w", n.Role, n.ID, registry.ErrDuplicateID)
	}
	if byID == nil {
		byID = make(map[string]registry.Node)
		r.nodes[n.Role] = byID
	}
	byID[n.ID] = r.stamp(n)
	r.publish(n.Role)
	return nil
}

// Update replaces the record of a registered node, stamping n.Updated. It
// returns an error wrapping registry.ErrNotRegistered if n is not registered.
func (r *Registry) Update(ctx context.Context, n registry.Node) error {
	if err := check(ctx, "update", n.Role, n.ID); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	byID := r.nodes[n.Role]
	if _, ok := byID[n.ID]; !ok {
		return fmt.Errorf("registry/memory: update %s/%s: %w", n.Role, n.ID, registry.ErrNotRegistered)
	}
	byID[n.ID] = r.stamp(n)
	r.publish(n.Role)
	return nil
}

// Deregister removes a node; an unknown node is not an error.
func (r *Registry) Deregister(ctx context.Context, role, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("registry/memory: deregister %s/%s: %w", role, id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	byID := r.nodes[role]
	if _, ok := byID[id]; !ok {
		return nil
	}
	delete(byID, id)
	if len(byID) == 0 {
		delete(r.nodes, role)
	}
	r.publish(role)
	return nil
}

// Nodes returns the nodes of role sorted by ID.
func (r *Registry) Nodes(ctx context.Context, role string) ([]registry.Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("registry/memory: nodes %s: %w", role, err)
	}
	if err := registry.CheckRole(role); err != nil {
		return nil, fmt.Errorf("registry/memory: nodes: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshot(role), nil
}

// Watch returns a channel that receives the nodes of role at once and after
// every change, until ctx ends; then it is closed.
func (r *Registry) Watch(ctx context.Context, role string) (<-chan []registry.Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("registry/memory: watch %s: %w", role, err)
	}
	if err := registry.CheckRole(role); err != nil {
		return nil, fmt.Errorf("registry/memory: watch: %w", err)
	}
	w := &watch{ch: make(chan []registry.Node, 1)}
	r.mu.Lock()
	defer r.mu.Unlock()
	w.ch <- r.snapshot(role)
	ws := r.watches[role]
	if ws == nil {
		ws = make(map[*watch]struct{})
		r.watches[role] = ws
	}
	ws[w] = struct{}{}
	context.AfterFunc(ctx, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(ws, w) // ws is still r.watches[role]: only an empty set is dropped
		if len(ws) == 0 {
			delete(r.watches, role)
		}
		close(w.ch)
	})
	return w.ch, nil
}

// stamp returns n with Updated set to now and Addrs copied, so the caller's
// slice is not shared.
func (r *Registry) stamp(n registry.Node) registry.Node {
	n.Updated = r.now().UnixMilli()
	n.Addrs = slices.Clone(n.Addrs)
	return n
}

// snapshot returns a deep copy of role's nodes sorted by ID. r.mu is held.
func (r *Registry) snapshot(role string) []registry.Node {
	byID := r.nodes[role]
	list := make([]registry.Node, 0, len(byID))
	for _, n := range byID {
		n.Addrs = slices.Clone(n.Addrs)
		list = append(list, n)
	}
	slices.SortFunc(list, func(a, b registry.Node) int { return strings.Compare(a.ID, b.ID) })
	return list
}

// publish sends role's current nodes to each of its watches, replacing a list
// the reader has not taken yet. r.mu is held, so no other send or close runs
// on these channels and the send after draining cannot block.
func (r *Registry) publish(role string) {
	for w := range r.watches[role] {
		select {
		case <-w.ch: // drop the stale list
		default:
		}
		w.ch <- r.snapshot(role)
	}
}

// check validates a node's identity and ctx before a write.
func check(ctx context.Context, op, role, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("registry/memory: %s %s/%s: %w", op, role, id, err)
	}
	if err := registry.CheckNode(role, id); err != nil {
		return fmt.Errorf("registry/memory: %s: %w", op, err)
	}
	return nil
}
