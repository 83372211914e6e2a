package roles

import (
	"errors"
	"fmt"

	"github.com/imcloud/imcloud/queue"
	qmemory "github.com/imcloud/imcloud/queue/memory"
	"github.com/imcloud/imcloud/registry"
	rmemory "github.com/imcloud/imcloud/registry/memory"
	"github.com/imcloud/imcloud/store"
	smemory "github.com/imcloud/imcloud/store/memory"
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
}

func openBackends(cfg *Config) (*backends, error) {
	b := &backends{}
	switch cfg.Registry.Backend {
	case "memory":
		r := rmemory.New()
		b.registrar, b.watcher = r, r
	default:
		return nil, fmt.Errorf("registry.backend: %q is not available in this build", cfg.Registry.Backend)
	}
	switch cfg.Queue.Backend {
	case "memory":
		q := qmemory.New(cfg.Queue.Memory.Size)
		b.producer, b.consumer = q, q
		b.closers = append(b.closers, q.Close)
	default:
		return nil, fmt.Errorf("queue.backend: %q is not available in this build", cfg.Queue.Backend)
	}
	switch cfg.Store.Backend {
	case "memory":
		s := smemory.New(cfg.Store.TTL)
		b.sessions, b.online = s, s
	default:
		return nil, fmt.Errorf("store.backend: %q is not available in this build", cfg.Store.Backend)
	}
	return b, nil
}

func (b *backends) close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(errs...)
}
