package roles

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/imcloud/imcloud/queue"
	"github.com/imcloud/imcloud/queue/kafka"
	"github.com/imcloud/imcloud/registry"
	"github.com/imcloud/imcloud/registry/etcd"
	rmemory "github.com/imcloud/imcloud/registry/memory"
	"github.com/imcloud/imcloud/store"
	smemory "github.com/imcloud/imcloud/store/memory"
	sredis "github.com/imcloud/imcloud/store/redis"
)

// backends are the queue, registry and store a process uses, picked by config.
type backends struct {
	registrar registry.Registrar
	watcher   registry.Watcher
	producer  queue.Producer
	consumer  queue.Consumer
	sessions  store.Sessions
	online    store.Online
	// shared reports whether the store is shared with other processes (so
	// online figures must come from it rather than from the local hub).
	shared  bool
	closers []func() error
	// pending reports, per backend client still connecting in the
	// background, why it is not ready (nil once it is).
	pending []func() error
	// kafkaStats reads the Kafka consumer's counters; false while it is
	// not connected. Nil without a Kafka consumer.
	kafkaStats func() (kafka.Stats, bool)
	// redisPool reads the Redis store's pool figures; nil without one.
	redisPool func() sredis.PoolStats
}

// openBackends builds the backends role needs. Nothing here waits for a
// server: clients connect lazily and report unavailability per call.
func openBackends(ctx context.Context, cfg *Config, role string, log *zap.Logger) (_ *backends, err error) {
	b := &backends{}
	defer func() {
		if err != nil {
			_ = b.close(StopTimeout)
		}
	}()
	needQueue := role != RoleCloud
	needStore := role != RoleJob

	switch cfg.Registry.Backend {
	case "memory":
		r := rmemory.New()
		b.registrar, b.watcher = r, r
	case "etcd":
		e := cfg.Registry.Etcd
		r, err := etcd.New(etcd.Config{Endpoints: e.Endpoints, Prefix: e.Prefix, TTL: e.TTL}, log.Named("etcd"))
		if err != nil {
			return nil, fmt.Errorf("registry.etcd: %w", err)
		}
		b.registrar, b.watcher = r, r
		b.closers = append(b.closers, r.Close)
	default:
		return nil, fmt.Errorf("registry.backend: unknown backend %q", cfg.Registry.Backend)
	}

	if needQueue {
		if err := openQueue(ctx, b, cfg, role, log); err != nil {
			return nil, err
		}
	}

	if needStore {
		switch cfg.Store.Backend {
		case "memory":
			s := smemory.New(cfg.Store.TTL)
			b.sessions, b.online = s, s
		case "redis":
			redisLogger(log)
			rc := cfg.Store.Redis
			s, err := sredis.New(sredis.Config{Addr: rc.Addr, Password: rc.Password, Prefix: rc.Prefix, DB: rc.DB, TTL: cfg.Store.TTL})
			if err != nil {
				return nil, fmt.Errorf("store.redis: %w", err)
			}
			b.sessions, b.online, b.shared = s, s, true
			b.closers = append(b.closers, s.Close)
			b.redisPool = s.PoolStats
		default:
			return nil, fmt.Errorf("store.backend: unknown backend %q", cfg.Store.Backend)
		}
	}
	return b, nil
}

// close closes every backend client, newest first, and gives up waiting
// after timeout: a client stuck on an unreachable server (sarama's
// consumer-group close looks for its coordinator without a deadline of its
// own, its producer waits out its retries) is abandoned, since the process
// is leaving and the server sees the connection drop.
func (b *backends) close(timeout time.Duration) error {
	closers := b.closers
	b.closers = nil
	done := make(chan error, 1)
	go func() {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		done <- errors.Join(errs...)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("a backend client did not close within %v (its server is unreachable); abandoned", timeout)
	}
}

// zapRedisLogger routes go-redis's own messages (dial failures while Redis
// is down) into zap at debug level; the store reports outages itself.
type zapRedisLogger struct{ log *zap.SugaredLogger }

func (l zapRedisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debugf(format, v...)
}

var redisLoggerOnce sync.Once

// redisLogger installs zapRedisLogger; go-redis has one process-wide logger.
func redisLogger(log *zap.Logger) {
	redisLoggerOnce.Do(func() { goredis.SetLogger(zapRedisLogger{log.Named("redis").Sugar()}) })
}
