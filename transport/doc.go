// Package transport owns the connection abstraction the cloud hub serves:
// Conn, with one implementation per client transport (tcp/, ws/). Beside
// them: client/, a goim client, and http1/, the server side of the REST API;
// AcceptLoop is the accept loop (with backoff on errors) the servers share.
//
// A Conn is used by exactly one reader goroutine (ReadFrame) and one writer
// goroutine (Write) at a time; Close may be called from anywhere, any number
// of times, and unblocks both.
package transport
