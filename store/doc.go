// Package store owns where sessions live and how many are online: the
// Sessions and Online interfaces with implementations side by side (memory/,
// redis/) held to one contract suite in storetest/.
//
// Implementations are safe for concurrent use. Bindings expire after the
// store's TTL unless refreshed; deletes are compare-and-delete on the node,
// and a refresh never takes a key bound to another node (ErrMoved tells the
// old connection it was replaced).
package store
