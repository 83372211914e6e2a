// Package cloud is the connection hub: it accepts TCP and WebSocket clients,
// authenticates them, keeps them in a sharded map of sessions and rooms
// (buckets), answers heartbeats, room changes and sub/unsub, and delivers
// pushes handed to it by job, in process or over gRPC (a thin adapter).
//
// Concurrency: each bucket has its own RWMutex guarding its sessions and
// rooms. A room push or broadcast walks the buckets spread over up to
// GOMAXPROCS goroutines and returns when all are done; under a bucket's read
// lock it hands the shared bytes to each member, which either queues them or
// writes them in place without blocking, so no lock is ever held across a
// blocking write. Handshakes and the readers' session store calls run on
// reused worker goroutines (their stacks stay grown); each session has at
// most one reader at a time, which alone tears the session down. Between
// frames the reader parks (park.go, on Linux unless Config.KeepReaders): the
// socket waits in the hub's epoll set and a worker resumes the reader when
// it is readable, its heartbeat deadline passes or the server closes it, so
// an idle connection holds no reader goroutine; Session.parked, under the
// session's lock, picks the one resumer. Without parking the reader is a
// goroutine of its own that keeps a small stack, since it waits with little
// on it and never calls the store itself (see runSession). Each session has
// at most one writer goroutine,
// started when something is queued and gone when the queue is empty, so an
// idle connection holds no writer. A session whose queue overflows is closed
// as a slow consumer; nobody else waits for it. Pushes to an idle session
// are written in place by the fan-out (a non-blocking write on the socket's
// descriptor, which the connection's Close stops before it closes the
// socket); only what the socket does not take at once goes to a writer
// goroutine.
//
// A teardown's unbind goes to one unbinder goroutine per hub (unbind.go),
// which sends the unbinds that queued up as one UnbindMany, so a mass
// disconnect is a few store round trips; the queue is closed and drained at
// Shutdown, after the last session ended.
//
// WebSocket upgrades are read by WSListener on the connection's own
// goroutine, which then becomes its reader; requests for other paths are
// handed, unread, to an http.Server through WSListener.Accept.
package cloud
