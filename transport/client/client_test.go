package client_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport/client"
)

// srvConn is the server side of one connection in the fake server.
type srvConn interface {
	ReadFrame() (protocol.Frame, error)
	ReadRaw(n int) ([]byte, error) // TCP only: exactly n bytes off the wire
	Write(b []byte) error          // TCP: one write; WS: one binary message
	RemoteIP() string
	Path() string // WS: the request path
	Close()       // abrupt close
}

type tcpSrvConn struct {
	c   net.Conn
	hdr [protocol.HeaderLen]byte
}

func (s *tcpSrvConn) ReadFrame() (protocol.Frame, error) {
	return protocol.ReadFrame(s.c, &s.hdr, protocol.DefaultMaxBody)
}

func (s *tcpSrvConn) ReadRaw(n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := io.ReadFull(s.c, b)
	return b, err
}
func (s *tcpSrvConn) Write(b []byte) error { _, err := s.c.Write(b); return err }
func (s *tcpSrvConn) RemoteIP() string     { return s.c.RemoteAddr().(*net.TCPAddr).IP.String() }
func (s *tcpSrvConn) Path() string         { return "" }
func (s *tcpSrvConn) Close()               { s.c.Close() }

type wsSrvConn struct {
	c      *websocket.Conn
	remote string
	path   string
}

func (s *wsSrvConn) ReadFrame() (protocol.Frame, error) {
	typ, msg, err := s.c.Read(context.Background())
	if err != nil {
		return protocol.Frame{}, err
	}
	if typ != websocket.MessageBinary {
		return protocol.Frame{}, errors.New("text message")
	}
	return protocol.DecodeMessage(msg, protocol.DefaultMaxBody)
}

func (s *wsSrvConn) ReadRaw(int) ([]byte, error) {
	_, msg, err := s.c.Read(context.Background())
	return msg, err
}

func (s *wsSrvConn) Write(b []byte) error {
	return s.c.Write(context.Background(), websocket.MessageBinary, b)
}
func (s *wsSrvConn) RemoteIP() string { return s.remote }
func (s *wsSrvConn) Path() string     { return s.path }
func (s *wsSrvConn) Close()           { s.c.CloseNow() }

// startServer starts a fake cloud node on a random loopback port that runs
// handle for every connection, and returns the address for Options.Addr.
// Cleanup closes every connection and waits for the handlers.
func startServer(t *testing.T, network string, handle func(srvConn)) string {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []srvConn
		wg    sync.WaitGroup
	)
	track := func(sc srvConn) {
		mu.Lock()
		conns = append(conns, sc)
		mu.Unlock()
	}
	closeAll := func() {
		mu.Lock()
		for _, sc := range conns {
			sc.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
	switch network {
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				sc := &tcpSrvConn{c: c}
				track(sc)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					handle(sc)
				}()
			}
		}()
		t.Cleanup(func() {
			ln.Close()
			closeAll()
		})
		return ln.Addr().String()
	case "ws":
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			wg.Add(1)
			defer wg.Done()
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			sc := &wsSrvConn{c: c, remote: host, path: r.URL.Path}
			track(sc)
			handle(sc)
		}))
		t.Cleanup(func() {
			closeAll()
			srv.Close()
		})
		return "ws://" + strings.TrimPrefix(srv.URL, "http://") + "/sub"
	}
	t.Fatalf("unknown network %q", network)
	return ""
}

var networks = []string{"tcp", "ws"}

func pushOne() []byte { return protocol.EncodePush(1000, []byte("one")) }
func pushBatch() []byte {
	return protocol.AppendRaw(nil, append(protocol.EncodePush(1001, []byte("two")), protocol.EncodePush(1002, []byte("three"))...))
}

