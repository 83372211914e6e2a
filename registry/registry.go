package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Roles a node registers under.
const RoleCloud = "cloud"

// ErrDuplicateID is returned when a node id is already registered by a live
// node (or a lease that has not expired yet).
var ErrDuplicateID = errors.New("registry: node id already registered")

// ErrNotRegistered is returned by Update for a node that is not registered.
var ErrNotRegistered = errors.New("registry: node not registered")

// ErrInvalid is returned for a node or role that can never be registered
// (an empty id, a role with a slash): retrying cannot help.
var ErrInvalid = errors.New("registry: invalid node")

// CheckRole returns an error wrapping ErrInvalid unless role can name a
// role: not empty and without a slash, which would make one role's key
// prefix cover another's.
func CheckRole(role string) error {
	if role == "" || strings.Contains(role, "/") {
		return fmt.Errorf("role %q needs a name without slashes: %w", role, ErrInvalid)
	}
	return nil
}

// CheckNode is CheckRole, and a node needs an id too.
func CheckNode(role, id string) error {
	if err := CheckRole(role); err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("node of role %q needs an id: %w", role, ErrInvalid)
	}
	return nil
}

// Addr is one set of client addresses of a node.
type Addr struct {
	TCP string `json:"tcp,omitempty"`
	WS  string `json:"ws,omitempty"`
}

// Node is what a node publishes about itself.
type Node struct {
	ID       string `json:"id"`
	Role     string `json:"role"`
	Region   string `json:"region,omitempty"`
	GRPCAddr string `json:"grpc_addr,omitempty"`
	Addrs    []Addr `json:"addrs,omitempty"`
	Weight   int    `json:"weight"`
	Conns    int64  `json:"conns"`
	IPs      int64  `json:"ips"`
	// Updated is the unix millisecond time of the last Register/Update.
	Updated int64 `json:"updated"`
}

// Registrar publishes this process's node. Safe for concurrent use.
type Registrar interface {
	// Register publishes n; ErrDuplicateID if n.ID is held by another node.
	Register(ctx context.Context, n Node) error
	// Update replaces the published record of an already registered node.
	Update(ctx context.Context, n Node) error
	// Deregister removes the node; removing an unknown node is not an error.
	Deregister(ctx context.Context, role, id string) error
}

// Watcher follows the registered nodes of a role. Safe for concurrent use.
type Watcher interface {
	// Nodes returns the current nodes of role, sorted by ID.
	Nodes(ctx context.Context, role string) ([]Node, error)
	// Watch sends the full, ID-sorted node list of role at once and after every
	// change, until ctx ends; then the channel is closed. A slow reader only
	// ever misses intermediate lists, never the latest.
	Watch(ctx context.Context, role string) (<-chan []Node, error)
}
