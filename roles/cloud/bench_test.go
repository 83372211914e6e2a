package cloud

import (
	"io"
	"net"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
)

// benchHub connects n sessions in room "bench" whose connections discard
// what is written. Their transport writes in place, as a socket with room
// in its buffer does, so a push measures the fan-out itself. The send queue
// is large so that lagging writers never turn into slow-consumer closes.
func benchHub(b *testing.B, n int) (*testHub, []string) {
	b.Helper()
	th := newTestHub(b, func(c *Config) { c.SendQueue = 1 << 20; c.Buckets = 32 })
	keys := make([]string, n)
	for i := range n {
		keys[i] = "k" + strconv.Itoa(i)
		c := &tryConn{fakeConn: newFakeConn("")}
		th.serveAs(c.fakeConn, c)
		c.in <- authFrame(b, protocol.Auth{Mid: int64(i), Key: keys[i], RoomID: "bench", Accepts: []int32{1000}})
		c.waitFrames(b, 1)
		c.discard.Store(true)
	}
	return th, keys
}

func checkNoneDropped(b *testing.B, th *testHub, n int) {
	b.Helper()
	if v := metricValue(b, th.metrics.SlowClients); v != 0 {
		b.Fatalf("%v sessions were dropped as slow during the benchmark", v)
	}
	if got := th.RoomCount("bench"); got != int32(n) {
		b.Fatalf("room has %d members after the benchmark, want %d", got, n)
	}
}

// measurePush runs push b.N times, requiring it to reach receivers each
// time, and adds allocs/receiver (all goroutines, writers included).
func measurePush(b *testing.B, receivers int, push func() int) {
	b.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if n := push(); n != receivers {
			b.Fatalf("push reached %d, want %d", n, receivers)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N)/float64(receivers), "allocs/receiver")
}

// BenchmarkPushRoom fans one frame out to a 1000-member room, on one
// processor and on all of them. The goal is no allocation per receiver: the
// frame bytes are shared and each session's queue reuses its backing array.
func BenchmarkPushRoom(b *testing.B) {
	const members = 1000
	for _, procs := range []int{1, runtime.NumCPU()} {
		b.Run("procs="+strconv.Itoa(procs), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			th, _ := benchHub(b, members)
			frame := protocol.EncodePush(1000, []byte("a room message of a typical size, say sixty-four bytes long...."))
			measurePush(b, members, func() int { return th.PushRoom("bench", frame) })
			checkNoneDropped(b, th, members)
		})
	}
}

// BenchmarkPushKeys pushes one frame to 1 or 100 keys among 1000 sessions.
func BenchmarkPushKeys(b *testing.B) {
	const sessions = 1000
	for _, n := range []int{1, 100} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			th, keys := benchHub(b, sessions)
			targets := keys[:n]
			frame := protocol.EncodePush(1000, []byte("a key message"))
			measurePush(b, n, func() int { return th.PushKeys(targets, 1000, frame) })
			checkNoneDropped(b, th, sessions)
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHeartbeat is one heartbeat round trip over loopback TCP from a
// raw client (its CPU included), with the session's reader parked between
// heartbeats and with a reader goroutine kept per connection: what parking
// costs per frame. 100 connections take turns, so each one's reader is
// idle (parked) when its heartbeat arrives.
func BenchmarkHeartbeat(b *testing.B) {
	for _, keep := range []bool{false, true} {
		name := "parked"
		if keep {
			name = "kept"
		}
		b.Run(name, func(b *testing.B) {
			// No store refresh per heartbeat: the test store's bookkeeping
			// would be most of what is measured.
			th := newTestHub(b, func(c *Config) { c.KeepReaders = keep; c.RefreshEvery = time.Hour })
			addr := th.startTCP(b)
			const n = 100
			conns := make([]net.Conn, n)
			for i := range conns {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = c.Close() })
				body := []byte(`{"mid":` + strconv.Itoa(i) + `,"key":"hb` + strconv.Itoa(i) + `"}`)
				if _, err := c.Write(protocol.Encode(1, protocol.OpAuth, 1, body)); err != nil {
					b.Fatal(err)
				}
				var authReply [protocol.HeaderLen]byte
				if _, err := io.ReadFull(c, authReply[:]); err != nil {
					b.Fatal(err)
				}
				conns[i] = c
			}
			hb := protocol.Encode(1, protocol.OpHeartbeat, 1, nil)
			reply := make([]byte, protocol.HeaderLen+4)
			b.ReportAllocs()
			before := cpuTime(b)
			i := 0
			for b.Loop() {
				c := conns[i%n]
				i++
				if _, err := c.Write(hb); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, reply); err != nil {
					b.Fatal(err)
				}
			}
			// The round trip waits on wakeups; CPU is the comparable figure.
			b.ReportMetric(float64((cpuTime(b)-before).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
