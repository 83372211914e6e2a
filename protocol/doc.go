// Package protocol owns the goim v2 client wire format: the 16-byte frame
// header, op codes, size limits, the Auth body and the op-9 batch shape.
//
// It does no I/O of its own beyond reading from an io.Reader handed to it;
// transports decide how bytes arrive. Everything here is safe for concurrent
// use: functions are pure and encoded frames are plain byte slices that may be
// shared, read-only, between any number of goroutines.
package protocol
