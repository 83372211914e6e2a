package roles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/imcloud/imcloud/internal/deadline"
	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/registry"
	"github.com/imcloud/imcloud/roles/cloud"
	"github.com/imcloud/imcloud/store"
)

// cloudService runs the hub: TCP and WebSocket listeners, the gRPC server,
// registration in the registry and online reports to the store.
type cloudService struct {
	cfg    *Config
	nodeID string
	log    *zap.Logger
	b      *backends
	hub    *cloud.Hub
	svc    *cloud.Service
	admin  http.Handler // mounted on the WebSocket listener when set

	tcpLn, wsLn, grpcLn net.Listener
	wsSrv               *http.Server
	wsl                 *cloud.WSListener
	grpcSrv             *grpc.Server
	bgCtx               context.Context
	bgCancel            context.CancelFunc
	errs                chan error
	// reported is set once a report reached the store; troubled while
	// the store fails and until a report cycle succeeds again (Run's
	// goroutine only).
	reported, troubled bool
	// sessionsFailed is set when the hub's own use of the session store
	// fails (noteSessions): the store may be restarting, maybe empty, and
	// the next probe finds out rather than the next report cycle.
	sessionsFailed atomic.Bool
	// updating is set while a registry update is under way (in its own
	// goroutine: an unreachable registry must not hold up the store).
	updating atomic.Bool
	// peers is the set of cloud node ids in the registry as the watch last
	// saw it (followPeers); nil until the first list.
	peers atomic.Pointer[map[string]struct{}]
	// waiting says what Start waits for, for /readyz ("" once registered).
	waiting atomic.Pointer[string]
}

func (c *cloudService) Name() string { return "cloud" }

// Waiting implements waiter.
func (c *cloudService) Waiting() string {
	if w := c.waiting.Load(); w != nil {
		return *w
	}
	return ""
}

// noteRegistrar is a Registrar whose failed registrations set the
// service's waiting reason.
type noteRegistrar struct {
	registry.Registrar
	c *cloudService
}

func (r noteRegistrar) Register(ctx context.Context, n registry.Node) error {
	err := r.Registrar.Register(ctx, n)
	if err != nil {
		w := "registering this node in the registry: " + err.Error()
		r.c.waiting.Store(&w)
	}
	return err
}

// noteSessions is the hub's session store; its failures (a key bound
// elsewhere is no failure) set the service's sessionsFailed.
type noteSessions struct {
	store.Sessions
	c *cloudService
}

func (n noteSessions) note(err error) error {
	if err != nil && !errors.Is(err, store.ErrMoved) {
		n.c.sessionsFailed.Store(true)
	}
	return err
}

func (n noteSessions) Bind(ctx context.Context, s store.Session) error {
	return n.note(n.Sessions.Bind(ctx, s))
}

func (n noteSessions) Refresh(ctx context.Context, s store.Session) error {
	return n.note(n.Sessions.Refresh(ctx, s))
}

func (n noteSessions) Unbind(ctx context.Context, s store.Session) (bool, error) {
	ok, err := n.Sessions.Unbind(ctx, s)
	return ok, n.note(err)
}

func (n noteSessions) UnbindMany(ctx context.Context, ss []store.Session) error {
	return n.note(n.Sessions.UnbindMany(ctx, ss))
}

func newCloudService(cfg *Config, role, nodeID string, log *zap.Logger, b *backends, m *cloud.Metrics, admin http.Handler) (*cloudService, error) {
	cc := cfg.Cloud
	dedup := cc.DedupWindow
	if role == RoleAll && cfg.Queue.Backend == "memory" && cfg.Registry.Backend == "memory" {
		// Only this process's job reaches the hub, from a queue that dies
		// with it: no push can be delivered twice, so none is remembered.
		dedup = 0
	}
	c := &cloudService{cfg: cfg, nodeID: nodeID, log: log, b: b, admin: admin, errs: make(chan error, 4)}
	hub, err := cloud.New(cloud.Config{
		NodeID: nodeID, HandshakeTimeout: cc.HandshakeTimeout, HeartbeatTimeout: cc.HeartbeatTimeout,
		WriteTimeout: cc.WriteTimeout, MaxBody: cc.MaxBody, SendQueue: cc.SendQueue, Buckets: cc.Buckets,
		WSOrigins: cc.WSOrigins, WSSubprotocols: cc.WSSubprotocols, DedupWindow: dedup,
		KeepReaders: !cc.ParkReaders,
		// With heartbeats at least every 3/4 of store.ttl, bindings never
		// lapse; more frequent heartbeats skip the store.
		RefreshEvery: cfg.Store.TTL / 4,
	}, noteSessions{b.sessions, c}, log, m)
	if err != nil {
		return nil, err
	}
	c.hub = hub
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	c.svc = cloud.NewService(c.bgCtx, hub)
	return c, nil
}

