// Package http1test is a raw HTTP/1.x client connection for tests: it sends
// bytes exactly as given (pipelines, malformed requests, HTTP/1.0) and reads
// the answers one by one. A Conn belongs to one test goroutine.
package http1test