// goimServer answers auth with op 8 (echoing ver and seq), then sends a plain
// push (op 1000 "one") and an op-9 batch of two (1001 "two", 1002 "three"),
// then answers heartbeats with op 3 (body int32 1) and op 4 with op 5. Op 4
// with body "burst" is answered with op 5 and then two frames in one write.
// The auth frame is sent on auths.
func goimServer(auths chan<- protocol.Frame) func(srvConn) {
	return func(sc srvConn) {
		auth, err := sc.ReadFrame()
		if err != nil {
			return
		}
		if auths != nil {
			auths <- auth
		}
		if auth.Op != protocol.OpAuth {
			return
		}
		if sc.Write(protocol.Encode(auth.Ver, protocol.OpAuthReply, auth.Seq, nil)) != nil ||
			sc.Write(pushOne()) != nil || sc.Write(pushBatch()) != nil {
			return
		}
		for {
			f, err := sc.ReadFrame()
			if err != nil {
				return
			}
			switch f.Op {
			case protocol.OpHeartbeat:
				err = sc.Write(protocol.Encode(f.Ver, protocol.OpHeartbeatReply, f.Seq, []byte{0, 0, 0, 1}))
			case protocol.OpSendMsg:
				err = sc.Write(protocol.Encode(f.Ver, protocol.OpSendMsgReply, f.Seq, nil))
				if err == nil && string(f.Body) == "burst" {
					b := protocol.EncodePush(2000, []byte("a"))
					b = append(b, protocol.EncodePush(2001, []byte("bc"))...)
					err = sc.Write(b)
				}
			}
			if err != nil {
				return
			}
		}
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, o client.Options) *client.Client {
	t.Helper()
	c, err := client.Dial(ctxTimeout(t, 5*time.Second), o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantFrame(t *testing.T, got protocol.Frame, ver int16, op, seq int32, body string) {
	t.Helper()
	if got.Ver != ver || got.Op != op || got.Seq != seq || string(got.Body) != body {
		t.Fatalf("frame = %v, want ver=%d op=%d seq=%d body=%q", got, ver, op, seq, body)
	}
}

func next(t *testing.T, c *client.Client) protocol.Frame {
	t.Helper()
	f, err := c.Next(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return f
}

func TestDialAndNext(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			auths := make(chan protocol.Frame, 1)
			addr := startServer(t, network, goimServer(auths))
			want := protocol.Auth{Mid: 42, Key: "key-42", RoomID: "live://1000", Platform: "web", Accepts: []int32{1000, 1001, 1002}}
			c := dial(t, client.Options{Network: network, Addr: addr, Auth: want})
			if c.Network() != network {
				t.Errorf("Network() = %q", c.Network())
			}

			auth := <-auths
			if auth.Ver != 1 || auth.Op != protocol.OpAuth || auth.Seq != 1 {
				t.Errorf("auth frame = %v, want ver 1 op 7 seq 1", auth)
			}
			got, err := protocol.ParseAuth(auth.Body)
			if err != nil {
				t.Fatalf("server could not parse auth %q: %v", auth.Body, err)
			}
			if got.Mid != want.Mid || got.Key != want.Key || got.RoomID != want.RoomID || got.Platform != want.Platform ||
				len(got.Accepts) != 3 || got.Accepts[2] != 1002 {
				t.Errorf("auth = %+v, want %+v", got, want)
			}

			// The plain push, then the op-9 batch unpacked in order.
			wantFrame(t, next(t, c), 1, 1000, 0, "one")
			wantFrame(t, next(t, c), 1, 1001, 0, "two")
			wantFrame(t, next(t, c), 1, 1002, 0, "three")

			if err := c.Heartbeat(7); err != nil {
				t.Fatal(err)
			}
			wantFrame(t, next(t, c), 1, protocol.OpHeartbeatReply, 7, "\x00\x00\x00\x01")
			if err := c.Send(3, protocol.OpSendMsg, 8, []byte("hi")); err != nil {
				t.Fatal(err)
			}
			wantFrame(t, next(t, c), 3, protocol.OpSendMsgReply, 8, "")
		})
	}
}

func TestNextMessageShape(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			addr := startServer(t, network, goimServer(nil))
			c := dial(t, client.Options{Network: network, Addr: addr})
			ctx := ctxTimeout(t, 5*time.Second)

			fs, err := c.NextMessage(ctx)
			if err != nil || len(fs) != 1 {
				t.Fatalf("NextMessage = %v, %v", fs, err)
			}
			wantFrame(t, fs[0], 1, 1000, 0, "one")

			// The op-9 frame comes back as it is, not unpacked.
			fs, err = c.NextMessage(ctx)
			if err != nil || len(fs) != 1 {
				t.Fatalf("NextMessage = %v, %v", fs, err)
			}
			if got, want := fs[0].Append(nil), pushBatch(); !bytes.Equal(got, want) {
				t.Fatalf("op-9 frame = %x, want %x", got, want)
			}

			if err := c.Send(1, protocol.OpSendMsg, 9, []byte("burst")); err != nil {
				t.Fatal(err)
			}
			fs, err = c.NextMessage(ctx)
			if err != nil || len(fs) != 1 {
				t.Fatalf("NextMessage = %v, %v", fs, err)
			}
			wantFrame(t, fs[0], 1, protocol.OpSendMsgReply, 9, "")

			// Two frames in one write: over TCP one frame per call; over
			// WebSocket a message that is not exactly one frame is an error.
			fs, err = c.NextMessage(ctx)
			if network == "ws" {
				if !errors.Is(err, protocol.ErrLenMismatch) {
					t.Fatalf("WS message of two frames: %v, %v; want ErrLenMismatch", fs, err)
				}
				return
			}
			if err != nil || len(fs) != 1 {
				t.Fatalf("NextMessage = %v, %v", fs, err)
			}
			wantFrame(t, fs[0], 1, 2000, 0, "a")
			fs, err = c.NextMessage(ctx)
			if err != nil || len(fs) != 1 {
				t.Fatalf("NextMessage = %v, %v", fs, err)
			}
			wantFrame(t, fs[0], 1, 2001, 0, "bc")
		})
	}
}

