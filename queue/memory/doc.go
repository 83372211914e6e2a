// Package memory is the in-process push queue used when logic and job run in
// one process (imcloud all): a single *Queue is both the queue.Producer and
// the queue.Consumer.
//
// It owns a bounded set of waiting messages, split into a fixed number of
// shards by a hash of queue.Key. A shard plays the part of a Kafka partition:
// its messages are delivered strictly in publish order, one at a time, so
// order holds per key (and per shard). Keys that share a shard also share its
// order, so a slow key delays the others of its shard.
//
// Concurrency rules:
//
//   - Every method is safe for concurrent use.
//   - Publish never blocks: it returns an error wrapping queue.ErrFull when
//     the queue already holds size messages, and queue.ErrClosed after Close.
//   - Messages are handed over by pointer, never copied or marshalled: the
//     producer must not modify a message after Publish, and handlers must
//     treat it as read-only (it may be redelivered).
//   - Each Consume call runs one worker goroutine per shard. Workers of all
//     concurrent Consume calls compete for a per-shard token, so a shard is
//     served by at most one worker at a time: each message goes to exactly
//     one handler call at a time, the handler is never called concurrently
//     for one key, and concurrent Consume calls share the messages.
//   - A message leaves its shard only when the handler returns nil. If the
//     handler returns an error, the same message is offered again after a
//     short backoff (10 ms doubling to 1 s) before any later message of its
//     shard: at-least-once. If the worker stops meanwhile (ctx ended or
//     Close), the message stays at the head of its shard for the next worker.
//   - Consume returns nil once ctx ends or Close is called, after every
//     handler call it started has returned. Close is idempotent; messages
//     still waiting at Close are not delivered.
package memory
