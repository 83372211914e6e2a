package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/imcloud/imcloud/internal/deadline"
	"github.com/imcloud/imcloud/registry"
)

// Defaults for the zero fields of Config.
const (
	DefaultPrefix      = "/imcloud"
	DefaultTTL         = 10 * time.Second
	DefaultDialTimeout = 3 * time.Second
)

// requestTimeout bounds every single etcd request, so a call whose ctx has
// no deadline still fails while etcd is unreachable (the client otherwise
// waits for a connection forever).
const requestTimeout = 5 * time.Second

// ErrLeaseLost is returned by Update when the node is registered here but
// its key is no longer under this registry's lease (the lease expired or was
// revoked, or another node took the id). The record passed to Update is kept
// and published by the re-registration already under way.
var ErrLeaseLost = errors.New("registry/etcd: lease lost, re-registering")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("registry/etcd: registry closed")

// Config configures a Registry.
type Config struct {
	// Endpoints are the etcd client endpoints (host:port or URLs).
	Endpoints []string
	// Prefix is the root of every key; default /imcloud.
	Prefix string
	// TTL is the lease time to live of a registered node: a node that stops
	// keeping its lease alive disappears after it; default 10s, at least 1s.
	TTL time.Duration
	// DialTimeout bounds establishing a connection; default 3s.
	DialTimeout time.Duration
}

// Registry is an etcd-backed registry.Registrar and registry.Watcher; see
// the package documentation.
type Registry struct {
	cli        *clientv3.Client
	log        *zap.Logger
	prefix     string // without a trailing slash
	ttl        time.Duration
	reqTimeout time.Duration
	maxBackoff time.Duration
	// historyEvery is how often a watch checks that etcd's history still
	// holds the revision it follows (historyCheck).
	historyEvery time.Duration
	// resetGrace is how long a watch keeps, after etcd's history was reset,
	// the nodes the new history lacks: the live ones register again within
	// it (see holdMissing).
	resetGrace time.Duration

	ctx    context.Context // cancelled by Close; parent of every goroutine
	cancel context.CancelFunc
	wg     sync.WaitGroup // keepers and watch followers

	mu     sync.Mutex
	closed bool
	regs   map[string]*registration // key -> registration made here
}

// registration is one node registered through this Registry.
type registration struct {
	key, role, id string
	ctx           context.Context // cancelled by Deregister and Close
	cancel        context.CancelFunc
	done          chan struct{}         // closed when the keeper has returned
	kick          chan clientv3.LeaseID // Update found the key not under this lease

	// op (a 1-slot semaphore, so waiting honours a context) serializes the
	// writes of this key (Update and re-registration): a record is always
	// written under the current lease.
	op chan struct{}

	mu    sync.Mutex
	node  registry.Node    // latest record, published on re-registration
	lease clientv3.LeaseID // lease the key was last written under
}

var (
	_ registry.Registrar = (*Registry)(nil)
	_ registry.Watcher   = (*Registry)(nil)
)

