package kafka

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// marks records the commit points a window reports.
type marks struct {
	mu  sync.Mutex
	got []int64
}

func (m *marks) mark(next int64) { m.mu.Lock(); m.got = append(m.got, next); m.mu.Unlock() }

func (m *marks) list() []int64 { m.mu.Lock(); defer m.mu.Unlock(); return slices.Clone(m.got) }

// takeAll takes and accepts the messages at offsets, returning their entries.
func takeAll(w *window, offsets ...int64) []*entry {
	var es []*entry
	for _, off := range offsets {
		e := w.take(off)
		e.accept()
		es = append(es, e)
	}
	return es
}

func TestWindowMarksContiguousDone(t *testing.T) {
	var m marks
	w := newWindow(100, m.mark)
	// Offsets need not be contiguous (compaction, transaction markers).
	es := takeAll(w, 10, 11, 13, 14, 15)
	es[1].markDone()
	es[3].markDone()
	if got := m.list(); len(got) != 0 {
		t.Fatalf("marked %v before the first message was done", got)
	}
	es[0].markDone()
	es[0].markDone() // second call: no effect
	if got, want := m.list(), []int64{12}; !slices.Equal(got, want) {
		t.Fatalf("marks %v, want %v", got, want)
	}
	es[2].markDone()
	if got, want := m.list(), []int64{12, 15}; !slices.Equal(got, want) {
		t.Fatalf("marks %v, want %v", got, want)
	}
	es[4].markDone()
	if got, want := m.list(), []int64{12, 15, 16}; !slices.Equal(got, want) {
		t.Fatalf("marks %v, want %v", got, want)
	}
	if held, notDone := w.pending(); held != 0 || notDone != 0 {
		t.Fatalf("pending = %d held, %d not done; want 0, 0", held, notDone)
	}
}

// TestWindowDoneBeforeAccept: a handler may call done before it returns;
// the offset is marked only once the handler has returned nil.
func TestWindowDoneBeforeAccept(t *testing.T) {
	var m marks
	w := newWindow(100, m.mark)
	e := w.take(0)
	e.markDone()
	if got := m.list(); len(got) != 0 {
		t.Fatalf("marked %v before the handler returned", got)
	}
	e.accept()
	if got, want := m.list(), []int64{1}; !slices.Equal(got, want) {
		t.Fatalf("marks %v, want %v", got, want)
	}
}

// TestWindowDrop: a refused attempt is forgotten, even if the handler
// called its done, and the retry is tracked afresh.
func TestWindowDrop(t *testing.T) {
	var m marks
	w := newWindow(100, m.mark)
	takeAll(w, 0)[0].markDone()
	refused := w.take(1)
	refused.markDone() // a misbehaving handler: done, then an error
	refused.drop()
	refused.markDone()
	if held, notDone := w.pending(); held != 0 || notDone != 0 {
		t.Fatalf("after drop: %d held, %d not done; want 0, 0", held, notDone)
	}
	retry := w.take(1)
	retry.accept()
	if got, want := m.list(), []int64{1}; !slices.Equal(got, want) {
		t.Fatalf("marks %v, want %v (the refused attempt must not commit)", got, want)
	}
	retry.markDone()
	if got, want := m.list(), []int64{1, 2}; !slices.Equal(got, want) {
		t.Fatalf("marks %v, want %v", got, want)
	}
}

func TestWindowClosedStopsMarking(t *testing.T) {
	var m marks
	w := newWindow(100, m.mark)
	es := takeAll(w, 0, 1)
	es[0].markDone()
	w.close()
	es[1].markDone()
	if got, want := m.list(), []int64{1}; !slices.Equal(got, want) {
		t.Fatalf("marks %v, want %v (nothing after close)", got, want)
	}
}

func TestWindowBackpressure(t *testing.T) {
	w := newWindow(3, func(int64) {})
	es := takeAll(w, 0, 1, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if w.wait(ctx) {
		t.Fatal("wait returned with 3 of 3 messages not done")
	}
	released := make(chan bool)
	go func() { released <- w.wait(t.Context()) }()
	time.Sleep(10 * time.Millisecond)
	es[2].markDone() // not the oldest: frees in-flight room all the same
	select {
	case ok := <-released:
		if !ok {
			t.Fatal("wait failed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return after done")
	}
}

// TestWindowLengthBound: behind a message never done, the window holds at
// most windowFactor*maxInFlight entries.
func TestWindowLengthBound(t *testing.T) {
	w := newWindow(2, func(int64) {})
	takeAll(w, 0) // never done
	for off := int64(1); ; off++ {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		ok := w.wait(ctx)
		cancel()
		if !ok {
			if held, _ := w.pending(); held != windowFactor*2 {
				t.Fatalf("window blocked at %d entries, want %d", held, windowFactor*2)
			}
			return
		}
		takeAll(w, off)[0].markDone()
	}
}

// TestWindowConcurrentDone calls done from many goroutines in any order.
func TestWindowConcurrentDone(t *testing.T) {
	const n = 5000
	var last int64
	var mu sync.Mutex
	w := newWindow(n, func(next int64) {
		mu.Lock()
		defer mu.Unlock()
		if next <= last {
			t.Errorf("mark %d after %d", next, last)
		}
		last = next
	})
	var wg sync.WaitGroup
	for off := range int64(n) {
		e := w.take(off)
		wg.Go(e.markDone)
		e.accept()
	}
	wg.Wait()
	if last != n {
		t.Fatalf("last mark %d, want %d", last, n)
	}
}
