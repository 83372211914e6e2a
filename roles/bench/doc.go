// Package bench is `imcloud bench`, the load generator: it opens many goim
// client connections (TCP or WebSocket), pushes stamped messages through the
// REST API on a fixed schedule, and measures delivery (expected vs received,
// losses, duplicates, order), push→receive latency, and the CPU and memory
// the server and the bench itself spent.
//
// What it owns:
//
//   - config.go: Config, its defaults and validation (the command line in
//     cmd/bench.go maps flags onto it one to one).
//   - conn.go: one client connection: a minimal client-side WebSocket
//     (RFC 6455: upgrade, masked writes, unmasked reads, ping/close), Auth,
//     and the receive path that parses goim frames in place (op-9 batches
//     flattened) without allocating.
//   - dial_linux.go: the handshake without a goroutine: a non-blocking
//     socket (from a source IP with IP_BIND_ADDRESS_NO_PORT) and its
//     connect, then upgrade and Auth as a read loop sees the socket's
//     events; loop_linux.go: the epoll read loops that own every connection
//     from its connect on (dial_other.go, loop_other.go: a goroutine per
//     connection elsewhere).
//   - pool.go: the connections of one process: the connect loop (rate and
//     concurrency bounds), heartbeats spread over the interval, counters.
//   - push.go: the open-loop pusher over a small pool of keep-alive HTTP
//     connections; stamp.go: the message stamp (due time, push id, stream
//     sequence, target).
//   - histogram.go: fixed-size log-linear latency histogram (0.8% buckets).
//   - stats.go: per-stripe counters and Report, the state a shard reports.
//   - worker.go: worker processes (`imcloud bench worker`) above
//     Config.PerProcess connections, reporting JSON lines to the parent.
//   - proc.go: /proc/<pid>/status and stat for server RSS and CPU.
//   - run.go: the run (connect, settle, push, grace, summary, abort rules);
//     report.go: Summary, its JSON form and the text form.
//
// Concurrency: on Linux the connect loop opens a connection's socket,
// starts its connect and registers it with one of GOMAXPROCS read loops;
// from then on only that loop moves its handshake on, reads and parses it
// (the connection is the loop's from its registration: the connect loop
// touches it no more). Writes to a socket (the handshake's and pongs from
// the loop, heartbeats from the pool's heartbeat goroutine once the
// handshake is done) hold the connection's wmu, which also guards closing
// the descriptor, so a descriptor is never written after close; the
// handshake deadline's timer only shuts the socket down, under wmu, and
// the loop then fails the handshake. Receive-side counters are atomics striped by
// connection index; per-push delivery counts are one atomic per push. The
// pusher's schedule goroutine feeds one goroutine per HTTP connection. The
// parent (Run) only reads snapshots: Reports from the local pool, or the
// latest JSON line from each worker. Workers die with the parent
// (Pdeathsig on Linux, and when their stdin closes).
package bench
