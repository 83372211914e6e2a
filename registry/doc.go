// Package registry owns node discovery: the Registrar a node publishes itself
// with and the Watcher other roles follow, with implementations side by side
// (memory/, later etcd/) held to one contract suite in registrytest/.
//
// Implementations are safe for concurrent use; Watch channels are owned by
// the implementation and closed when the watch's context ends.
package registry