func TestDialAuthFailure(t *testing.T) {
	handlers := map[string]func(srvConn){
		"server closes after auth": func(sc srvConn) {
			sc.ReadFrame()
			sc.Close()
		},
		"server closes at once": func(sc srvConn) { sc.Close() },
		"another op first": func(sc srvConn) {
			f, _ := sc.ReadFrame()
			sc.Write(protocol.Encode(f.Ver, protocol.OpHeartbeatReply, f.Seq, []byte{0, 0, 0, 1}))
			sc.Write(protocol.Encode(f.Ver, protocol.OpAuthReply, f.Seq, nil))
			sc.ReadFrame()
		},
		"push before reply": func(sc srvConn) {
			sc.ReadFrame()
			sc.Write(pushBatch())
			sc.ReadFrame()
		},
		"garbage reply": func(sc srvConn) {
			sc.ReadFrame()
			sc.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			sc.ReadFrame()
		},
		"disconnect reply": func(sc srvConn) {
			f, _ := sc.ReadFrame()
			sc.Write(protocol.Encode(f.Ver, protocol.OpDisconnectReply, f.Seq, []byte("bad auth")))
			sc.Close()
		},
	}
	for _, network := range networks {
		for name, h := range handlers {
			t.Run(network+"/"+name, func(t *testing.T) {
				addr := startServer(t, network, h)
				start := time.Now()
				c, err := client.Dial(ctxTimeout(t, 5*time.Second), client.Options{Network: network, Addr: addr, Timeout: 3 * time.Second})
				if err == nil {
					c.Close()
					t.Fatal("Dial succeeded")
				}
				if !errors.Is(err, client.ErrAuth) {
					t.Errorf("err = %v, want one wrapping ErrAuth", err)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("Dial took %v to notice", d)
				}
			})
		}
	}
}

