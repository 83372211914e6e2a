package cloud

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/store"
)

// rebindWorkers bounds the store calls a rebind pass has in flight.
const rebindWorkers = 8

// Rebind states: no pass, a pass, a pass and another asked for after it.
const (
	rebindIdle int32 = iota
	rebindRunning
	rebindAgain
)

// RefreshAll binds every session again, now, in the background, and makes
// each refresh its bindings at its next heartbeat too: call it when the
// store may have lost them (a Redis restarted without persistence). Until
// the bindings are back, pushes by mid and key find nobody, so waiting for
// the heartbeats (up to goim's 240 s) would lose them. Calls during a pass
// coalesce into one more pass after it.
func (h *Hub) RefreshAll() {
	h.storeGen.Add(1)
	for {
		st := h.rebindState.Load()
		if st == rebindAgain {
			return
		}
		if h.rebindState.CompareAndSwap(st, st+1) {
			if st == rebindIdle {
				go h.rebindLoop()
			}
			return
		}
	}
}

func (h *Hub) rebindLoop() {
	for {
		h.rebindPass()
		if h.rebindState.CompareAndSwap(rebindRunning, rebindIdle) {
			return
		}
		h.rebindState.Store(rebindRunning) // it was rebindAgain
	}
}

// rebindPass binds every session of the hub again, a few at a time. A
// store failure ends the pass: the store is down again, and the report
// loop calls RefreshAll once it answers.
func (h *Hub) rebindPass() {
	var all []*Session
	h.each(func(s *Session) { all = append(all, s) })
	start := time.Now()
	work := make(chan *Session)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bound int
	var failure error
	for range rebindWorkers {
		wg.Go(func() {
			for s := range work {
				ok, err := h.rebindNow(s)
				mu.Lock()
				if ok {
					bound++
				} else if err != nil && failure == nil {
					failure = err
				}
				mu.Unlock()
			}
		})
	}
	for _, s := range all {
		mu.Lock()
		stop := failure != nil
		mu.Unlock()
		if stop || h.shutdown.Load() {
			break
		}
		work <- s
	}
	close(work)
	wg.Wait()
	took := time.Since(start).Round(time.Millisecond)
	if failure != nil {
		h.log.Warn("rebinding sessions after a store loss stopped: the store failed again",
			zap.Int("rebound", bound), zap.Int("sessions", len(all)), zap.Duration("took", took), zap.Error(failure))
		return
	}
	h.log.Info("sessions rebound after a store loss", zap.Int("sessions", bound), zap.Duration("took", took))
}

// rebindNow binds s again unless it has left the hub, and reports whether
// it did. It refreshes rather than binds: what the store lost is bound
// again, but a key that a newer connection took on another node meanwhile
// (this node frozen past its lease, say) stays there, and s, stale, is
// closed as replaced. If s leaves while the call is under way, its
// teardown's unbind may have run first: the binding just written is undone
// as that unbind would have, and given back to a newer session with the
// key, if there is one (as teardown does).
func (h *Hub) rebindNow(s *Session) (bool, error) {
	if h.current(s.key) != s {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	if err := h.store.Refresh(ctx, h.storeSession(s, s.roomName())); err != nil {
		if errors.Is(err, store.ErrMoved) {
			h.movedAway(s, connLog{h.log, s.conn})
			return false, nil
		}
		return false, err
	}
	if h.current(s.key) != s {
		if _, err := h.store.Unbind(ctx, h.storeSession(s, "")); err != nil {
			return false, err
		}
		h.restoreBinding(s.key)
		return false, nil
	}
	return true, nil
}