// New connects to etcd. It does not wait for the connection: an unreachable
// etcd shows as errors from the methods. log may be nil.
func New(cfg Config, log *zap.Logger) (*Registry, error) {
	if log == nil {
		log = zap.NewNop()
	}
	var eps []string
	for _, ep := range cfg.Endpoints {
		if ep = strings.TrimSpace(ep); ep != "" {
			eps = append(eps, ep)
		}
	}
	if len(eps) == 0 {
		return nil, errors.New("registry/etcd: no endpoints")
	}
	prefix := strings.TrimRight(cfg.Prefix, "/")
	if cfg.Prefix == "" {
		prefix = DefaultPrefix
	}
	ttl := cfg.TTL
	switch {
	case ttl == 0:
		ttl = DefaultTTL
	case ttl < time.Second:
		return nil, fmt.Errorf("registry/etcd: ttl %v is below 1s", ttl)
	}
	dialTimeout := cfg.DialTimeout
	switch {
	case dialTimeout == 0:
		dialTimeout = DefaultDialTimeout
	case dialTimeout < 0:
		return nil, fmt.Errorf("registry/etcd: negative dial timeout %v", dialTimeout)
	}
	// Reconnect quickly after an etcd restart: a node must be back well
	// within its TTL. The grpc default backs off up to two minutes.
	maxBackoff := min(max(ttl/2, 500*time.Millisecond), 5*time.Second)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: dialTimeout,
		// Detect a dead connection (a host gone without a RST) in time.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   maxBackoff,
			},
			MinConnectTimeout: dialTimeout,
		})},
		// The client warns on every retry while etcd is down; this package
		// logs each step of its own recovery instead.
		Logger: log.Named("etcd-client").WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel)),
	})
	if err != nil {
		return nil, fmt.Errorf("registry/etcd: connect %v: %w", eps, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Registry{
		cli:          cli,
		log:          log,
		prefix:       prefix,
		ttl:          ttl,
		reqTimeout:   requestTimeout,
		maxBackoff:   maxBackoff,
		historyEvery: defaultHistoryEvery,
		resetGrace:   ttl + defaultHistoryEvery,
		ctx:          ctx,
		cancel:       cancel,
		regs:         make(map[string]*registration),
	}, nil
}

// Close stops every keepalive and watch (closing the watch channels) and
// closes the connection. It does not deregister: nodes still registered
// disappear when their leases expire, within TTL. Call Deregister first for
// a prompt removal.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	if err := r.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("registry/etcd: close: %w", err)
	}
	return nil
}

// Register publishes n under a new lease kept alive in the background,
// stamping n.Updated. It returns an error wrapping registry.ErrDuplicateID if
// the key exists, whoever holds it.
func (r *Registry) Register(ctx context.Context, n registry.Node) error {
	if err := check(ctx, "register", n.Role, n.ID); err != nil {
		return err
	}
	key := r.nodeKey(n.Role, n.ID)
	r.mu.Lock()
	closed, held := r.closed, r.regs[key] != nil
	r.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("registry/etcd: register %s/%s: %w", n.Role, n.ID, ErrClosed)
	case held:
		return fmt.Errorf("registry/etcd: register %s/%s: held by this process: %w", n.Role, n.ID, registry.ErrDuplicateID)
	}
	n = stamp(n)
	lease, err := r.claim(ctx, key, n, 0)
	if err != nil {
		return fmt.Errorf("registry/etcd: register %s/%s: %w", n.Role, n.ID, err)
	}
	reg := &registration{
		key: key, role: n.Role, id: n.ID,
		done:  make(chan struct{}),
		kick:  make(chan clientv3.LeaseID, 1),
		op:    make(chan struct{}, 1),
		node:  n,
		lease: lease,
	}
	reg.ctx, reg.cancel = context.WithCancel(r.ctx)
	r.mu.Lock()
	if r.closed || r.regs[key] != nil {
		closed := r.closed
		r.mu.Unlock()
		reg.cancel()
		r.revoke(lease)
		if closed {
			return fmt.Errorf("registry/etcd: register %s/%s: %w", n.Role, n.ID, ErrClosed)
		}
		return fmt.Errorf("registry/etcd: register %s/%s: held by this process: %w", n.Role, n.ID, registry.ErrDuplicateID)
	}
	r.regs[key] = reg
	r.wg.Add(1)
	r.mu.Unlock()
	go r.keep(reg)
	r.log.Info("registry/etcd: node registered",
		zap.String("key", key), zap.String("lease", leaseHex(lease)), zap.Duration("ttl", r.ttl))
	return nil
}

