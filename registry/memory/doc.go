// Package memory is the in-process node registry used when every role runs
// in one process (imcloud all): a single *Registry is both the
// registry.Registrar and the registry.Watcher.
//
// It owns the registered nodes, kept per role and id, and the set of active
// watches. Nodes live until deregistered: there are no leases, since a
// process that dies takes the registry with it.
//
// Concurrency rules:
//
//   - Every method is safe for concurrent use; one mutex guards the nodes
//     and the watches, and every change is published to the watches of its
//     role while it is held, so each watch sees changes in order.
//   - Each watch has a 1-buffered channel. A change replaces any list still
//     unread in the buffer with the new one, so sending never blocks and a
//     slow reader only ever misses intermediate lists, never the latest.
//   - Every list sent or returned is a fresh deep copy, sorted by ID, that
//     the receiver owns and may modify.
//   - A watch starts no goroutine: context.AfterFunc removes it and closes
//     its channel (under the mutex, so never during a send) once its ctx
//     ends.
package memory
