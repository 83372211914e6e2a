package logic

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/imcloud/imcloud/protocol/pb"
)

// FuzzREST: whatever a request carries (method, path, query, content type,
// body), the API answers with one of the statuses it documents, in the JSON
// envelope whose code is minus that status (0 for 200), and never panics.
func FuzzREST(f *testing.F) {
	seeds := []struct{ method, path, query, ctype, body string }{
		{"POST", "/goim/push/mids", "operation=1000&mids=1,2", "", "hello"},
		{"POST", "/goim/push/mids", "operation=1000&mids=3&mids=4", "application/octet-stream", "x"},
		{"POST", "/im/push/keys", "keys[]=k1a&keys[]=k2", "application/x-www-form-urlencoded", "msg=hi&keys=k4a"},
		{"POST", "/goim/push/room", "operation=1000&type=live&room=1000", "text/plain", "room"},
		{"POST", "/im/push/room", "type=live&room=1000&msg=%E4%BD%A0", "", ""},
		{"POST", "/goim/push/all", "operation=1000&speed=5", "", "all"},
		{"GET", "/goim/online/top", "type=live&limit=10", "", ""},
		{"GET", "/im/online/room", "type=live&rooms=1000&rooms=2", "", ""},
		{"HEAD", "/goim/online/total", "", "", ""},
		{"GET", "/goim/nodes/weighted", "platform=web", "", ""},
		{"DELETE", "/goim/nodes/instances", "", "", ""},
		{"POST", "/goim/push/mids", "operation=%zz&mids=;;", "multipart/form-data; boundary=x", "--x\r\n"},
		{"POST", "/im/push/mids", "", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"mids[]\"\r\n\r\n1\r\n--x\r\nContent-Disposition: form-data; name=\"msg\"\r\n\r\nhi\r\n--x--\r\n"},
		{"POST", "/goim/push/keys", "operation=99999999999&keys=", "application/x-www-form-urlencoded", "%%%&&=="},
		{"GET", "/nope", "a=b", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.ctype, s.body)
	}
	e := newEnv(f, envOpts{queue: 1 << 16})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // drain the queue, so pushes do not all end in "full"
		defer close(done)
		_ = e.q.Consume(ctx, func(_ context.Context, _ *pb.PushMsg, ack func()) error { ack(); return nil })
	}()
	f.Cleanup(func() { cancel(); <-done })
	allowed := []int{http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed,
		http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable}

	f.Fuzz(func(t *testing.T, method, path, query, ctype, body string) {
		req := &http.Request{
			Method: method, URL: &url.URL{Path: path, RawQuery: query}, Host: "imcloud",
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)

		if !slices.Contains(allowed, rec.Code) {
			t.Fatalf("%s %s?%s: status %d is not one the API documents", method, path, query, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); ct != contentType {
			t.Fatalf("%s %s: Content-Type %q", method, path, ct)
		}
		if rec.Code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
			t.Fatalf("%s %s: 405 without Allow", method, path)
		}
		if method == http.MethodHead {
			return // no body to check
		}
		var env struct {
			Code    int             `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
			t.Fatalf("%s %s: body is not the JSON envelope: %q", method, path, rec.Body)
		}
		switch {
		case rec.Code == http.StatusOK && (env.Code != 0 || env.Message != ""):
			t.Fatalf("%s %s: 200 with code %d, message %q", method, path, env.Code, env.Message)
		case rec.Code != http.StatusOK && (env.Code != -rec.Code || env.Message == ""):
			t.Fatalf("%s %s: status %d with code %d, message %q", method, path, rec.Code, env.Code, env.Message)
		}
	})
}