// Update writes n under this registry's lease, stamping n.Updated, if the
// key is still under it. It returns an error wrapping
// registry.ErrNotRegistered if n was not registered here, and one wrapping
// ErrLeaseLost if the key is not under the lease (n is then published by the
// re-registration). n is kept as the latest record even when the write
// fails, so a re-registration publishes it.
func (r *Registry) Update(ctx context.Context, n registry.Node) error {
	if err := check(ctx, "update", n.Role, n.ID); err != nil {
		return err
	}
	key := r.nodeKey(n.Role, n.ID)
	r.mu.Lock()
	reg, closed := r.regs[key], r.closed
	r.mu.Unlock()
	if closed {
		return fmt.Errorf("registry/etcd: update %s/%s: %w", n.Role, n.ID, ErrClosed)
	}
	if reg == nil {
		return fmt.Errorf("registry/etcd: update %s/%s: %w", n.Role, n.ID, registry.ErrNotRegistered)
	}
	n = stamp(n)
	val, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("registry/etcd: update %s/%s: %w", n.Role, n.ID, err)
	}
	if err := reg.lock(ctx); err != nil {
		return fmt.Errorf("registry/etcd: update %s/%s: %w", n.Role, n.ID, err)
	}
	defer reg.unlock()
	if reg.ctx.Err() != nil { // deregistered meanwhile
		return fmt.Errorf("registry/etcd: update %s/%s: %w", n.Role, n.ID, registry.ErrNotRegistered)
	}
	reg.mu.Lock()
	reg.node = n
	lease := reg.lease
	reg.mu.Unlock()
	actx, cancel := context.WithTimeout(ctx, r.reqTimeout)
	defer cancel()
	resp, err := r.cli.Txn(actx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease))).
		Commit()
	if err != nil {
		return fmt.Errorf("registry/etcd: update %s/%s: %w", n.Role, n.ID, err)
	}
	if !resp.Succeeded {
		select { // wake the keeper; a pending kick says the same
		case reg.kick <- lease:
		default:
		}
		return fmt.Errorf("registry/etcd: update %s/%s (lease %s): %w", n.Role, n.ID, leaseHex(lease), ErrLeaseLost)
	}
	return nil
}

// Deregister stops keeping the node's lease alive and revokes it, so its key
// disappears at once. A node not registered here is not an error (its key,
// if any, is left alone). If the revoke fails the key still disappears when
// the lease expires, within TTL, and the error is returned.
func (r *Registry) Deregister(ctx context.Context, role, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("registry/etcd: deregister %s/%s: %w", role, id, err)
	}
	key := r.nodeKey(role, id)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("registry/etcd: deregister %s/%s: %w", role, id, ErrClosed)
	}
	reg := r.regs[key]
	delete(r.regs, key)
	r.mu.Unlock()
	if reg == nil {
		return nil
	}
	reg.cancel()
	<-reg.done // only the keeper changes the lease; an Update in flight fails once it is revoked
	reg.mu.Lock()
	lease := reg.lease
	reg.mu.Unlock()
	actx, cancel := context.WithTimeout(ctx, r.reqTimeout)
	defer cancel()
	if _, err := r.cli.Revoke(actx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		r.log.Warn("registry/etcd: revoke failed, key expires with its lease",
			zap.String("key", key), zap.String("lease", leaseHex(lease)), zap.Duration("ttl", r.ttl), zap.Error(err))
		return fmt.Errorf("registry/etcd: deregister %s/%s: revoke lease %s: %w", role, id, leaseHex(lease), err)
	}
	r.log.Info("registry/etcd: node deregistered", zap.String("key", key), zap.String("lease", leaseHex(lease)))
	return nil
}

// Nodes returns the nodes of role sorted by ID.
func (r *Registry) Nodes(ctx context.Context, role string) ([]registry.Node, error) {
	if err := checkRole(ctx, "nodes", role); err != nil {
		return nil, err
	}
	if r.isClosed() {
		return nil, fmt.Errorf("registry/etcd: nodes %s: %w", role, ErrClosed)
	}
	m, _, err := r.load(ctx, role)
	if err != nil {
		return nil, fmt.Errorf("registry/etcd: nodes %s: %w", role, err)
	}
	return sorted(m), nil
}

