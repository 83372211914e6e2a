// Package job owns delivery: it consumes the push queue, routes each message
// to the cloud node(s) that must deliver it, batches room messages, and keeps
// one bounded FIFO queue and worker per cloud node so a slow or dead node
// never stalls the others.
//
// Concurrency: the queue consumer calls Handle (never concurrently for one
// key); room batches are guarded by their own mutex and flushed either from
// Handle or from their timer; each node's worker alone calls that node's
// CloudClient, so per-node order is the order of enqueueing. The node set is
// replaced under a RWMutex when the registry changes.
package job
