package logic

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/imcloud/imcloud/internal/logthin"
	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/registry"
)

// Defaults for zero Config fields.
const (
	DefaultMaxMessage = 64 << 10
	DefaultMaxIDs     = 10000
	DefaultHeartbeat  = 240 * time.Second
)

// Sessions finds where users and keys are connected; store.Sessions
// satisfies it. Errors wrapping store.ErrUnavailable (or any other error)
// answer 503.
type Sessions interface {
	// KeysByMids returns, per mid, its keys and the node each is bound to.
	KeysByMids(ctx context.Context, mids []int64) (map[int64]map[string]string, error)
	// NodesByKeys returns the node of each bound key.
	NodesByKeys(ctx context.Context, keys []string) (map[string]string, error)
}

// Producer publishes push messages; queue.Producer satisfies it. Errors
// wrapping queue.ErrFull or queue.ErrUnavailable (or any other error) answer
// 503.
type Producer interface {
	Publish(ctx context.Context, m *pb.PushMsg) error
}

// Nodes lists and follows registered nodes; registry.Watcher satisfies it.
type Nodes interface {
	Watch(ctx context.Context, role string) (<-chan []registry.Node, error)
	Nodes(ctx context.Context, role string) ([]registry.Node, error)
}

// Snapshot is the cluster-wide online figures.
type Snapshot struct {
	Conns, IPs int64
	// Rooms maps a full room id (type://room) to its connection count.
	Rooms map[string]int32
}

// OnlineSource provides the cluster-wide online figures (typically the sum
// of every cloud node's report in store.Online). The Snapshot it returns is
// only read, never modified.
type OnlineSource interface {
	Snapshot(ctx context.Context) (Snapshot, error)
}

// LiveCounts is implemented by an OnlineSource that can count one room or
// all connections without building a whole Snapshot; push answers use it.
type LiveCounts interface {
	RoomCount(ctx context.Context, room string) (int32, error)
	ConnCount(ctx context.Context) (int64, error)
}

// Config configures the REST API. Zero values take the defaults.
type Config struct {
	MaxMessage int           // message limit in bytes; default 64 KiB
	MaxIDs     int           // mids, keys or rooms per request; default 10,000
	NodeID     string        // this node's id; salts push ids
	Heartbeat  time.Duration // the client heartbeat pace nodes/weighted advertises; default 240 s
	Domain     string        // advertised in nodes/weighted; optional
}

// Logic serves the REST API. See the package documentation.
type Logic struct {
	cfg      Config
	sessions Sessions
	producer Producer
	nodes    Nodes
	online   OnlineSource
	log      *zap.Logger
	fails    *failLog
	// figuresLog thins out "online figures unavailable" lines.
	figuresLog logthin.Gate
	metrics    *metrics
	routes     map[string]*route

	live atomic.Pointer[nodeSet] // nil until Run receives the first list

	ids  idGen
	now  func() time.Time // time.Now; tests pin it
	rand func() float64   // in [0,1); weighted order; tests pin it
}

// New checks cfg, fills its defaults and returns a Logic over the given
// backends. log may be nil (no logging); metrics are registered on reg
// unless it is nil.
func New(cfg Config, s Sessions, p Producer, n Nodes, o OnlineSource, log *zap.Logger, reg prometheus.Registerer) (*Logic, error) {
	switch {
	case s == nil:
		return nil, errors.New("logic: nil Sessions")
	case p == nil:
		return nil, errors.New("logic: nil Producer")
	case n == nil:
		return nil, errors.New("logic: nil Nodes")
	case o == nil:
		return nil, errors.New("logic: nil OnlineSource")
	case cfg.MaxMessage < 0:
		return nil, fmt.Errorf("logic: MaxMessage %d is negative", cfg.MaxMessage)
	case cfg.MaxIDs < 0:
		return nil, fmt.Errorf("logic: MaxIDs %d is negative", cfg.MaxIDs)
	case cfg.Heartbeat < 0:
		return nil, fmt.Errorf("logic: Heartbeat %v is negative", cfg.Heartbeat)
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.MaxIDs == 0 {
		cfg.MaxIDs = DefaultMaxIDs
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if log == nil {
		log = zap.NewNop()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	l := &Logic{
		cfg:        cfg,
		sessions:   s,
		producer:   p,
		nodes:      n,
		online:     o,
		log:        log,
		fails:      newFailLog(log),
		figuresLog: logthin.Gate{Every: failLogEvery},
		metrics:    m,
		ids:        newIDGen(cfg.NodeID),
		now:        time.Now,
		rand:       mrand.Float64,
	}
	l.routes = l.buildRoutes()
	return l, nil
}

// Handler returns the handler of every REST route.
func (l *Logic) Handler() http.Handler { return router{l} }

// Run keeps the cache of live cloud nodes from the registry watch until ctx
// ends, then returns nil (also when ctx is already done). While the registry
// is unreachable it retries starting the watch and handlers ask Nodes on
// every request. It returns an error if the watch ends before ctx does (the
// cache is then dropped). Call it once.
func (l *Logic) Run(ctx context.Context) error {
	ch, err := registry.WatchWait(ctx, l.nodes, registry.RoleCloud, l.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("logic: watch cloud nodes: %w", err)
	}
	defer l.live.Store(nil)
	for {
		select {
		case <-ctx.Done():
			return nil
		case list, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("logic: cloud node watch ended")
			}
			l.live.Store(newNodeSet(list))
			l.log.Debug("cloud nodes changed", zap.Int("nodes", len(list)))
		}
	}
}

// idGen makes push ids: 16 hex digits of a per-process strictly increasing
// unix-nanosecond clock, then 8 hex digits of a per-process salt (a hash of
// the node id and random bytes). Ids sort roughly by time, are unique within
// a process by the clock and across processes unless two of them share both
// a nanosecond and a 32-bit salt.
type idGen struct {
	last atomic.Int64
	salt uint32
}

func newIDGen(nodeID string) idGen {
	h := fnv.New32a()
	_, _ = h.Write([]byte(nodeID))
	var r [8]byte
	_, _ = rand.Read(r[:]) // never fails (crypto/rand panics rather)
	_, _ = h.Write(r[:])
	return idGen{salt: h.Sum32()}
}

// next returns a new push id for a push created at now.
func (g *idGen) next(now time.Time) string {
	t := now.UnixNano()
	for {
		old := g.last.Load()
		n := max(t, old+1)
		if g.last.CompareAndSwap(old, n) {
			t = n
			break
		}
	}
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t))
	binary.BigEndian.PutUint32(b[8:], g.salt)
	const hexdigits = "0123456789abcdef"
	var out [24]byte
	for i, c := range b {
		out[2*i] = hexdigits[c>>4]
		out[2*i+1] = hexdigits[c&0xf]
	}
	return string(out[:])
}
