package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// httpConn is a minimal HTTP/1.1 client on one keep-alive connection, used
// by one pusher lane: a request is one write, the answer is read in the same
// goroutine. net/http's client hands every request between three goroutines
// and cost about ten times more CPU per push here, which showed up in the
// bench's own CPU per delivery. It speaks just what a push needs: POST with
// a Content-Length body; answers with Content-Length, chunked or
// read-to-close bodies (discarded).
type httpConn struct {
	addr, host string
	timeout    time.Duration

	nc       net.Conn
	br       *bufio.Reader
	wbuf     []byte
	lastUsed time.Time // when nc last carried an answer
}

// idleRedial is how long a kept-alive connection may sit unused before a
// push dials a fresh one instead: servers close idle connections (imcloud
// after 2 minutes), and a push written into one that was just closed fails
// without telling whether the server took it, so it cannot be retried
// without risking a duplicate.
const idleRedial = 30 * time.Second

// idlePeek is how long a connection sits unused before a push checks that
// the server has not closed it (a server restart, an idle timeout): at push
// rates above one a second per lane the check costs nothing.
const idlePeek = time.Second

var errHTTPParse = errors.New("malformed HTTP response")

// post sends body to pathQuery and returns the status. stamp, if not nil,
// is called just before the request is written (the stamp goes into
// the body). A failed push is not retried: it may have been delivered
// (the answer lost, or timed out), and a retry would be a duplicate the
// report would blame on the server.
func (h *httpConn) post(pathQuery string, body []byte, stamp func([]byte)) (int, error) {
	// A connection idle for a while may have been closed by the server:
	// found out before writing, not after, when it is too late to know.
	if h.nc != nil {
		if idle := time.Since(h.lastUsed); idle > idleRedial || (idle > idlePeek && peerClosed(h.nc)) {
			h.close()
		}
	}
	status, _, err := h.try(pathQuery, body, stamp)
	return status, err
}

// try is one attempt; got says whether any byte of an answer arrived.
func (h *httpConn) try(pathQuery string, body []byte, stamp func([]byte)) (status int, got bool, err error) {
	if h.nc == nil {
		nc, err := net.DialTimeout("tcp", h.addr, h.timeout)
		if err != nil {
			return 0, false, err
		}
		h.nc = nc
		if h.br == nil {
			h.br = bufio.NewReaderSize(nc, 4096)
		} else {
			h.br.Reset(nc)
		}
	}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	w := h.wbuf[:0]
	w = append(w, "POST "...)
	w = append(w, pathQuery...)
	w = append(w, " HTTP/1.1\r\nHost: "...)
	w = append(w, h.host...)
	w = append(w, "\r\nUser-Agent: imcloud-bench\r\nContent-Type: application/octet-stream\r\nContent-Length: "...)
	w = strconv.AppendInt(w, int64(len(body)), 10)
	w = append(w, "\r\n\r\n"...)
	mark := len(w)
	w = append(w, body...)
	h.wbuf = w
	if stamp != nil {
		stamp(w[mark:])
	}
	if err := h.nc.SetDeadline(time.Now().Add(h.timeout)); err != nil {
		return 0, false, err
	}
	if _, err := h.nc.Write(w); err != nil {
		return 0, false, err
	}
	status, closeAfter, err := h.readResponse()
	got = status != 0 || h.br.Buffered() > 0
	if err != nil {
		return status, got, err
	}
	h.lastUsed = time.Now()
	if closeAfter {
		h.close()
	}
	return status, true, nil
}

// readResponse reads the status line and headers and discards the body.
func (h *httpConn) readResponse() (status int, closeAfter bool, err error) {
	line, err := h.br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("%w: status line %q", errHTTPParse, line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("%w: status line %q", errHTTPParse, line)
	}
	closeAfter = line[7] == '0' // HTTP/1.0
	length, chunked := int64(-1), false
	for {
		line, err := h.br.ReadSlice('\n')
		if err != nil {
			return status, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		val = bytes.TrimSpace(val)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(val), 10, 64); err != nil || length < 0 {
				return status, false, fmt.Errorf("%w: Content-Length %q", errHTTPParse, val)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(val, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(val, []byte("close")) {
				closeAfter = true
			} else if bytes.EqualFold(val, []byte("keep-alive")) {
				closeAfter = false
			}
		}
	}
	switch {
	case status == 204 || status == 304 || status/100 == 1:
	case chunked:
		err = h.discardChunked()
	case length >= 0:
		_, err = h.br.Discard(int(length))
	default:
		_, err = io.Copy(io.Discard, h.br)
		closeAfter = true
	}
	return status, closeAfter, err
}

func (h *httpConn) discardChunked() error {
	for {
		line, err := h.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errHTTPParse, line)
		}
		if n == 0 {
			for { // trailers, up to the empty line
				t, err := h.br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(t, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := h.br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}

func (h *httpConn) close() {
	if h.nc != nil {
		_ = h.nc.Close()
		h.nc = nil
	}
}
