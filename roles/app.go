package roles

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/imcloud/imcloud/registry"
	"github.com/imcloud/imcloud/roles/cloud"
	"github.com/imcloud/imcloud/roles/job"
	"github.com/imcloud/imcloud/roles/logic"
)

// Roles that App can run.
const (
	RoleAll   = "all"
	RoleCloud = "cloud"
	RoleJob   = "job"
	RoleLogic = "logic"
)

// DefaultJobAdminAddr is where a job serves /metrics and /healthz when
// node.admin_addr is empty, since it has no listener of its own.
const DefaultJobAdminAddr = "127.0.0.1:3119"

// StopTimeout bounds each service's drain at shutdown.
const StopTimeout = 5 * time.Second

// App is one process: the services of a role, assembled from config.
type App struct {
	role     string
	cfg      Config
	log      *zap.Logger
	b        *backends
	services []Service
	ready    atomic.Bool

	cloud *cloudService
	logic *logicService
	admin *adminService
}

// Addrs are the addresses an App actually listens on (useful with port 0).
type Addrs struct {
	TCP, WS, GRPC, HTTP, Admin string
}

// New assembles role from cfg; cfg must have passed Validate(role).
func New(cfg Config, role string, log *zap.Logger) (_ *App, err error) {
	hasCloud := role == RoleAll || role == RoleCloud
	hasJob := role == RoleAll || role == RoleJob
	hasLogic := role == RoleAll || role == RoleLogic
	if !hasCloud && !hasJob && !hasLogic {
		return nil, fmt.Errorf("unknown role %q", role)
	}
	a := &App{role: role, cfg: cfg, log: log}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	// The admin endpoints ride on a role's own listener unless
	// node.admin_addr gives them one; the profiler is left off the client
	// WebSocket port (a lone cloud node's), which the public reaches.
	admin := adminHandler(reg, a.readiness, true)

	nodeID, err := a.cfg.NodeID()
	if err != nil {
		return nil, fmt.Errorf("node.id: %w", err)
	}
	if a.b, err = openBackends(context.Background(), &a.cfg, role, log); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = a.b.close(StopTimeout)
		}
	}()
	if a.b.redisPool != nil {
		if err = reg.Register(newRedisPoolCollector(a.b.redisPool)); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}

	// Admin endpoints ride on the role's own HTTP listener unless
	// node.admin_addr names one; a lone job has none, so it gets a default.
	adminAddr, implicit := a.cfg.Node.AdminAddr, false
	if adminAddr == "" && role == RoleJob {
		adminAddr, implicit = DefaultJobAdminAddr, true
	}
	if adminAddr != "" {
		a.admin = &adminService{addr: adminAddr, implicit: implicit, handler: admin, log: log.Named("admin")}
		a.services = append(a.services, a.admin)
		admin = nil
	}

	if hasCloud {
		m, err := cloud.NewMetrics(reg)
		if err != nil {
			return nil, err
		}
		var cloudAdmin http.Handler
		if !hasLogic && admin != nil {
			cloudAdmin = adminHandler(reg, a.readiness, false)
		}
		if a.cloud, err = newCloudService(&a.cfg, role, nodeID, log.Named("cloud"), a.b, m, cloudAdmin); err != nil {
			return nil, err
		}
		a.services = append(a.services, a.cloud)
	}
	if hasJob {
		m, err := job.NewMetrics(reg)
		if err != nil {
			return nil, err
		}
		if a.b.kafkaStats != nil {
			if err := reg.Register(newKafkaCollector(a.b.kafkaStats)); err != nil {
				return nil, fmt.Errorf("metrics: %w", err)
			}
		}
		dial := job.GRPCDialer
		if a.cloud != nil {
			// The hub in this process is reached directly, not over gRPC.
			dial = job.LocalDialer(nodeID, a.cloud.svc, job.GRPCDialer)
		}
		jc := a.cfg.Job
		j, err := job.New(job.Config{
			RoomBatchWindow: jc.RoomBatchWindow, RoomBatchSize: jc.RoomBatchSize,
			NodeQueue: jc.NodeQueue, MaxAge: jc.MaxAge,
		}, a.b.watcher, dial, log.Named("job"), m)
		if err != nil {
			return nil, err
		}
		if err := reg.Register(newNodeQueueCollector(j.NodeQueues)); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		a.services = append(a.services, &jobService{log: log.Named("job"), b: a.b, job: j})
	}
	if hasLogic {
		so := &storeOnline{online: a.b.online, maxAge: time.Second}
		var online logic.OnlineSource = so
		if a.cloud != nil && !a.b.shared {
			// Nobody else reports to an in-process store: ask the hub, live.
			online = hubOnline{a.cloud.hub}
		}
		l, err := logic.New(logic.Config{
			MaxMessage: a.cfg.Logic.MaxMessage, MaxIDs: a.cfg.Logic.MaxIDs, NodeID: nodeID,
			// The pace that leaves a client one missed heartbeat before the
			// cloud nodes' timeout, as goim's 240 s does for its 480 s.
			Heartbeat: a.cfg.Cloud.HeartbeatTimeout / logic.HeartbeatMax,
		}, a.b.sessions, a.b.producer, a.b.watcher, online, log.Named("logic"), reg)
		if err != nil {
			return nil, err
		}
		so.live = l.NodeLive // set before any service starts
		// Pushes by mid and key route by the registry's view: not ready
		// until it is in (a logic started while etcd is down).
		a.b.pending = append(a.b.pending, func() error {
			if _, known := l.NodeLive(""); !known {
				return errors.New("waiting for the node registry's list of cloud nodes")
			}
			return nil
		})
		a.logic = &logicService{cfg: &a.cfg, log: log.Named("logic"), logic: l, admin: admin}
		a.services = append(a.services, a.logic)
	}
	return a, nil
}

