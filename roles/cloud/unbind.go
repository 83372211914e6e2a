package cloud

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/store"
)

// Unbinding in batches.
//
// A session's teardown removes its bindings from the store. When thousands
// of connections close within a second (a load balancer reset, a client
// fleet restarting), one store call per teardown queued past the store
// client's pool timeout and ~4% of the unbinds were lost: their bindings
// stayed until store.ttl. So teardowns hand their unbinds to one goroutine,
// which sends what has queued up as one UnbindMany (a Redis pipeline). When
// the queue is full the teardown waits for room, up to the store timeout
// (it would wait as long for a store call of its own), and then unbinds
// itself.

// unbindQueue is how many teardowns may wait for the unbinder.
const unbindQueue = 4096

// maxUnbindBatch bounds one UnbindMany.
const maxUnbindBatch = 512

// queueUnbind hands s's unbind to the unbinder, reporting false if the
// queue is closed or stays full for the store timeout.
func (h *Hub) queueUnbind(s *Session) bool {
	h.unbindMu.RLock()
	defer h.unbindMu.RUnlock()
	if h.unbindClosed {
		return false
	}
	select {
	case h.unbinds <- s:
		return true
	default:
	}
	full := time.NewTimer(h.cfg.StoreTimeout)
	defer full.Stop()
	select {
	case h.unbinds <- s:
		return true
	case <-full.C:
		return false
	}
}

// runUnbinds is the unbinder: it unbinds queued sessions in batches until
// the queue is closed (Shutdown) and drained.
func (h *Hub) runUnbinds() {
	defer close(h.unbindsDone)
	batch := make([]*Session, 0, maxUnbindBatch)
	sessions := make([]store.Session, 0, maxUnbindBatch)
	for s := range h.unbinds {
		batch = append(batch[:0], s)
	more:
		for len(batch) < maxUnbindBatch {
			select {
			case s, ok := <-h.unbinds:
				if !ok {
					break more
				}
				batch = append(batch, s)
			default:
				break more
			}
		}
		sessions = sessions[:0]
		for _, s := range batch {
			sessions = append(sessions, h.storeSession(s, ""))
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
		err := h.store.UnbindMany(ctx, sessions)
		cancel()
		if err != nil {
			h.log.Warn("session store unbind failed", zap.Int("sessions", len(batch)), zap.Error(err))
		}
		for _, s := range batch {
			h.restoreBinding(s.key)
		}
		clear(batch)
		clear(sessions)
	}
}

// stopUnbinds closes the queue and waits until what it held is unbound or
// ctx ends.
func (h *Hub) stopUnbinds(ctx context.Context) {
	h.unbindMu.Lock()
	if !h.unbindClosed {
		h.unbindClosed = true
		close(h.unbinds)
	}
	h.unbindMu.Unlock()
	select {
	case <-h.unbindsDone:
	case <-ctx.Done():
	}
}
