// Package logthin owns Gate, which lets one log line through per interval
// and counts the rest (Log adds that count to the next line it lets
// through): for conditions that repeat in bursts (every request of an
// outage failing alike, a backlog of expired pushes dropped at once), where
// the first line and then one per interval with a count say as much as a
// line for each, and the metrics count every event anyway.
//
// Concurrency: a Gate is safe for concurrent use.
package logthin