func TestDialTimeout(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			addr := startServer(t, network, func(sc srvConn) {
				sc.ReadFrame()
				sc.ReadFrame() // never answer
			})
			start := time.Now()
			_, err := client.Dial(context.Background(), client.Options{Network: network, Addr: addr, Timeout: 200 * time.Millisecond})
			if !errors.Is(err, client.ErrAuth) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want ErrAuth and DeadlineExceeded", err)
			}
			if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
				t.Errorf("Dial returned after %v, want about 200ms", d)
			}

			// The caller's ctx bounds Dial too.
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			_, err = client.Dial(ctx, client.Options{Network: network, Addr: addr})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled Dial: err = %v, want context.Canceled", err)
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	ctx := ctxTimeout(t, 5*time.Second)
	if _, err := client.Dial(ctx, client.Options{Network: "udp", Addr: "127.0.0.1:1"}); err == nil {
		t.Error("Dial accepted network udp")
	}
	if _, err := client.Dial(ctx, client.Options{Network: "tcp"}); err == nil {
		t.Error("Dial accepted an empty address")
	}
	if _, err := client.Dial(ctx, client.Options{Addr: "127.0.0.1:1", LocalAddr: "not-an-ip"}); err == nil {
		t.Error("Dial accepted a bad local address")
	}
	// Nothing listens: a dial error, not an auth error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, o := range []client.Options{{Network: "tcp", Addr: addr}, {Network: "ws", Addr: "ws://" + addr + "/sub"}} {
		_, err := client.Dial(ctx, o)
		if err == nil || errors.Is(err, client.ErrAuth) {
			t.Errorf("%s to a closed port: err = %v", o.Network, err)
		} else if n := strings.Count(err.Error(), addr); o.Network == "tcp" && n != 1 {
			t.Errorf("%s to a closed port: %q names the address %d times, want once", o.Network, err, n)
		}
	}
}

func TestNextTimeout(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			addr := startServer(t, network, goimServer(nil))
			c := dial(t, client.Options{Network: network, Addr: addr})
			for range 3 {
				next(t, c)
			}

			// A context that is already done: immediate error, client intact.
			done, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := c.Next(done); !errors.Is(err, context.Canceled) {
				t.Fatalf("Next(cancelled ctx) = %v", err)
			}
			if err := c.Heartbeat(1); err != nil {
				t.Fatal(err)
			}
			wantFrame(t, next(t, c), 1, protocol.OpHeartbeatReply, 1, "\x00\x00\x00\x01")

			// Nothing arrives: a deadline error after about the timeout.
			start := time.Now()
			_, err := c.Next(ctxTimeout(t, 100*time.Millisecond))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Next = %v, want DeadlineExceeded", err)
			}
			if d := time.Since(start); d < 90*time.Millisecond || d > 2*time.Second {
				t.Errorf("Next returned after %v", d)
			}
			if network == "ws" {
				return // the WebSocket library closed the connection
			}

			// TCP: still usable after a timeout that caught no bytes.
			if err := c.Heartbeat(2); err != nil {
				t.Fatal(err)
			}
			wantFrame(t, next(t, c), 1, protocol.OpHeartbeatReply, 2, "\x00\x00\x00\x01")

			// TCP: cancellation without a deadline interrupts the read too.
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			if _, err := c.NextMessage(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("NextMessage = %v, want Canceled", err)
			}
			if err := c.Heartbeat(3); err != nil {
				t.Fatal(err)
			}
			wantFrame(t, next(t, c), 1, protocol.OpHeartbeatReply, 3, "\x00\x00\x00\x01")
		})
	}
}

// TestTCPPartialFrameTimeout: a frame that arrives in two pieces across a
// read deadline is not lost.
func TestTCPPartialFrameTimeout(t *testing.T) {
	second := make(chan struct{})
	addr := startServer(t, "tcp", func(sc srvConn) {
		f, err := sc.ReadFrame()
		if err != nil {
			return
		}
		sc.Write(protocol.Encode(f.Ver, protocol.OpAuthReply, f.Seq, nil))
		push := protocol.EncodePush(1000, []byte("split-in-two"))
		sc.Write(push[:10])
		<-second
		sc.Write(push[10:])
		sc.ReadFrame()
	})
	c := dial(t, client.Options{Addr: addr})
	if _, err := c.Next(ctxTimeout(t, 100*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v, want DeadlineExceeded", err)
	}
	close(second)
	wantFrame(t, next(t, c), 1, 1000, 0, "split-in-two")
}

func TestServerClose(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			addr := startServer(t, network, func(sc srvConn) {
				f, _ := sc.ReadFrame()
				sc.Write(protocol.Encode(f.Ver, protocol.OpAuthReply, f.Seq, nil))
				sc.Write(pushOne())
				sc.Close()
			})
			c := dial(t, client.Options{Network: network, Addr: addr})
			wantFrame(t, next(t, c), 1, 1000, 0, "one")
			_, err := c.Next(ctxTimeout(t, 5*time.Second))
			if err == nil {
				t.Fatal("Next after server close succeeded")
			}
			if network == "tcp" && err != io.EOF {
				t.Errorf("TCP close between frames: err = %v, want io.EOF", err)
			}
		})
	}
}

