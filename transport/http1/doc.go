// Package http1 is a lean server side of HTTP/1.1 for small, plain requests,
// the shape of nearly every REST push: a request line, a few headers and a
// body of known length that all fit in one connection buffer. Such requests
// are parsed in place, handed to an http.Handler as an ordinary
// *http.Request, and answered with one write (pipelined requests with one
// write for all of them). net/http's per-connection machinery (buffered
// reader and writer, connection state, a background read after every
// request) was about half of a push request's CPU.
//
// Everything else is handed, with the bytes already read, to a fallback
// http.Server through a Handoff listener: chunked bodies, Expect, upgrades,
// heads or bodies beyond the buffer limits, anything malformed or merely
// unusual, and the paths the caller names as slow (admin endpoints,
// profiles). Once handed over, a connection stays with net/http, which
// answers it exactly as it would have from the first byte; so this package
// never has to answer a bad request itself.
//
// Concurrency: one goroutine per connection reads, serves and writes its
// requests in order; the Server's connection set is guarded by a mutex.
// Shutdown stops accepting, wakes the connections that wait for a request,
// lets the ones serving a request finish it (answered with Connection:
// close), and shuts the fallback down too.
package http1