// Watch sends the nodes of role at once and after every change until ctx
// ends or the registry is closed; then the channel is closed. While etcd is
// unreachable the last list stands; the watch resumes by itself.
func (r *Registry) Watch(ctx context.Context, role string) (<-chan []registry.Node, error) {
	if err := checkRole(ctx, "watch", role); err != nil {
		return nil, err
	}
	m, at, err := r.load(ctx, role)
	if err != nil {
		return nil, fmt.Errorf("registry/etcd: watch %s: %w", role, err)
	}
	ch, err := r.follow(ctx, role, m, at)
	if err != nil {
		return nil, fmt.Errorf("registry/etcd: watch %s: %w", role, err)
	}
	return ch, nil
}

// follow starts the goroutine of a watch whose state is m as of at, and
// returns its channel holding m.
func (r *Registry) follow(ctx context.Context, role string, m map[string]registry.Node, at position) (<-chan []registry.Node, error) {
	ch := make(chan []registry.Node, 1)
	ch <- sorted(m)
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.ctx, cancel)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		stop()
		cancel()
		return nil, ErrClosed
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		defer close(ch)
		defer cancel()
		defer stop()
		r.followLoop(wctx, role, m, at, ch)
	}()
	return ch, nil
}

// followLoop keeps m in step with etcd from rev on, sending ch the sorted
// list after each change, until ctx ends. When the etcd watch fails (etcd
// down without a leader, compaction, a closed stream) it reloads the role
// with backoff and watches again from there; m stands meanwhile. After a
// history reset the nodes the new history lacks are held for a while
// (holdMissing) rather than dropped at once.
func (r *Registry) followLoop(ctx context.Context, role string, m map[string]registry.Node, at position, ch chan []registry.Node) {
	prefix := r.rolePrefix(role)
	held := &heldNodes{}
	for {
		err := r.watchFrom(ctx, prefix, m, &at, ch, held)
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("registry/etcd: watch interrupted, reloading",
			zap.String("prefix", prefix), zap.Int64("revision", at.rev), zap.Error(err))
		reset := errors.Is(err, errHistoryReset)
		wait := backoffStart
		for attempt := 1; ; attempt++ {
			fresh, fat, err := r.load(ctx, role)
			if err == nil {
				// The watch may have failed for another reason first (no
				// leader while a restored cluster elects one): the load
				// itself tells a new history too.
				if reset || fat.cluster != at.cluster || fat.rev < at.rev {
					r.holdMissing(prefix, held, m, fresh)
				}
				held.keep(fresh)
				if !reflect.DeepEqual(fresh, m) {
					m = fresh
					send(ch, sorted(m))
				}
				at = fat
				r.log.Info("registry/etcd: watch resumed",
					zap.String("prefix", prefix), zap.Int64("revision", at.rev), zap.Int("nodes", len(m)), zap.Int("attempt", attempt))
				break
			}
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("registry/etcd: watch reload failed, keeping the last node list",
				zap.String("prefix", prefix), zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Error(err))
			if !deadline.Sleep(ctx, wait) {
				return
			}
			wait = r.nextBackoff(wait)
		}
	}
}

// heldNodes are the nodes a watch keeps listing after etcd's history was
// reset although the new history lacks them, until they write their key
// again or until is reached. Only the watch's goroutine uses them.
type heldNodes struct {
	nodes map[string]registry.Node // key -> last record from the old history
	until time.Time
}

