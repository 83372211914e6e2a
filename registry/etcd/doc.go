// Package etcd is the etcd-backed node registry used when roles run as
// separate processes: a *Registry is both the registry.Registrar a node
// publishes itself with and the registry.Watcher job and logic follow, held
// to the contract suite in registry/registrytest.
//
// It owns one etcd client, the registrations made through it (each with its
// lease and a keeper goroutine) and one goroutine per active watch. The
// subpackage etcdtest starts private etcd servers for tests.
//
// # Key layout
//
//	<prefix>/nodes/<role>/<id>  ->  JSON registry.Node, attached to a lease
//
// The prefix defaults to /imcloud. Roles must not contain a slash; ids may.
// A watch of a role follows the prefix <prefix>/nodes/<role>/ (with the
// trailing slash, so role "a" never sees role "ab"). Records that are not
// valid JSON are logged and skipped. A watch resumes from the revision it
// reached, so every few seconds it checks that etcd's history still holds
// that revision: an etcd restarted without its data (or restored from an
// older backup) starts again from revision 1, and a watch from the old
// revision would wait, without an error, until the new history caught up;
// the watch reloads instead. The nodes the new history lacks are kept in
// the list for a lease TTL and a history check (15 s by default): the live
// ones notice the reset and register again meanwhile, so job and logic never
// see an empty list because etcd lost its data; the others are dropped then,
// as their leases would have expired.
//
// # Leases, keepalive and re-registration
//
// Register grants a lease of Config.TTL (default 10s) and creates the key in
// a transaction that succeeds only if the key does not exist (create
// revision 0); otherwise it revokes the new lease and fails with an error
// wrapping registry.ErrDuplicateID, whoever holds the key. A process that
// restarts inside its old lease's TTL therefore finds its own id still held;
// registry.RegisterWait retries until the old lease expires and logs it.
//
// A keeper goroutine per registration keeps the lease alive (KeepAlive).
// When the lease is lost — revoked, expired on the server, or not renewed for
// a TTL because etcd was unreachable (the client then gives it up) — the
// keeper re-registers by itself, with the latest record (as last passed to
// Register or Update, Updated stamped anew), retrying with backoff (0.2s
// doubling up to half the TTL, at most 5s) and logging each step. It writes
// the key under a new lease if the key is absent or still under its previous
// lease (etcd keeps leases across a restart and renews them, so after a long
// outage the key is usually still there), then revokes the previous lease.
// If another lease holds the key, it logs an error on every attempt and keeps
// retrying without overwriting it.
//
// Update writes the record under the current lease in a transaction that
// compares the key's lease: if the key is no longer under it, Update fails
// with ErrLeaseLost and wakes the keeper, which publishes the record kept by
// Update. Update of a node not registered here fails with
// registry.ErrNotRegistered. Deregister stops the keeper and revokes the
// lease, so the key disappears at once; a node not registered here is left
// alone. Close stops keepers and watches and closes the client without
// deregistering: the keys expire with their leases, as after a crash.
//
// # Watches
//
// Watch reads the role's keys, sends the ID-sorted list at once, then
// follows an etcd watch from the next revision, sending the full list after
// each change. If the etcd watch fails (etcd restarted without a leader, the
// revision compacted, the stream closed) the watch reloads the role with
// backoff and watches again from the reloaded revision; meanwhile the last
// list stands — a watcher never sees an empty list because etcd is down — and
// a list is sent after the reload only if it differs.
//
// # Concurrency
//
//   - Every method is safe for concurrent use. r.mu guards the registrations
//     and the closed flag; each registration's writes (Update and
//     re-registration) are serialized by its own one-slot semaphore (so
//     waiting for it honours the caller's ctx), and a record is always
//     written under the lease in use; its record and lease are guarded by
//     its mu, and only its keeper changes the lease.
//   - Every etcd request is bounded by 5s (or the caller's earlier deadline),
//     so calls fail rather than block while etcd is unreachable.
//   - Each watch has a 1-buffered channel written only by its goroutine,
//     which replaces an unread list with the newer one: a slow reader only
//     ever misses intermediate lists, never the latest. Lists are fresh deep
//     copies the receiver owns. The channel is closed when the watch's ctx
//     ends or the registry is closed.
//   - Close cancels every keeper and watch goroutine and waits for them
//     before closing the client; Deregister waits for its keeper. No
//     goroutine outlives Close.
package etcd
