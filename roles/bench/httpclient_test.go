package bench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHTTPConn(t *testing.T) {
	var bodies atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/octet-stream" || string(b[:4]) != "IMCB" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		bodies.Add(1)
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part one;"))
			w.(http.Flusher).Flush()
			w.Write([]byte(strings.Repeat("x", 5000)))
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte(`{"code":0}`))
		case "/missing":
			http.NotFound(w, r)
		default:
			w.Write([]byte(`{"code":0,"message":"","data":{"id":"x","sessions":1}}`))
		}
	}))
	defer srv.Close()
	h := &httpConn{addr: strings.TrimPrefix(srv.URL, "http://"), host: "bench.test", timeout: 5 * time.Second}
	defer h.close()
	body := newMessage(100, Stamp{})
	stamped := 0
	for i, tc := range []struct {
		path   string
		status int
	}{{"/plain", 200}, {"/chunked", 200}, {"/plain?x=1", 200}, {"/close", 200}, {"/plain", 200}, {"/missing", 404}, {"/plain", 200}} {
		status, err := h.post(tc.path, body, func(b []byte) { stamped++; setSent(b, int64(i)) })
		if err != nil || status != tc.status {
			t.Fatalf("%s: status %d, %v", tc.path, status, err)
		}
	}
	if stamped != 7 || bodies.Load() != 7 {
		t.Fatalf("stamped %d, server got %d bodies", stamped, bodies.Load())
	}
	// The server closing an idle keep-alive connection costs nothing: the
	// next push, found idle, goes out on a fresh one.
	srv.CloseClientConnections()
	time.Sleep(idlePeek + 100*time.Millisecond)
	if status, err := h.post("/plain", body, nil); err != nil || status != 200 {
		t.Fatalf("after the server closed the connection: %d, %v", status, err)
	}
	srv.Close()
	if _, err := h.post("/plain", body, nil); err == nil {
		t.Fatal("no error with the server gone")
	}
}

// TestHTTPConnNoBlindRetry: a push whose answer never comes is not sent
// again (the server may have taken it: a retry would be a duplicate).
func TestHTTPConnNoBlindRetry(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got.Add(1) == 2 {
			// Took the push, then the connection dies without an answer.
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
			return
		}
		w.Write([]byte(`{"code":0}`))
	}))
	defer srv.Close()
	h := &httpConn{addr: strings.TrimPrefix(srv.URL, "http://"), host: "bench.test", timeout: 5 * time.Second}
	defer h.close()
	body := newMessage(100, Stamp{})
	if _, err := h.post("/p", body, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.post("/p", body, nil); err == nil {
		t.Fatal("a push without an answer reported no error")
	}
	if n := got.Load(); n != 2 {
		t.Fatalf("the server got %d pushes, want 2 (no retry of the unanswered one)", n)
	}
	if status, err := h.post("/p", body, nil); err != nil || status != 200 {
		t.Fatalf("the next push: %d, %v", status, err)
	}
}