// holdMissing holds the nodes of m that fresh, the first list of a new
// history, lacks. etcd restarted without its data (or restored from an older
// backup) holds none of the live nodes until each notices and registers
// again (its keepalive fails, or its own watch sees the reset: within a few
// seconds); dropping them meanwhile would make job and logic route nothing
// to them. A node that does not come back within r.resetGrace (a lease TTL
// and a history check) is dropped then, as its lease would have expired on
// an etcd that kept its data.
func (r *Registry) holdMissing(prefix string, held *heldNodes, m, fresh map[string]registry.Node) {
	var ids []string
	for k, n := range m {
		if _, ok := fresh[k]; ok {
			continue
		}
		if held.nodes == nil {
			held.nodes = make(map[string]registry.Node)
		}
		held.nodes[k] = n
		ids = append(ids, n.ID)
	}
	if len(ids) == 0 {
		return
	}
	held.until = time.Now().Add(r.resetGrace)
	slices.Sort(ids)
	r.log.Warn("registry/etcd: etcd's new history lacks nodes; keeping them until they register again",
		zap.String("prefix", prefix), zap.Strings("nodes", ids), zap.Duration("grace", r.resetGrace))
}

// keep adds the held nodes to fresh, a list just loaded, except those it
// has: they registered again.
func (h *heldNodes) keep(fresh map[string]registry.Node) {
	for k, n := range h.nodes {
		if _, ok := fresh[k]; ok {
			delete(h.nodes, k)
		} else {
			fresh[k] = n
		}
	}
}

// timer returns a channel that fires when the grace of the held nodes ends,
// nil (never) if none is held, and a stop function.
func (h *heldNodes) timer() (<-chan time.Time, func()) {
	if len(h.nodes) == 0 {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(h.until))
	return t.C, func() { t.Stop() }
}

// expire removes the nodes still held from m and returns their ids.
func (h *heldNodes) expire(m map[string]registry.Node) []string {
	ids := make([]string, 0, len(h.nodes))
	for k, n := range h.nodes {
		delete(m, k)
		ids = append(ids, n.ID)
	}
	clear(h.nodes)
	slices.Sort(ids)
	return ids
}

// position is a point in etcd's history: a revision of a cluster.
type position struct {
	rev     int64
	cluster uint64
}

// defaultHistoryEvery is Registry.historyEvery's default.
const defaultHistoryEvery = 5 * time.Second

// errHistoryReset is what a watch returns when etcd's history no longer
// holds the revision it follows: a cluster recreated, or restored from an
// older backup. Its watch would wait, silently, for that revision to come
// round again, and miss every change until then.
var errHistoryReset = errors.New("etcd's history was reset (a new or restored cluster)")

// historyCheck reports errHistoryReset if etcd, asked now, is another
// cluster than at, or at an earlier revision. An etcd that does not answer
// is no news for the watch, which deals with it itself; it is logged once,
// and so is its answering again (*unreachable says which was logged last),
// since the watch alone waits without a word while etcd is down.
func (r *Registry) historyCheck(ctx context.Context, prefix string, at position, unreachable *bool) error {
	actx, cancel := context.WithTimeout(ctx, r.reqTimeout)
	defer cancel()
	resp, err := r.cli.Get(actx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		if !*unreachable && ctx.Err() == nil {
			*unreachable = true
			r.log.Warn("registry/etcd: etcd does not answer; the watch keeps the last node list",
				zap.String("prefix", prefix), zap.Error(err))
		}
		return nil
	}
	if *unreachable {
		*unreachable = false
		r.log.Info("registry/etcd: etcd answers again", zap.String("prefix", prefix))
	}
	if h := resp.Header; h.ClusterId != at.cluster || h.Revision < at.rev {
		return fmt.Errorf("%w: cluster %x at revision %d, the watch followed cluster %x at %d",
			errHistoryReset, h.ClusterId, h.Revision, at.cluster, at.rev)
	}
	return nil
}