func (c *cloudService) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			for _, ln := range []net.Listener{c.tcpLn, c.wsLn, c.grpcLn} {
				if ln != nil {
					_ = ln.Close()
				}
			}
		}
	}()
	cc := c.cfg.Cloud
	if c.tcpLn, err = listenClients(ctx, "cloud.tcp_addr", cc.TCPAddr); err != nil {
		return err
	}
	if c.wsLn, err = listenClients(ctx, "cloud.ws_addr", cc.WSAddr); err != nil {
		return err
	}
	if c.grpcLn, err = listen(ctx, "cloud.grpc_addr", cc.GRPCAddr); err != nil {
		return err
	}
	// Upgrades on /sub are served by the hub's WSListener; the http.Server
	// gets the other requests on that port (admin endpoints).
	c.wsl = c.hub.WSListener(c.wsLn, "/sub")
	mux := http.NewServeMux()
	if c.admin != nil {
		mux.Handle("/", c.admin)
	}
	c.wsSrv = plainHTTPServer(mux, c.log)
	c.grpcSrv = grpc.NewServer()
	pb.RegisterCloudServer(c.grpcSrv, c.svc)

	go func() { c.errs <- wrapServe("grpc", c.grpcSrv.Serve(c.grpcLn)) }()

	// Clients are let in only once the node is registered, so every session
	// bound in the store points at a node that job and logic know; until
	// then they are turned away at once (not left in the listen backlog),
	// and the admin endpoints on the WebSocket port answer.
	c.hub.Hold()
	go func() { c.errs <- wrapServe("tcp", c.hub.ServeTCP(c.tcpLn)) }()
	go func() { c.errs <- wrapServe("websocket", c.wsl.Serve()) }()
	go func() { c.errs <- wrapServe("websocket port http", c.wsSrv.Serve(c.wsl)) }()

	c.warnUnspecified()
	if ttl, hb := c.cfg.Store.TTL, c.cfg.Cloud.HeartbeatTimeout; ttl <= hb {
		// Heartbeats are what refresh a session's bindings. Not an error: a
		// deployment whose clients heartbeat often may want it.
		c.log.Warn("store.ttl is not longer than cloud.heartbeat_timeout: a client that heartbeats less often than store.ttl drops out of the store between heartbeats and misses pushes by mid and key",
			zap.Duration("store_ttl", ttl), zap.Duration("heartbeat_timeout", hb))
	}
	// A restart inside the lease TTL finds its id still held by its former
	// self: wait for that lease to lapse, but not for a live twin forever.
	// A registry that is down is waited for (until a signal ends the wait).
	w := "registering this node in the registry"
	if c.cfg.Registry.Backend == "etcd" {
		w += " (etcd " + strings.Join(c.cfg.Registry.Etcd.Endpoints, ",") + ")"
	}
	c.waiting.Store(&w)
	defer c.waiting.Store(nil)
	if err = registry.RegisterWait(ctx, noteRegistrar{c.b.registrar, c}, c.node(), 3*c.cfg.Registry.Etcd.TTL, c.log); err != nil {
		c.grpcSrv.Stop()
		if errors.Is(err, registry.ErrDuplicateID) {
			// A live twin: node.id is not unique, and a restart will not fix it.
			return fmt.Errorf("%w: node.id %q is held by another live node: %w", ErrConfig, c.nodeID, err)
		}
		return fmt.Errorf("register node %q: %w", c.nodeID, err)
	}
	c.hub.Open()
	c.log.Info("cloud listening", zap.String("node", c.nodeID), zap.String("tcp", c.tcpLn.Addr().String()),
		zap.String("ws", c.wsLn.Addr().String()), zap.String("grpc", c.grpcLn.Addr().String()))
	return nil
}

