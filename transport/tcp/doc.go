// Package tcp is the raw-TCP client transport: a listener that hands out
// transport.Conn values framing the goim protocol directly on the stream.
//
// Each Conn keeps only a 16-byte header buffer while idle; a push batch goes
// out as one writev, and TryWrite writes on the descriptor directly
// (transport.RawFD). Concurrency as in package transport.
package tcp