// watchFrom watches prefix from at.rev+1, applying events to m and sending
// the list after each response with changes. It returns when ctx ends, the
// watch fails or etcd's history was reset (historyCheck, every
// r.historyEvery); *at is the last revision m reflects. Held nodes whose
// grace ends meanwhile are removed from m.
func (r *Registry) watchFrom(ctx context.Context, prefix string, m map[string]registry.Node, at *position, ch chan []registry.Node, held *heldNodes) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the etcd watch when we stop reading it
	wch := r.cli.Watch(clientv3.WithRequireLeader(wctx), prefix,
		clientv3.WithPrefix(), clientv3.WithRev(at.rev+1))
	check := time.NewTicker(r.historyEvery)
	defer check.Stop()
	graceOver, stopGrace := held.timer()
	unreachable := false
	defer func() { stopGrace() }()
	for {
		var resp clientv3.WatchResponse
		var open bool
		select {
		case resp, open = <-wch:
		case <-check.C:
			if err := r.historyCheck(ctx, prefix, *at, &unreachable); err != nil {
				return err
			}
			continue
		case <-graceOver:
			graceOver = nil
			if ids := held.expire(m); len(ids) > 0 {
				r.log.Warn("registry/etcd: nodes did not register again after etcd's history was reset; dropped",
					zap.String("prefix", prefix), zap.Strings("nodes", ids))
				send(ch, sorted(m))
			}
			continue
		}
		if !open {
			break
		}
		if err := resp.Err(); err != nil {
			return err
		}
		if c := resp.Header.ClusterId; c != 0 && c != at.cluster {
			return fmt.Errorf("%w: events from cluster %x, the watch followed %x", errHistoryReset, resp.Header.ClusterId, at.cluster)
		}
		changed := false
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			delete(held.nodes, key) // written in the new history: no longer held
			switch ev.Type {
			case clientv3.EventTypePut:
				if n, ok := r.decode(ev.Kv.Key, ev.Kv.Value); ok {
					m[key] = n
				} else {
					delete(m, key)
				}
			case clientv3.EventTypeDelete:
				delete(m, key)
			}
			changed = true
			at.rev = max(at.rev, ev.Kv.ModRevision)
		}
		at.rev = max(at.rev, resp.Header.Revision)
		if changed {
			send(ch, sorted(m))
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch channel closed")
}

// send replaces any unread list in ch with list. Only the watch's goroutine
// sends, so the send after draining cannot block.
func send(ch chan []registry.Node, list []registry.Node) {
	select {
	case <-ch:
	default:
	}
	ch <- list
}

// load reads the nodes of role and the point in etcd's history they are
// current at.
func (r *Registry) load(ctx context.Context, role string) (map[string]registry.Node, position, error) {
	actx, cancel := context.WithTimeout(ctx, r.reqTimeout)
	defer cancel()
	resp, err := r.cli.Get(actx, r.rolePrefix(role), clientv3.WithPrefix())
	if err != nil {
		return nil, position{}, err
	}
	m := make(map[string]registry.Node, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if n, ok := r.decode(kv.Key, kv.Value); ok {
			m[string(kv.Key)] = n
		}
	}
	return m, position{rev: resp.Header.Revision, cluster: resp.Header.ClusterId}, nil
}

// decode parses a node record, logging and skipping one that does not parse.
func (r *Registry) decode(key, val []byte) (registry.Node, bool) {
	var n registry.Node
	if err := json.Unmarshal(val, &n); err != nil {
		r.log.Warn("registry/etcd: skipping a record that is not a node",
			zap.ByteString("key", key), zap.Int("bytes", len(val)), zap.Error(err))
		return registry.Node{}, false
	}
	return n, true
}

// heldError says the key is held by a lease that is not ours; it wraps
// registry.ErrDuplicateID.
type heldError struct{ holder clientv3.LeaseID }

func (e heldError) Error() string {
	return fmt.Sprintf("key held by lease %s: %v", leaseHex(e.holder), registry.ErrDuplicateID)
}

func (e heldError) Unwrap() error { return registry.ErrDuplicateID }