func TestSendRaw(t *testing.T) {
	heartbeat := "00000010001000010000000200000002" // goim-observed.md §7
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			got := make(chan []byte, 2)
			addr := startServer(t, network, func(sc srvConn) {
				f, err := sc.ReadFrame()
				if err != nil {
					return
				}
				sc.Write(protocol.Encode(f.Ver, protocol.OpAuthReply, f.Seq, nil))
				if network == "tcp" {
					b, _ := sc.ReadRaw(16) // Heartbeat(2)
					got <- b
					b, _ = sc.ReadRaw(16 + 3) // SendRaw
					got <- b
				} else {
					for range 2 {
						b, _ := sc.ReadRaw(0)
						got <- b
					}
				}
				sc.ReadFrame()
			})
			c := dial(t, client.Options{Network: network, Addr: addr})
			if err := c.Heartbeat(2); err != nil {
				t.Fatal(err)
			}
			if b := <-got; hex.EncodeToString(b) != heartbeat {
				t.Errorf("Heartbeat(2) on the wire = %x, want goim's %s", b, heartbeat)
			}
			raw := []byte("\x00\x00\x00\x10\x00\x10\x00\x01\x00\x00\x00\x02\x00\x00\x00\x02abc") // bad packLen on purpose
			keep := bytes.Clone(raw)
			if err := c.SendRaw(raw); err != nil {
				t.Fatal(err)
			}
			if b := <-got; !bytes.Equal(b, keep) {
				t.Errorf("SendRaw on the wire = %x, want %x", b, keep)
			}
			if !bytes.Equal(raw, keep) {
				t.Error("SendRaw modified its argument")
			}
		})
	}
}

func TestDialRaw(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			first := make(chan protocol.Frame, 1)
			addr := startServer(t, network, func(sc srvConn) {
				f, err := sc.ReadFrame()
				if err != nil {
					return
				}
				first <- f
				sc.Write(protocol.Encode(f.Ver, protocol.OpDisconnectReply, f.Seq, []byte("auth first")))
				sc.Close()
			})
			c, err := client.DialRaw(ctxTimeout(t, 5*time.Second), client.Options{Network: network, Addr: addr})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if err := c.Heartbeat(1); err != nil {
				t.Fatal(err)
			}
			if f := <-first; f.Op != protocol.OpHeartbeat {
				t.Errorf("server got %v, want the heartbeat (no auth)", f)
			}
			wantFrame(t, next(t, c), 1, protocol.OpDisconnectReply, 1, "auth first")
		})
	}
}

func TestMaxBody(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			addr := startServer(t, network, func(sc srvConn) {
				f, _ := sc.ReadFrame()
				sc.Write(protocol.Encode(f.Ver, protocol.OpAuthReply, f.Seq, nil))
				sc.Write(protocol.EncodePush(1000, make([]byte, 64))) // at the limit
				sc.Write(protocol.EncodePush(1000, make([]byte, 65))) // over
				sc.ReadFrame()
			})
			c := dial(t, client.Options{Network: network, Addr: addr, MaxBody: 64})
			if f := next(t, c); len(f.Body) != 64 {
				t.Fatalf("frame at the limit: %v", f)
			}
			_, err := c.Next(ctxTimeout(t, 5*time.Second))
			switch network {
			case "tcp":
				if !errors.Is(err, protocol.ErrTooLarge) {
					t.Errorf("over the limit: err = %v, want ErrTooLarge", err)
				}
			case "ws":
				if !errors.Is(err, websocket.ErrMessageTooBig) {
					t.Errorf("over the limit: err = %v, want ErrMessageTooBig", err)
				}
			}
		})
	}
}

