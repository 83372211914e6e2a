package logic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/imcloud/imcloud/queue"
)

// contentType is the Content-Type of every answer.
const contentType = "application/json; charset=utf-8"

// envelope is goim's answer shape. Data is omitted when nil (errors).
type envelope struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

// ErrorBody formats an error answer the HTTP server gives itself (a
// request that is not HTTP, before any handler runs) in the API's envelope;
// it fits http1.Server.ErrorBody.
func ErrorBody(status int, text string) (string, []byte) {
	body, err := json.Marshal(envelope{Code: -status, Message: text})
	if err != nil { // a struct of an int and a string always marshals
		body = []byte(`{"code":-500,"message":"internal error"}`)
	}
	return contentType, body
}

// httpError is an error with the status it answers and a message for the
// caller; err, if set, is the cause, logged but not sent.
type httpError struct {
	status int
	msg    string
	err    error
}

func (e *httpError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *httpError) Unwrap() error { return e.err }

// badRequest is a 400 with a formatted message.
func badRequest(format string, args ...any) *httpError {
	return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// unavailable is a 503 naming the backend that failed. Every backend error
// is one (store.ErrUnavailable, queue.ErrUnavailable, a timeout, anything):
// bad input never reaches a backend, so a backend error is never the
// caller's fault.
func unavailable(backend string, err error) *httpError {
	msg := backend + " unavailable"
	switch {
	case errors.Is(err, queue.ErrFull):
		msg = backend + " full, retry later"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		msg = backend + " call abandoned: request canceled or timed out"
	}
	return &httpError{status: http.StatusServiceUnavailable, msg: msg, err: err}
}

// Backend names used in 503 messages.
const (
	backendQueue    = "push queue"
	backendSessions = "session store"
	backendRegistry = "node registry"
	backendOnline   = "online store"
)

// quote returns s quoted for an error message, cut to a sane length so a
// huge bad parameter is not echoed whole.
func quote(s string) string {
	const maxEcho = 64
	if len(s) > maxEcho {
		return strconv.Quote(s[:maxEcho]) + "..."
	}
	return strconv.Quote(s)
}

// write sends status and env as JSON (no body for HEAD).
func write(w http.ResponseWriter, r *http.Request, status int, env envelope) {
	var body []byte
	if a, ok := env.Data.(pushAnswer); ok && env.Code == 0 && env.Message == "" && plainID(a.ID) {
		// Every push answers this; spelled out by hand, it costs a tenth
		// of the reflection-driven encoder.
		body = make([]byte, 0, 64+len(a.ID))
		body = append(body, `{"code":0,"message":"","data":{"id":"`...)
		body = append(body, a.ID...)
		body = append(body, `","sessions":`...)
		body = strconv.AppendInt(body, a.Sessions, 10)
		body = append(body, "}}"...)
	} else {
		body = encode(env)
		if body == nil {
			status = http.StatusInternalServerError
			body = []byte(`{"code":-500,"message":"internal error: cannot encode the answer"}`)
		}
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// encode is env as JSON without HTML escaping (messages say ">= 1000", not
// "\u003e= 1000"); nil if it cannot be encoded.
func encode(env envelope) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(env); err != nil { // data is always plain maps, slices and structs
		return nil
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// plainID reports whether id needs no escaping in a JSON string (push ids
// are generated here and always do; anything else takes the encoder).
func plainID(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// fail answers err: an *httpError with its status and message, anything
// else as a 500 whose cause is only logged. It returns the status sent.
func (l *Logic) fail(w http.ResponseWriter, r *http.Request, routeName string, err error) int {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{status: http.StatusInternalServerError, msg: "internal error", err: err}
	}
	if he.status == http.StatusServiceUnavailable && errors.Is(he.err, queue.ErrFull) {
		w.Header().Set("Retry-After", "1")
	}
	write(w, r, he.status, envelope{Code: -he.status, Message: he.msg})
	fields := []zap.Field{
		zap.String("route", routeName),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.Int("status", he.status),
		zap.String("reason", he.msg),
	}
	if he.err != nil {
		fields = append(fields, zap.Error(he.err))
	}
	if he.status >= 500 {
		l.fails.failure(l.now(), routeName, he.msg, fields)
	} else {
		l.log.Debug("request refused", fields...)
	}
	return he.status
}
