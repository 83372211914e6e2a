// Package transport owns the connection abstraction the cloud hub serves:
// Conn, with one implementation per client transport (tcp/, ws/). Beside
// them: client/, a goim client, and http1/, the server side of the REST API;
// AcceptLoop is the accept loop (with backoff on errors) the servers share;
// RawFD is the direct, non-blocking socket write the Conns' TryWrite uses;
// CloseMode is how their Close ends the socket.
//
// A Conn is used by exactly one reader goroutine (ReadFrame) and one writer
// goroutine (Write) at a time; Close may be called from anywhere, any number
// of times, and unblocks both (a lingering Close, see CloseMode, which only
// follows a failed read, within LingerDelay). A Conn with a RawFD must close its socket
// only through Close, which releases the RawFD first: a write on a
// descriptor number that was closed could reach another client.
package transport
