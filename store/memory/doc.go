// Package memory is the in-process session store used when every role runs
// in one process (imcloud all): a single *Store implements store.Sessions
// and store.Online.
//
// It owns two indexes of bindings, key -> (mid, node) and mid -> key -> node
// (mid > 0: anonymous sessions are bound by key only), each entry with its
// own expiry (the store's TTL, renewed by Bind and Refresh),
// and each cloud node's latest online report with the TTL it was reported
// with. Time comes from a clock function (NewWithClock) so expiry can be
// tested without sleeping.
//
// Concurrency rules:
//
//   - Every method is safe for concurrent use; one RWMutex guards all state.
//     Lookups (KeysByMids, NodesByKeys, AllOnline) share the read lock.
//   - Expired entries are never returned. They are freed lazily: a lookup
//     that meets one deletes it afterwards under the write lock (re-checking
//     its expiry); and every write sweeps the whole store once per sweep
//     interval (the TTL, at least a second). New starts no goroutine and
//     there is nothing to close.
//   - Writes are compare-on-node: Unbind deletes only entries that still
//     point at the session's node (and, for the key, its mid), and Refresh
//     renews entries that point at its node or re-binds entries that are
//     missing or expired, but never takes over an entry another node or mid
//     holds, so a fast reconnect elsewhere is not undone by the old
//     connection's last heartbeat or disconnect. Bind of a key that another
//     mid held removes it from that mid's keys.
//   - Results are fresh maps and slices the caller owns; reported room maps
//     are copied on the way in and out.
package memory