// claim writes n at key under a new lease if the key is absent, or if it is
// held by old (our previous lease, when old != 0). It returns the new lease,
// or a heldError if another lease holds the key. The new lease is revoked on
// every failure.
func (r *Registry) claim(ctx context.Context, key string, n registry.Node, old clientv3.LeaseID) (lease clientv3.LeaseID, err error) {
	val, err := json.Marshal(n)
	if err != nil {
		return 0, err
	}
	actx, cancel := context.WithTimeout(ctx, r.reqTimeout)
	defer cancel()
	g, err := r.cli.Grant(actx, int64(math.Ceil(r.ttl.Seconds())))
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	defer func() {
		if err != nil {
			r.revoke(g.ID)
		}
	}()
	put := clientv3.OpPut(key, string(val), clientv3.WithLease(g.ID))
	resp, err := r.cli.Txn(actx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(put).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return 0, err
	}
	if resp.Succeeded {
		return g.ID, nil
	}
	var holder clientv3.LeaseID
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		holder = clientv3.LeaseID(kvs[0].Lease)
	}
	if old == 0 || holder != old {
		return 0, heldError{holder}
	}
	// Our previous lease still holds the key (etcd kept it while we could not
	// reach it): move the key to the new lease.
	resp, err = r.cli.Txn(actx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", old)).
		Then(put).
		Commit()
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return 0, errors.New("key changed while moving it to a new lease")
	}
	return g.ID, nil
}

// revoke revokes lease on a context of its own (the caller's may be over),
// logging a failure other than an unknown lease: the lease then expires.
func (r *Registry) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), r.reqTimeout)
	defer cancel()
	if _, err := r.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		r.log.Warn("registry/etcd: revoke failed, lease expires by itself",
			zap.String("lease", leaseHex(lease)), zap.Duration("ttl", r.ttl), zap.Error(err))
	}
}

// keep keeps reg's lease alive until reg.ctx ends, re-registering under a
// new lease whenever the lease is lost.
func (r *Registry) keep(reg *registration) {
	defer r.wg.Done()
	defer close(reg.done)
	wait := backoffStart
	for {
		reg.mu.Lock()
		lease := reg.lease
		reg.mu.Unlock()
		reason, alive := r.keepAlive(reg, lease)
		if reg.ctx.Err() != nil {
			return
		}
		if alive {
			wait = backoffStart
		} else if !deadline.Sleep(reg.ctx, wait) { // lost at once: do not spin
			return
		} else {
			wait = r.nextBackoff(wait)
		}
		r.log.Warn("registry/etcd: lease lost, re-registering",
			zap.String("key", reg.key), zap.String("lease", leaseHex(lease)), zap.String("reason", reason))
		if !r.reregister(reg, lease) {
			return
		}
	}
}

// keepAlive keeps lease alive until it is lost or reg.ctx ends. It returns
// why it stopped and whether etcd answered at least once.
func (r *Registry) keepAlive(reg *registration, lease clientv3.LeaseID) (reason string, alive bool) {
	kctx, cancel := context.WithCancel(reg.ctx)
	defer cancel()
	kch, err := r.cli.KeepAlive(kctx, lease)
	if err != nil {
		return "keepalive refused: " + err.Error(), false
	}
	for {
		select {
		case _, ok := <-kch:
			if !ok {
				return "keepalive ended: lease expired, revoked or not renewed within its ttl", alive
			}
			alive = true
		case id := <-reg.kick:
			if id == lease {
				return "update found the key not under the lease", alive
			}
		case <-reg.ctx.Done():
			return "stopped", alive
		}
	}
}