// TestLargeFrameTCP reads a frame larger than the client's peek buffer.
func TestLargeFrameTCP(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 2000)
	addr := startServer(t, "tcp", func(sc srvConn) {
		f, _ := sc.ReadFrame()
		sc.Write(protocol.Encode(f.Ver, protocol.OpAuthReply, f.Seq, nil))
		sc.Write(protocol.AppendRaw(nil, append(protocol.EncodePush(1000, big), protocol.EncodePush(1001, []byte("x"))...)))
		sc.Write(protocol.EncodePush(1002, big[:5000]))
		sc.ReadFrame()
	})
	c := dial(t, client.Options{Addr: addr})
	wantFrame(t, next(t, c), 1, 1000, 0, string(big))
	wantFrame(t, next(t, c), 1, 1001, 0, "x")
	wantFrame(t, next(t, c), 1, 1002, 0, string(big[:5000]))
}

func TestCorruptBatch(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			addr := startServer(t, network, func(sc srvConn) {
				f, _ := sc.ReadFrame()
				sc.Write(protocol.Encode(f.Ver, protocol.OpAuthReply, f.Seq, nil))
				inner := append(protocol.EncodePush(1000, []byte("ok")), 0, 0, 0, 5) // truncated second frame
				sc.Write(protocol.AppendRaw(nil, inner))
				sc.Write(pushOne())
				sc.ReadFrame()
			})
			c := dial(t, client.Options{Network: network, Addr: addr})
			if _, err := c.Next(ctxTimeout(t, 5*time.Second)); !errors.Is(err, protocol.ErrShort) {
				t.Fatalf("corrupt batch: err = %v, want ErrShort", err)
			}
			// The whole bad batch is dropped; the next message is intact.
			wantFrame(t, next(t, c), 1, 1000, 0, "one")
		})
	}
}

func TestWSAddrWithoutScheme(t *testing.T) {
	paths := make(chan string, 1)
	url := startServer(t, "ws", func(sc srvConn) {
		paths <- sc.Path()
		goimServer(nil)(sc)
	})
	hostPort := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/sub")
	c := dial(t, client.Options{Network: "ws", Addr: hostPort})
	if p := <-paths; p != "/sub" {
		t.Errorf("path = %q, want /sub", p)
	}
	wantFrame(t, next(t, c), 1, 1000, 0, "one")
}

func TestLocalAddr(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("127.0.0.2 is a loopback address only on Linux by default")
	}
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			ips := make(chan string, 4)
			addr := startServer(t, network, func(sc srvConn) {
				ips <- sc.RemoteIP()
				goimServer(nil)(sc)
			})
			for _, local := range []string{"127.0.0.2", "127.0.0.3"} {
				c, err := client.Dial(ctxTimeout(t, 5*time.Second), client.Options{Network: network, Addr: addr, LocalAddr: local})
				if err != nil {
					t.Fatalf("Dial from %s: %v", local, err)
				}
				t.Cleanup(func() { c.Close() })
				if ip := <-ips; ip != local {
					t.Errorf("server saw %s, want %s", ip, local)
				}
				wantFrame(t, next(t, c), 1, 1000, 0, "one")
			}
		})
	}
}

// TestConcurrentReadWrite runs one reader and one writer on a client (run
// with -race).
func TestConcurrentReadWrite(t *testing.T) {
	const n = 200
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			addr := startServer(t, network, goimServer(nil))
			c := dial(t, client.Options{Network: network, Addr: addr})
			errc := make(chan error, 1)
			go func() {
				for i := range int32(n) {
					if err := c.Heartbeat(i); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			for range 3 {
				next(t, c)
			}
			for i := range int32(n) {
				wantFrame(t, next(t, c), 1, protocol.OpHeartbeatReply, i, "\x00\x00\x00\x01")
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			addr := startServer(t, network, goimServer(nil))
			c := dial(t, client.Options{Network: network, Addr: addr})
			for range 3 {
				next(t, c)
			}
			errc := make(chan error, 1)
			go func() {
				_, err := c.Next(context.Background())
				errc <- err
			}()
			time.Sleep(50 * time.Millisecond)
			c.Close()
			select {
			case err := <-errc:
				if err == nil {
					t.Error("Next after Close succeeded")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not unblock Next")
			}
			if err := c.Heartbeat(1); err == nil {
				t.Error("Heartbeat after Close succeeded")
			}
			c.Close() // idempotent
		})
	}
}