// ErrConfig is wrapped by errors of Run that a restart will not fix, since
// they come from the configuration (a node.id another live node holds).
var ErrConfig = errors.New("configuration error")

// Run starts every service, serves until ctx ends or one fails, then stops
// them in reverse order and closes the backends.
func (a *App) Run(ctx context.Context) error {
	err := runServices(ctx, a.log, a.services, StopTimeout, a.cfg.Node.LameDuck, a.ready.Store)
	if cerr := a.b.close(StopTimeout); cerr != nil {
		a.log.Warn("closing backends", zap.Error(cerr))
	}
	return err
}

// Ready reports whether every service has started and none is stopping.
func (a *App) Ready() bool { return a.ready.Load() }

// readiness is nil when the App is Ready and every backend client is
// connected; otherwise it says what is missing.
func (a *App) readiness() error {
	if !a.ready.Load() {
		for _, s := range a.services {
			if w, ok := s.(waiter); ok {
				if why := w.Waiting(); why != "" {
					return fmt.Errorf("starting: %s: %s", s.Name(), why)
				}
			}
		}
		return errors.New("starting or stopping")
	}
	for _, p := range a.b.pending {
		if err := p(); err != nil {
			return err
		}
	}
	return nil
}

// waiter is a service that can say what its Start waits for.
type waiter interface {
	Waiting() string
}

// Addrs returns the bound addresses; call it once Ready, except for Admin,
// which may be read earlier ("" until the admin listener is up).
func (a *App) Addrs() Addrs {
	var out Addrs
	if a.cloud != nil && a.cloud.tcpLn != nil {
		out.TCP = a.cloud.tcpLn.Addr().String()
		out.WS = a.cloud.wsLn.Addr().String()
		out.GRPC = a.cloud.grpcLn.Addr().String()
	}
	if a.logic != nil && a.logic.ln != nil {
		out.HTTP = a.logic.ln.Addr().String()
	}
	if a.admin != nil {
		if addr := a.admin.bound.Load(); addr != nil {
			out.Admin = *addr
		}
	}
	return out
}

// NodeCount is the number of cloud nodes in the registry (for tests and tools).
func (a *App) NodeCount(ctx context.Context) (int, error) {
	nodes, err := a.b.watcher.Nodes(ctx, registry.RoleCloud)
	return len(nodes), err
}