func wrapServe(what string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return fmt.Errorf("%s server: %w", what, err)
}

// warnUnspecified warns of each address the registry would publish with a
// wildcard host (a listener on 0.0.0.0 or [::] and no address of its own
// configured): job on another machine cannot dial it, nor a client connect.
func (c *cloudService) warnUnspecified() {
	for _, w := range wildcardPublished(c.cfg.Cloud, c.tcpLn.Addr(), c.wsLn.Addr(), c.grpcLn.Addr(), c.b.shared) {
		c.log.Warn("publishing a wildcard address other machines cannot reach; set the key to this host's address",
			zap.String("key", w[0]), zap.String("published", w[1]))
	}
}

// wildcardPublished returns the key and the address of each address this
// node publishes with a wildcard host. The client addresses reach clients
// through nodes/weighted in every role, "all" included; the gRPC address
// matters only when other processes dial it (shared backends).
func wildcardPublished(cc CloudConfig, tcpAddr, wsAddr, grpcAddr net.Addr, shared bool) [][2]string {
	var out [][2]string
	for _, a := range []struct {
		key, set string
		addr     net.Addr
		clients  bool
	}{
		{"cloud.advertise_addr", cc.AdvertiseAddr, grpcAddr, false},
		{"cloud.public_tcp_addr", cc.PublicTCPAddr, tcpAddr, true},
		{"cloud.public_ws_addr", cc.PublicWSAddr, wsAddr, true},
	} {
		if tcp, ok := a.addr.(*net.TCPAddr); ok && a.set == "" && tcp.IP.IsUnspecified() && (shared || a.clients) {
			out = append(out, [2]string{a.key, tcp.String()})
		}
	}
	return out
}

// node is what this node publishes in the registry.
func (c *cloudService) node() registry.Node {
	conns, ips := c.hub.Online()
	tcpAddr := c.cfg.Cloud.PublicTCPAddr
	if tcpAddr == "" {
		tcpAddr = c.tcpLn.Addr().String()
	}
	wsAddr := c.cfg.Cloud.PublicWSAddr
	if wsAddr == "" {
		wsAddr = "ws://" + c.wsLn.Addr().String() + "/sub"
	}
	grpcAddr := c.cfg.Cloud.AdvertiseAddr
	if grpcAddr == "" {
		grpcAddr = c.grpcLn.Addr().String()
	}
	return registry.Node{
		ID: c.nodeID, Role: registry.RoleCloud, Region: c.cfg.Node.Region, GRPCAddr: grpcAddr,
		Addrs:  []registry.Addr{{TCP: tcpAddr, WS: wsAddr}},
		Weight: c.cfg.Node.Weight, Conns: conns, IPs: ips,
	}
}

func (c *cloudService) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.b.shared && c.b.watcher != nil {
		wg.Go(func() { c.followPeers(ctx) })
	}
	if c.cfg.Registry.Backend == "etcd" {
		wg.Go(func() { c.watchStalls(ctx, time.Second, c.cfg.Registry.Etcd.TTL) })
	}
	t := time.NewTicker(c.cfg.Cloud.OnlineReportInterval)
	defer t.Stop()
	probe := time.NewTicker(min(storeProbeEvery, c.cfg.Cloud.OnlineReportInterval))
	defer probe.Stop()
	c.report(ctx, &wg)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-c.errs:
			if err != nil {
				return err
			}
		case <-t.C:
			c.report(ctx, &wg)
		case <-probe.C:
			// Swapped first: a failure during this probe is one to see at the next.
			if failed := c.sessionsFailed.Swap(false); !c.troubled && !failed {
				continue
			}
			// A due cycle goes first: a store that hangs holds a probe as
			// long as a cycle, and probes chosen over due ticks would
			// starve the cycles (and their registry updates).
			select {
			case <-t.C:
				c.report(ctx, &wg)
			default:
				c.reportStore(ctx, true)
			}
		}
	}
}

