package logic

import (
	"cmp"
	"context"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imcloud/imcloud/registry"
)

// nodeSet is an immutable snapshot of the live cloud nodes.
type nodeSet struct {
	list []registry.Node // sorted by ID, as the registry sends it
	ids  map[string]struct{}
}

func newNodeSet(list []registry.Node) *nodeSet {
	s := &nodeSet{list: slices.Clone(list), ids: make(map[string]struct{}, len(list))}
	for _, n := range s.list {
		s.ids[n.ID] = struct{}{}
	}
	return s
}

// has reports whether node id is live.
func (s *nodeSet) has(id string) bool {
	_, ok := s.ids[id]
	return ok
}

// NodeLive reports whether cloud node id is in the registry, as Run last
// saw it; known is false until Run has received the first list.
func (l *Logic) NodeLive(id string) (live, known bool) {
	s := l.live.Load()
	if s == nil {
		return false, false
	}
	return s.has(id), true
}

// liveNodes returns the cached live cloud nodes or, before Run's first
// list, asks the registry.
func (l *Logic) liveNodes(ctx context.Context) (*nodeSet, error) {
	if s := l.live.Load(); s != nil {
		return s, nil
	}
	list, err := l.nodes.Nodes(ctx, registry.RoleCloud)
	if err != nil {
		return nil, unavailable(backendRegistry, err)
	}
	return newNodeSet(list), nil
}

// nodesInstances answers the live cloud nodes: GET nodes/instances.
func (l *Logic) nodesInstances(_ http.ResponseWriter, r *http.Request, _ *route) (any, error) {
	live, err := l.liveNodes(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]instance, 0, len(live.list))
	for _, n := range live.list {
		out = append(out, newInstance(n))
	}
	return out, nil
}

// instance is one cloud node in nodes/instances: goim's discovery record
// (its fields and their string-valued metadata, so goim tooling reads it)
// followed by imcloud's own fields.
type instance struct {
	Region          string            `json:"region"`
	Zone            string            `json:"zone"`
	Env             string            `json:"env"`
	AppID           string            `json:"appid"`
	Hostname        string            `json:"hostname"`
	Addrs           []string          `json:"addrs"` // gRPC, as grpc://host:port
	Version         string            `json:"version"`
	LatestTimestamp int64             `json:"latest_timestamp"` // unix ns of the latest report
	Metadata        map[string]string `json:"metadata"`

	ID       string          `json:"id"`
	Role     string          `json:"role"`
	GRPCAddr string          `json:"grpc_addr"`
	Clients  []registry.Addr `json:"clients"` // where clients connect
	Weight   int             `json:"weight"`
	Conns    int64           `json:"conns"`
	IPs      int64           `json:"ips"`
	Updated  int64           `json:"updated"` // unix ms of the latest report
}

