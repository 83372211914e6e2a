// Package redis is the Redis session store used when roles run in separate
// processes: a single *Store (New) implements store.Sessions and
// store.Online against one Redis server (standalone, or the master behind a
// Sentinel-managed address), with go-redis v9.
//
// It owns the bindings of sessions to cloud nodes and the nodes' online
// reports, under these keys (<p> is Config.Prefix, default "imcloud:"):
//
//	<p>key:<key>      string  "<mid>@<node>": the user and the node the session
//	                          key is bound to; TTL = Config.TTL
//	<p>mid:<mid>      hash    session key -> node, one field per device of the
//	                          user (mid > 0; anonymous sessions have none); one
//	                          TTL for the hash, renewed by every Bind and
//	                          Refresh of any of its keys
//	<p>online:<node>  string  the node's latest report, JSON
//	                          {"conns":N,"ips":N,"rooms":{"live://1":N,...}};
//	                          TTL = the ttl it was reported with
//	<p>online-nodes   zset    node -> its report's expiry (unix ms, Redis's clock),
//	                          so AllOnline finds reports without KEYS or SCAN
//
// Writes are Lua scripts run with EVALSHA (go-redis falls back to EVAL after
// Redis lost its script cache, e.g. on restart), so each is atomic:
//
//   - Bind sets both bindings and both TTLs together; if the key was another
//     user's, it also deletes the key's field from that user's hash, so a
//     key reused by another user does not carry the previous one's pushes.
//   - Refresh renews a binding that is the session's and re-creates a
//     missing one, but never takes a key another node or user holds, so an
//     old connection's heartbeat does not undo a reconnect elsewhere.
//   - Unbind is compare-and-delete: key:<key> is deleted only if it holds the
//     session's mid and node, and the mid field only if it holds the node;
//     it reports whether the key binding went.
//   - Because a hash's fields share its TTL, a field whose key binding expired
//     would live on while another device of the user keeps refreshing the
//     hash. Bind and Refresh therefore check a random sample of up to 8
//     fields of the mid (HRANDFIELD) and delete those whose key binding is
//     gone or is no longer this user's on that node.
//
// Reads are one round trip each: KeysByMids pipelines one HGETALL per mid,
// NodesByKeys is one MGET, AllOnline one script that also drops expired
// entries from the index.
//
// The scripts touch keys they are not passed (a mid's keys, reports named in
// the index), and a user's key and mid live in different hash slots, so the
// layout needs a single Redis server, not Redis Cluster. HRANDFIELD needs
// Redis 6.2 or later.
//
// Errors: every failure of Redis or of the connection to it (refused,
// timeout, LOADING, closed store, ...) is returned wrapped so that
// errors.Is(err, store.ErrUnavailable) holds and the original error is
// still matched by errors.Is and errors.As. A call whose context the caller
// cancelled returns context.Canceled without store.ErrUnavailable; invalid
// arguments (a session without key or node, a report without node or ttl)
// are plain errors. Absence is never an error: unknown mids and keys are
// simply missing from the results.
//
// Timeouts: no call takes longer than DialTimeout + WriteTimeout +
// ReadTimeout (3 s by default) or its context's deadline, whichever comes
// first. A failed dial is not retried and commands are not retried, so a
// call against a dead server fails fast and the caller decides. Pooled
// connections that died are detected and replaced on use, and once PoolSize
// dials have failed go-redis fails calls at once and redials in the
// background every second, so the same Store recovers by itself within about
// a second of Redis coming back. go-redis logs failed dials through its own logger
// (goredis.SetLogger, process-wide), which this package leaves alone.
//
// Concurrency: a Store is safe for concurrent use; its state is immutable
// after New apart from go-redis's connection pool (Config.PoolSize). New
// does no network I/O and starts no goroutine of its own; Close closes the
// pool.
package redis
