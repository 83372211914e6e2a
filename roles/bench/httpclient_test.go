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
	// next push goes out on a fresh one.
	srv.CloseClientConnections()
	if status, err := h.post("/plain", body, nil); err != nil || status != 200 {
		t.Fatalf("after the server closed the connection: %d, %v", status, err)
	}
	srv.Close()
	if _, err := h.post("/plain", body, nil); err == nil {
		t.Fatal("no error with the server gone")
	}
}
