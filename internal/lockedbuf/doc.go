// Package lockedbuf owns Buffer, a bytes.Buffer safe for concurrent use:
// what tests hand a child process as its stdout and stderr while they read
// its log. Every method takes the buffer's lock.
package lockedbuf
