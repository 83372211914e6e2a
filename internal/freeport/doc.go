// Package freeport hands tests loopback TCP ports for servers they start in
// other processes (redis-server, etcd, imcloud itself), where a listener
// cannot be passed down.
//
// A port found by listening on port 0 and closing the listener comes from
// the kernel's ephemeral range, so any outgoing connection made before the
// server binds it (a client dialling etcd, another test package running in
// parallel) may take it as its local port, and the server then fails with
// "address already in use". The same happens when a test restarts a server on
// its old port. Ports from this package lie outside the ephemeral range, which
// outgoing connections never use, and each is reserved machine-wide with a
// lock file held until the process exits, so test binaries running side by
// side (as one user) never get the same port.
//
// Concurrency: safe for concurrent use within and across processes; it keeps
// no state in memory (the reservations are the open lock files).
package freeport
