package cloud

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
)

// TestWorkers: every connection is served and counted done, busy workers
// do not hold others up, and stop sends idle workers away.
func TestWorkers(t *testing.T) {
	var done atomic.Int32
	p := newWorkers(func() { done.Add(1) })
	base := runtime.NumGoroutine()
	release := make(chan struct{})
	served := make(chan net.Conn, 4)
	blocking := func(c net.Conn) { served <- c; <-release }
	conns := make([]net.Conn, 4)
	for i := range conns {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		conns[i] = a
	}
	for _, c := range conns[:3] {
		p.run(c, blocking) // three at once: three workers
	}
	for range 3 {
		<-served
	}
	close(release)
	eventually(t, "three handshakes done", func() bool { return done.Load() == 3 })
	p.run(conns[3], func(c net.Conn) { served <- c })
	if c := <-served; c != conns[3] {
		t.Fatal("served the wrong connection")
	}
	eventually(t, "four handshakes done", func() bool { return done.Load() == 4 })
	p.stop()
	p.stop() // idempotent
	eventually(t, "workers gone after stop", func() bool { return runtime.NumGoroutine() <= base })
}

// TestWorkersCallOn: callOn returns only after fn ran, on a goroutine of
// the pool (not counted as a handshake), before and after stop.
func TestWorkersCallOn(t *testing.T) {
	var done atomic.Int32
	p := newWorkers(func() { done.Add(1) })
	for _, stopped := range []bool{false, true} {
		if stopped {
			p.stop()
		}
		ran := false
		caller := make(chan struct{})
		p.callOn(func() {
			ran = true
			select {
			case <-caller:
				t.Error("fn ran after callOn returned")
			default:
			}
		})
		close(caller)
		if !ran {
			t.Fatalf("stopped %v: callOn returned before fn ran", stopped)
		}
	}
	if n := done.Load(); n != 0 {
		t.Fatalf("calls counted as %d handshakes", n)
	}
}
