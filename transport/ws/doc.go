// Package ws is the WebSocket client transport (github.com/coder/websocket):
// one goim frame per inbound binary message; pushes go out as op-9 messages
// holding one or more inner frames, batched under protocol.MaxWSBatch.
//
// Concurrency as in package transport.
package ws
