package kafka

import (
	"context"
	"sync"
)

// windowFactor bounds the entries a window holds (taken and not yet
// committed, done or not) to windowFactor*maxInFlight, so a message whose
// done never comes cannot make the window grow without bound behind it.
const windowFactor = 16

// window tracks, for one partition claim, the messages handed to the
// handler in offset order and which of them are done. Whenever the oldest
// entries are accepted and done it drops them and reports the offset after
// the last one, the partition's new commit point. done may be called from
// any goroutine.
type window struct {
	mark        func(next int64) // called with the new commit point, under mu
	maxInFlight int
	maxLen      int

	mu      sync.Mutex
	entries []*entry // in offset order, from entries[head]
	head    int
	notDone int  // entries not done yet
	closed  bool // the claim ended: no more marks
	room    chan struct{}
}

// entry is one message handed to the handler.
type entry struct {
	w        *window
	offset   int64
	accepted bool // the handler returned nil
	done     bool // done was called
	dropped  bool // the handler refused it: this attempt is void
}

func newWindow(maxInFlight int, mark func(next int64)) *window {
	return &window{
		mark:        mark,
		maxInFlight: maxInFlight,
		maxLen:      windowFactor * maxInFlight,
		room:        make(chan struct{}, 1),
	}
}

// wait blocks until another message may be taken: fewer than maxInFlight
// messages are not done and the window is not full. It reports false if ctx
// ends first.
func (w *window) wait(ctx context.Context) bool {
	for {
		w.mu.Lock()
		ok := w.notDone < w.maxInFlight && len(w.entries)-w.head < w.maxLen
		w.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-w.room:
		case <-ctx.Done():
			return false
		}
	}
}

// take registers the message at offset as being handed to the handler. It
// must be followed by accept or drop before the next take.
func (w *window) take(offset int64) *entry {
	e := &entry{w: w, offset: offset}
	w.mu.Lock()
	w.entries = append(w.entries, e)
	w.notDone++
	w.mu.Unlock()
	return e
}

// accept records that the handler took e (returned nil).
func (e *entry) accept() {
	w := e.w
	w.mu.Lock()
	defer w.mu.Unlock()
	e.accepted = true
	w.advance()
}

// drop forgets e, the last entry taken, after the handler refused it; a
// done call for it later is ignored.
func (e *entry) drop() {
	w := e.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.entries); n > w.head && w.entries[n-1] == e {
		w.entries[n-1] = nil
		w.entries = w.entries[:n-1]
	}
	if !e.done {
		w.notDone--
	}
	e.dropped = true
	w.signal()
}

// markDone is the done func handed to the handler. Calls after the first,
// and calls for a dropped attempt, do nothing.
func (e *entry) markDone() {
	w := e.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.done || e.dropped {
		return
	}
	e.done = true
	w.notDone--
	w.advance()
	w.signal()
}

// advance drops the leading entries that are accepted and done and marks
// the offset after the last of them. The caller holds mu.
func (w *window) advance() {
	last := int64(-1)
	for w.head < len(w.entries) {
		e := w.entries[w.head]
		if !e.accepted || !e.done {
			break
		}
		last = e.offset
		w.entries[w.head] = nil
		w.head++
	}
	switch {
	case w.head == len(w.entries):
		w.entries, w.head = w.entries[:0], 0
	case w.head >= 1024 && 2*w.head >= len(w.entries):
		n := copy(w.entries, w.entries[w.head:])
		clear(w.entries[n:])
		w.entries, w.head = w.entries[:n], 0
	}
	if last >= 0 && !w.closed {
		w.mark(last + 1)
	}
	if last >= 0 {
		w.signal()
	}
}

// signal wakes a wait call. The caller holds mu.
func (w *window) signal() {
	select {
	case w.room <- struct{}{}:
	default:
	}
}

// close stops marking: the claim has ended, and what is not done by now is
// delivered again to the partition's next owner.
func (w *window) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// pending returns the number of entries held and of those not done.
func (w *window) pending() (held, notDone int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.entries) - w.head, w.notDone
}
