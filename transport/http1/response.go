package http1

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// response is the http.ResponseWriter of one request: it collects the
// status, headers and body, which the connection then writes at once.
type response struct {
	req         *http.Request
	header      http.Header
	status      int
	wroteHeader bool
	body        []byte
}

func (w *response) reset(req *http.Request) {
	w.req = req
	w.header = make(http.Header, 4) // handlers may keep it; never reused
	w.status = 0
	w.wroteHeader = false
	if cap(w.body) > maxBuffered {
		w.body = nil // a large answer is gone
	}
	w.body = w.body[:0]
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.wroteHeader || code < 200 || code > 999 { // 1xx informational answers are not sent
		return
	}
	w.wroteHeader = true
	w.status = code
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.req.Method != http.MethodHead {
		w.body = append(w.body, p...)
	}
	return len(p), nil
}

// bodyAllowed reports whether a status may carry a body.
func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// wantsClose reports whether the handler asked for the connection to be
// closed after this answer.
func (w *response) wantsClose() bool {
	for _, v := range w.header["Connection"] {
		if strings.EqualFold(strings.TrimSpace(v), "close") {
			return true
		}
	}
	return false
}

// appendTo appends the answer to out: the status line, the headers in
// sorted order (Content-Length, Content-Type and Date filled in as net/http
// does when the handler set none), and the body. minor is the request's
// HTTP minor version; keepAlive whether the connection stays open.
func (w *response) appendTo(out []byte, minor int, keepAlive bool, date []byte) []byte {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	out = append(out, "HTTP/1.1 "...)
	if minor == 0 {
		out[len(out)-2] = '0'
	}
	out = strconv.AppendInt(out, int64(w.status), 10)
	out = append(out, ' ')
	if text := http.StatusText(w.status); text != "" {
		out = append(out, text...)
	} else {
		out = append(out, "status code "...)
		out = strconv.AppendInt(out, int64(w.status), 10)
	}
	out = append(out, "\r\n"...)

	h := w.header
	h.Del("Connection")
	h.Del("Transfer-Encoding")
	if bodyAllowed(w.status) {
		if _, ok := h["Content-Length"]; !ok && w.req.Method != http.MethodHead {
			h["Content-Length"] = []string{strconv.Itoa(len(w.body))}
		}
		if _, ok := h["Content-Type"]; !ok && len(w.body) > 0 {
			h["Content-Type"] = []string{http.DetectContentType(w.body)}
		}
	} else {
		h.Del("Content-Length")
	}
	var keys [16]string
	names := keys[:0]
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !validName(k) {
			continue
		}
		for _, v := range h[k] {
			out = append(out, k...)
			out = append(out, ": "...)
			out = appendValue(out, v)
			out = append(out, "\r\n"...)
		}
	}
	if _, ok := h["Date"]; !ok {
		out = append(out, "Date: "...)
		out = append(out, date...)
		out = append(out, "\r\n"...)
	}
	switch {
	case !keepAlive:
		out = append(out, "Connection: close\r\n"...)
	case minor == 0:
		out = append(out, "Connection: keep-alive\r\n"...)
	}
	out = append(out, "\r\n"...)
	if bodyAllowed(w.status) {
		out = append(out, w.body...)
	}
	return out
}

// validName reports whether a header name set by a handler can be sent.
func validName(k string) bool {
	return k != "" && IsToken([]byte(k))
}

// appendValue appends v with CR and LF turned into spaces, as net/http
// does, so a value cannot split the head.
func appendValue(out []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		out = append(out, c)
	}
	return out
}

// dateCache formats the Date header once a second.
type dateCache struct {
	sec int64
	buf []byte
}

func (d *dateCache) get(now time.Time) []byte {
	if s := now.Unix(); s != d.sec || d.buf == nil {
		d.sec = s
		d.buf = now.UTC().AppendFormat(d.buf[:0], http.TimeFormat)
	}
	return d.buf
}
