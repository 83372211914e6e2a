// Package queuetest owns the contract suite every queue backend must pass:
// Run exercises a queue.Producer and queue.Consumer pair through the public
// interfaces only, so the in-memory queue and Kafka are held to one
// behaviour. Backend-specific behaviour (a full memory queue, Kafka topic
// creation) is tested next to each backend, not here.
//
// Concurrency rules: Run and its subtests are sequential; each subtest starts
// its own Consume goroutines and waits for them to return (through
// t.Cleanup) before it ends, so no handler outlives its test. Handlers only
// record what they see behind a mutex; assertions run on the test goroutine.
//
// Every subtest tags its messages with a unique id prefix and ignores (but
// accepts) messages without it, so a backend shared between subtests or runs
// (one Kafka topic) does not confuse the checks.
package queuetest
