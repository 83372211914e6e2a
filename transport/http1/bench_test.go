package http1

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
)

// pushAnswer is the size of a push's answer.
var pushAnswer = []byte(`{"code":0,"message":"","data":{"id":"18ebcf1f2a3029239190c50d","sessions":0}}`)

// pushHandler reads the body and answers like a push.
var pushHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(pushAnswer)))
	_, _ = w.Write(pushAnswer)
})

// BenchmarkServe is one keep-alive connection sending push-shaped requests
// one after another, served here or by net/http alone. Both include the
// loopback system calls of the server and of the client.
func BenchmarkServe(b *testing.B) {
	req := []byte("POST /goim/push/room?operation=1000&type=live&room=1000 HTTP/1.1\r\nHost: 127.0.0.1:3111\r\n" +
		"User-Agent: bench\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n" +
		string(make([]byte, 100)))
	for _, name := range []string{"http1", "net-http"} {
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			if name == "http1" {
				s := &Server{Handler: pushHandler, Fallback: &http.Server{Handler: pushHandler}, Log: zap.NewNop()}
				go func() { _ = s.Serve(ln) }()
				defer func() { _ = s.Shutdown(context.Background()) }()
			} else {
				s := &http.Server{Handler: pushHandler}
				go func() { _ = s.Serve(ln) }()
				defer func() { _ = s.Close() }()
			}
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(time.Minute))
			br := bufio.NewReader(nc)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := nc.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
			}
		})
	}
}