// storeProbeEvery is how often a node whose store failed tries it again
// between report cycles: a store that comes back (maybe empty: a Redis
// without persistence) has every session bound again within this, not
// within a whole report interval, during which pushes by mid and key to
// this node's users found no binding and reached nobody.
const storeProbeEvery = 500 * time.Millisecond

// report refreshes the registry record and the store's room counts.
// The registry update runs on wg, one at a time (a cycle skips it while the
// last one still waits), each with its own timeout, so an unreachable
// registry does not cost the store its reports.
func (c *cloudService) report(ctx context.Context, wg *sync.WaitGroup) {
	n := c.node()
	if c.updating.CompareAndSwap(false, true) {
		wg.Go(func() {
			defer c.updating.Store(false)
			uctx, cancel := context.WithTimeout(ctx, c.cfg.Cloud.OnlineReportInterval)
			defer cancel()
			if err := c.b.registrar.Update(uctx, n); err != nil {
				c.log.Warn("registry update failed", zap.Error(err))
			}
		})
	}
	c.reportStore(ctx, false)
}

// reportStore is the store's part of a report cycle: it follows the other
// nodes' counts and writes this node's. A probe (between cycles, while the
// store fails) logs no failure: the cycles do.
func (c *cloudService) reportStore(ctx context.Context, probe bool) {
	sctx, cancel := context.WithTimeout(ctx, c.cfg.Cloud.OnlineReportInterval)
	defer cancel()
	ok, rebinding := true, false
	if c.b.shared {
		ok, rebinding = c.followClusterCounts(sctx, probe) // before this report replaces the last one
	}
	if !ok && probe {
		c.troubled = true // still down (the report would fail too): probe on
		return
	}
	conns, ips := c.hub.Online()
	r := store.NodeOnline{Node: c.nodeID, Conns: conns, IPs: ips, Rooms: c.hub.Rooms()}
	if err := c.b.online.ReportOnline(sctx, r, 3*c.cfg.Cloud.OnlineReportInterval); err != nil {
		if !probe {
			c.log.Warn("online report failed", zap.Error(err))
		}
		ok = false
	} else {
		c.reported = true
	}
	// A store that came back may have come back empty, and this cycle's
	// own report cannot tell (it may be the first thing written since):
	// after any failure, the first good cycle has every session rebind.
	switch {
	case !ok:
		c.troubled = true
	case c.troubled:
		c.troubled = false
		if !rebinding { // else followClusterCounts just started it
			c.log.Info("session store answers again; rebinding every session")
			c.hub.RefreshAll()
		}
	}
}

// followClusterCounts makes heartbeat replies count room members on every
// node: this node's live figure plus the latest reports of the other nodes
// in the registry. If this node's own last report is gone, the store lost
// data (a Redis restarted without persistence, or down for longer than a
// report lives), likely the session bindings too: every session is bound
// again. It reports whether the store answered, and whether it had the
// sessions bound again.
func (c *cloudService) followClusterCounts(ctx context.Context, quiet bool) (ok, rebinding bool) {
	reports, err := c.b.online.AllOnline(ctx)
	if err != nil {
		if !quiet {
			c.log.Warn("reading other nodes' online reports failed", zap.Error(err))
		}
		return false, false
	}
	others, own := otherRoomCounts(reports, c.nodeID, c.peerLive)
	if c.reported && !own {
		c.log.Warn("this node's online report is gone from the store; rebinding every session")
		c.hub.RefreshAll()
		rebinding = true
	}
	hub := c.hub
	hub.SetRoomCounter(func(room string) int32 { return hub.RoomCount(room) + others[room] })
	return true, rebinding
}

// otherRoomCounts sums the room counts of the other nodes' reports, leaving
// out nodes that departed the registry (liveFunc.departed). own says
// whether self's report was among them.
func otherRoomCounts(reports []store.NodeOnline, self string, live liveFunc) (others map[string]int32, own bool) {
	others = map[string]int32{}
	for _, r := range reports {
		if r.Node == self {
			own = true
			continue
		}
		if live.departed(r.Node) {
			continue
		}
		for room, n := range r.Rooms {
			others[room] += n
		}
	}
	return others, own
}