// reregister claims reg's key with its latest record under a new lease,
// retrying with backoff until it succeeds (true) or reg.ctx ends (false). It
// never overwrites a key held by another lease than old.
func (r *Registry) reregister(reg *registration, old clientv3.LeaseID) bool {
	wait := backoffStart
	for attempt := 1; ; attempt++ {
		lease, err := r.reclaim(reg, old)
		if err == nil {
			r.log.Info("registry/etcd: node re-registered",
				zap.String("key", reg.key), zap.String("lease", leaseHex(lease)),
				zap.String("old_lease", leaseHex(old)), zap.Int("attempt", attempt))
			r.revoke(old) // a no-op unless etcd still had it
			return true
		}
		if reg.ctx.Err() != nil {
			return false
		}
		var held heldError
		if errors.As(err, &held) {
			r.log.Error("registry/etcd: node id taken by another lease, not overwriting; retrying",
				zap.String("key", reg.key), zap.String("holder_lease", leaseHex(held.holder)),
				zap.String("old_lease", leaseHex(old)), zap.Int("attempt", attempt), zap.Duration("retry_in", wait))
		} else {
			r.log.Warn("registry/etcd: re-register failed, retrying",
				zap.String("key", reg.key), zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Error(err))
		}
		if !deadline.Sleep(reg.ctx, wait) {
			return false
		}
		wait = r.nextBackoff(wait)
	}
}

// reclaim is one re-registration attempt, with the latest record stamped
// anew; writes of the key wait meanwhile.
func (r *Registry) reclaim(reg *registration, old clientv3.LeaseID) (clientv3.LeaseID, error) {
	if err := reg.lock(reg.ctx); err != nil {
		return 0, err
	}
	defer reg.unlock()
	reg.mu.Lock()
	n := stamp(reg.node)
	reg.mu.Unlock()
	lease, err := r.claim(reg.ctx, reg.key, n, old)
	if err != nil {
		return 0, err
	}
	reg.mu.Lock()
	reg.node, reg.lease = n, lease
	reg.mu.Unlock()
	return lease, nil
}

// lock takes reg.op, unless ctx ends first.
func (reg *registration) lock(ctx context.Context) error {
	select {
	case reg.op <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (reg *registration) unlock() { <-reg.op }

// backoffStart is the first wait between retries; waits double up to
// r.maxBackoff (half the TTL, between 0.5s and 5s), with jitter.
const backoffStart = 200 * time.Millisecond

func (r *Registry) nextBackoff(d time.Duration) time.Duration {
	d = min(2*d, r.maxBackoff)
	return d - time.Duration(rand.Int64N(int64(d)/5+1)) // up to 20% less
}

func (r *Registry) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// rolePrefix is the key prefix of role's nodes, with a trailing slash so
// role "a" does not match role "ab".
func (r *Registry) rolePrefix(role string) string {
	return r.prefix + "/nodes/" + role + "/"
}

func (r *Registry) nodeKey(role, id string) string {
	return r.rolePrefix(role) + id
}

// stamp returns n with Updated set to now and Addrs copied.
func stamp(n registry.Node) registry.Node {
	n.Updated = time.Now().UnixMilli()
	n.Addrs = slices.Clone(n.Addrs)
	return n
}

// sorted returns m's nodes sorted by ID, deep-copied for the receiver.
func sorted(m map[string]registry.Node) []registry.Node {
	list := make([]registry.Node, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		n := m[k]
		n.Addrs = slices.Clone(n.Addrs)
		list = append(list, n)
	}
	slices.SortStableFunc(list, func(a, b registry.Node) int { return strings.Compare(a.ID, b.ID) })
	return list
}

func leaseHex(id clientv3.LeaseID) string { return fmt.Sprintf("%x", int64(id)) }

// check validates ctx and a node's identity before a write.
func check(ctx context.Context, op, role, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("registry/etcd: %s %s/%s: %w", op, role, id, err)
	}
	if err := registry.CheckNode(role, id); err != nil {
		return fmt.Errorf("registry/etcd: %s: %w", op, err)
	}
	return nil
}

// checkRole validates ctx and a role.
func checkRole(ctx context.Context, op, role string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("registry/etcd: %s %s: %w", op, role, err)
	}
	if err := registry.CheckRole(role); err != nil {
		return fmt.Errorf("registry/etcd: %s: %w", op, err)
	}
	return nil
}