func newInstance(n registry.Node) instance {
	clients := make([]registry.Addr, 0, len(n.Addrs))
	var hosts []string
	for _, a := range n.Addrs {
		a = clientAddr(a)
		clients = append(clients, a)
		if h := addrHost(a); h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	var grpc []string
	if n.GRPCAddr != "" {
		grpc = []string{"grpc://" + n.GRPCAddr}
	}
	return instance{
		Region: n.Region, AppID: "imcloud." + n.Role, Hostname: n.ID, Addrs: grpc,
		LatestTimestamp: n.Updated * int64(time.Millisecond),
		Metadata: map[string]string{
			"addrs":      strings.Join(hosts, ","),
			"conn_count": strconv.FormatInt(n.Conns, 10),
			"ip_count":   strconv.FormatInt(n.IPs, 10),
			"offline":    strconv.FormatBool(n.Weight <= 0),
			"weight":     strconv.Itoa(n.Weight),
		},
		ID: n.ID, Role: n.Role, GRPCAddr: n.GRPCAddr, Clients: clients,
		Weight: n.Weight, Conns: n.Conns, IPs: n.IPs, Updated: n.Updated,
	}
}

// weightedAnswer is goim's nodes/weighted shape plus per-node addresses.
type weightedAnswer struct {
	Domain       string          `json:"domain"`
	TCPPort      int             `json:"tcp_port"`
	WSPort       int             `json:"ws_port"`
	WSSPort      int             `json:"wss_port"`
	Heartbeat    int             `json:"heartbeat"` // seconds
	Nodes        []string        `json:"nodes"`     // hosts, best first
	Backoff      backoff         `json:"backoff"`
	HeartbeatMax int             `json:"heartbeat_max"`
	Addrs        []registry.Addr `json:"addrs"` // Addrs[i] is Nodes[i]'s
}

// backoff is the reconnect policy goim advertises to clients.
type backoff struct {
	MaxDelay  int     `json:"max_delay"`
	BaseDelay int     `json:"base_delay"`
	Factor    float64 `json:"factor"`
	Jitter    float64 `json:"jitter"`
}

// goimBackoff is goim's advertised reconnect backoff.
var goimBackoff = backoff{MaxDelay: 300, BaseDelay: 3, Factor: 1.8, Jitter: 0.3}

// HeartbeatMax is nodes/weighted's heartbeat_max, goim's: the heartbeats a
// client may miss before the server gives up on it.
const HeartbeatMax = 2

// nodesWeighted answers where new clients should connect, best node first:
// GET nodes/weighted?platform=. The platform is accepted for goim
// compatibility and ignored (goim picks host names or IPs by it; imcloud
// nodes advertise addresses only).
func (l *Logic) nodesWeighted(_ http.ResponseWriter, r *http.Request, _ *route) (any, error) {
	live, err := l.liveNodes(r.Context())
	if err != nil {
		return nil, err
	}
	a := weightedAnswer{
		Domain:       l.cfg.Domain,
		Heartbeat:    int(l.cfg.Heartbeat.Seconds()),
		Nodes:        []string{},
		Backoff:      goimBackoff,
		HeartbeatMax: HeartbeatMax,
		Addrs:        []registry.Addr{},
	}
	for i, n := range l.weightedOrder(live.list) {
		addr := clientAddr(n.Addrs[0])
		a.Nodes = append(a.Nodes, addrHost(addr))
		a.Addrs = append(a.Addrs, addr)
		if i == 0 {
			a.TCPPort = tcpPort(addr.TCP)
			a.WSPort, a.WSSPort = wsPorts(addr.WS)
		}
	}
	return a, nil
}

// weightedOrder orders the nodes that have client addresses for new
// clients. Each node's fair share of connections is its share of the total
// weight applied to a horizon of the current total plus the next arrivals
// (10% of the total, at least 1); its headroom is that fair share minus its
// current connections. Nodes with headroom come first, in a weighted random
// order (Efraimidis-Spirakis sampling: each node's chance of coming first is
// proportional to its headroom), so a burst of clients between registry
// updates spreads over the under-loaded nodes instead of piling onto one.
// The others follow by headroom, then ID; weight-0 nodes (draining) last.
// If every weight is 0 the weights are taken as equal.
func (l *Logic) weightedOrder(nodes []registry.Node) []registry.Node {
	type scored struct {
		node    registry.Node
		weight  float64
		deficit float64 // fair share - connections
		key     float64 // sampling key, head only
	}
	var list []scored
	var totalWeight, totalConns float64
	for _, n := range nodes {
		if len(n.Addrs) == 0 || (n.Addrs[0].TCP == "" && n.Addrs[0].WS == "") {
			continue // nowhere for a client to connect
		}
		s := scored{node: n, weight: float64(max(n.Weight, 0))}
		totalWeight += s.weight
		totalConns += float64(max(n.Conns, 0))
		list = append(list, s)
	}
	if totalWeight == 0 {
		for i := range list {
			list[i].weight = 1
		}
		totalWeight = float64(len(list))
	}
	horizon := totalConns + max(totalConns/10, 1)
	for i := range list {
		s := &list[i]
		s.deficit = s.weight/totalWeight*horizon - float64(max(s.node.Conns, 0))
		if s.deficit > 0 {
			s.key = math.Log(1-l.rand()) / s.deficit // in (-Inf, 0]; larger is earlier
		}
	}
	slices.SortFunc(list, func(a, b scored) int {
		aHead, bHead := a.deficit > 0, b.deficit > 0
		switch {
		case aHead != bHead:
			if aHead {
				return -1
			}
			return 1
		case aHead:
			return cmp.Or(cmp.Compare(b.key, a.key), strings.Compare(a.node.ID, b.node.ID))
		case (a.weight > 0) != (b.weight > 0):
			if a.weight > 0 {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(b.deficit, a.deficit), strings.Compare(a.node.ID, b.node.ID))
	})
	out := make([]registry.Node, len(list))
	for i, s := range list {
		out[i] = s.node
	}
	return out
}

// clientAddr normalises a registered address for clients: WS becomes a URL
// (ws://host:port/sub) unless it already is one.
func clientAddr(a registry.Addr) registry.Addr {
	if a.WS != "" && !strings.Contains(a.WS, "://") {
		a.WS = "ws://" + a.WS + "/sub"
	}
	return a
}

// addrHost is the host clients reach a node at: the TCP address's host, or
// the WebSocket URL's.
func addrHost(a registry.Addr) string {
	if host, _, err := net.SplitHostPort(a.TCP); err == nil {
		return host
	}
	if u, err := url.Parse(a.WS); err == nil {
		return u.Hostname()
	}
	return ""
}

// tcpPort is the port of a host:port address, 0 if there is none.
func tcpPort(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(port)
	return p
}

// wsPorts returns a WebSocket URL's port as (ws, wss) by its scheme, the
// scheme's default port if the URL names none.
func wsPorts(ws string) (wsPort, wssPort int) {
	u, err := url.Parse(ws)
	if err != nil || ws == "" {
		return 0, 0
	}
	port, _ := strconv.Atoi(u.Port())
	if u.Scheme == "wss" {
		if port == 0 {
			port = 443
		}
		return 0, port
	}
	if port == 0 {
		port = 80
	}
	return port, 0
}