// peerLive is a liveFunc over c.peers.
func (c *cloudService) peerLive(node string) (live, known bool) {
	p := c.peers.Load()
	if p == nil {
		return false, false
	}
	_, live = (*p)[node]
	return live, true
}

// watchStalls notices that this process did not run for longer than its
// registry lease (stopped, frozen, swapped out): the lease expired, the
// cluster took the node for gone and skipped the pushes for its clients,
// who are still connected and were never told. So they are told now, to
// reconnect and catch up. An etcd outage does not look like this (the
// process keeps running), so it does not set off a mass reconnect.
func (c *cloudService) watchStalls(ctx context.Context, every, lease time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if gap := now.Sub(last); gap > lease {
				n := c.hub.DisconnectAll("this node was out of the cluster, reconnect")
				c.log.Warn("this node did not run for longer than its registry lease; pushes for its clients were skipped meanwhile, so they are disconnected to reconnect",
					zap.Duration("stalled", gap.Round(time.Millisecond)), zap.Duration("lease", lease), zap.Int("sessions", n))
			}
			last = now
		}
	}
}

// followPeers keeps c.peers in step with the registry's cloud nodes until
// ctx ends; while the registry is unreachable the last view stays.
func (c *cloudService) followPeers(ctx context.Context) {
	ch, err := registry.WatchWait(ctx, c.b.watcher, registry.RoleCloud, c.log)
	if err != nil {
		return // ctx ended
	}
	for list := range ch {
		set := make(map[string]struct{}, len(list))
		for _, n := range list {
			set[n.ID] = struct{}{}
		}
		c.peers.Store(&set)
	}
}

func (c *cloudService) Stop(ctx context.Context) error {
	var errs []error
	// Leave the registry first so nothing new is routed here. An
	// unreachable registry gets a second of the stop's time: the record
	// expires with its lease anyway, and the clients' drain matters more.
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	if err := c.b.registrar.Deregister(dctx, registry.RoleCloud, c.nodeID); err != nil {
		c.log.Warn("leaving the registry failed; the record expires with its lease", zap.Error(err))
	}
	cancel()
	if c.tcpLn != nil {
		_ = c.tcpLn.Close()
	}
	if c.wsSrv != nil {
		// Hijacked WebSocket connections are not the server's to wait for.
		_ = c.wsLn.Close()
	}
	// Clients that do not take their goodbye (not reading) are cut at the
	// deadline, less a reserve for the steps below.
	drainCtx, cancel := deadline.Reserve(ctx, time.Second)
	if err := c.hub.Shutdown(drainCtx); err != nil && !drainCut(c.log, "client connections", err) {
		errs = append(errs, err)
	}
	cancel()
	// Withdraw this node's room counts rather than leave the last report
	// counted across the cluster until it expires.
	if err := c.b.online.ReportOnline(ctx, store.NodeOnline{Node: c.nodeID}, c.cfg.Cloud.OnlineReportInterval); err != nil {
		c.log.Warn("withdrawing the online report failed", zap.Error(err))
	}
	if c.wsSrv != nil {
		_ = c.wsSrv.Shutdown(ctx)
	}
	if c.grpcSrv != nil {
		done := make(chan struct{})
		go func() { c.grpcSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			c.grpcSrv.Stop()
		}
	}
	c.bgCancel()
	return errors.Join(errs...)
}

// listen binds addr, naming the config key on failure.
func listen(ctx context.Context, key, addr string) (net.Listener, error) {
	return listenWith(ctx, net.ListenConfig{}, key, addr)
}

// listenClients binds a client listener. Its connections get no TCP
// keep-alive (as in goim): the heartbeat deadline (cloud.heartbeat_timeout)
// is what finds dead peers, and Go's default (a probe after 15 s of silence,
// on every connection quieter than its heartbeat) would cost four setsockopt
// calls per connect and a stream of probes on idle connections.
func listenClients(ctx context.Context, key, addr string) (net.Listener, error) {
	return listenWith(ctx, net.ListenConfig{KeepAlive: -1}, key, addr)
}

func listenWith(ctx context.Context, lc net.ListenConfig, key, addr string) (net.Listener, error) {
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", key, addr, err)
	}
	return ln, nil
}
