// Package ws is the WebSocket client transport: a small RFC 6455 server
// side (handshake, framing, ping/pong, close) written for the push path.
//
// Accept upgrades a request an http.Server read; Upgrade does the same for a
// request the caller parsed itself (the cloud's own listener, which keeps
// connect storms off net/http's server), and Refuse answers a bad one. The
// upgrade selects a subprotocol only from the caller's list
// (AcceptOptions.Subprotocols) and negotiates no extensions: goim clients
// use neither, and permessage-deflate (per-connection compression state)
// would end the sharing of one framed push across receivers.
//
// One goim frame arrives per inbound message (binary or text, possibly
// fragmented); pushes go out as op-9 messages holding one or more inner
// frames, batched under protocol.MaxWSBatch, written as one gather write straight
// from the shared push bytes (no copy), and, for an idle connection, with one
// non-blocking write from the fan-out itself (TryWrite): of the message the
// fan-out framed once for all receivers (PushMessage) when it has one, on
// the descriptor directly (transport.RawFD). After the upgrade
// the connection keeps no read or write buffer of its own while idle.
//
// It is its own implementation rather than github.com/coder/websocket
// (which the client library and the tests use, proving interoperability)
// because the push path needs what a general library does not offer: writes
// without a context, timer and lock per message, non-blocking writes, writev
// of shared bytes, and no per-connection buffers.
//
// Close sends one close frame: the client's code echoed when it closed
// first, else the code and reason the reader (a protocol violation) or the
// caller (transport.CloseReasoner) gave first, else 1000. Text messages are
// read like binary ones, UTF-8 unchecked, as goim's server does.
//
// Concurrency as in package transport; in addition the reader answers pings
// through the function set with SetControl, so control frames are ordered
// with everything else the session writes (before SetControl, at once).
package ws
