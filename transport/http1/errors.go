package http1

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Answers to requests that are not HTTP.
//
// Before any handler runs, a request that cannot be read (not HTTP/1.x,
// no Host, a bad Content-Length, headers too large, an unknown transfer
// encoding) is answered by the server itself: here (notHTTP) or by
// net/http for a connection handed over, in plain text. With
// Server.ErrorBody set, both come in the API's own format instead, so every
// answer a client can get has one shape.

// plainErrorHeaders follow the status line of net/http's answer to a
// request it could not read. A handler's answer never has them right after
// its status line: its headers are sorted, so Connection never follows
// Content-Type.
const plainErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// errorAnswer formats the answer of status with text through format.
func errorAnswer(status int, text string, format func(status int, text string) (contentType string, body []byte)) []byte {
	ct, body := format(status, text)
	out := fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nConnection: close\r\nDate: %s\r\nContent-Length: %d\r\n\r\n",
		status, http.StatusText(status), ct, time.Now().UTC().Format(http.TimeFormat), len(body))
	return append(out, body...)
}

// rewriteError recognizes, in one Write, net/http's answer to a request it
// could not read ("HTTP/1.1 <status>[: detail]", plainErrorHeaders, text;
// written with a single Fprintf) and formats it anew; ok is false for
// anything else.
func rewriteError(p []byte, format func(int, string) (string, []byte)) (answer []byte, ok bool) {
	const proto = "HTTP/1.1 "
	end := bytes.Index(p, []byte("\r\n"))
	if !bytes.HasPrefix(p, []byte(proto)) || end < len(proto)+3 || !bytes.HasPrefix(p[end:], []byte(plainErrorHeaders)) {
		return nil, false
	}
	code := p[len(proto) : len(proto)+3]
	status, err := strconv.Atoi(string(code))
	if err != nil || status < 400 || status > 599 {
		return nil, false
	}
	// The text mostly repeats the status line ("400 Bad Request: missing
	// required Host header"); the number goes, the words stay.
	text := bytes.TrimPrefix(p[end+len(plainErrorHeaders):], append(code, ' '))
	return errorAnswer(status, string(text), format), true
}

// errorConn is a connection handed over to net/http whose plain-text
// answers to unreadable requests are rewritten by format.
type errorConn struct {
	net.Conn
	format func(int, string) (string, []byte)
}

func (c *errorConn) Write(p []byte) (int, error) {
	if answer, ok := rewriteError(p, c.format); ok {
		if _, err := c.Conn.Write(answer); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}
