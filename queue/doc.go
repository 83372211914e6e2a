// Package queue owns the push queue between logic (producer) and job
// (consumer): the Producer and Consumer interfaces, the partitioning key, and
// their implementations side by side (memory/, later kafka/), held to one
// contract suite in queuetest/.
//
// Producers and consumers are safe for concurrent use. A Consumer calls its
// Handler from its own goroutines, never concurrently for the same key.
package queue
