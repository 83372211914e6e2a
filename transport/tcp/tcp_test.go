package tcp

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport"
	"github.com/imcloud/imcloud/transport/transporttest"
)

func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	srv, peer := transporttest.Loopback(t)
	return New(srv, protocol.DefaultMaxBody), peer
}

func TestWriteAndTryWrite(t *testing.T) {
	c, peer := pair(t)
	a := protocol.EncodePush(1000, []byte("a"))
	b := protocol.EncodePush(1001, []byte("b"))
	if err := c.Write([]transport.Out{{Data: a, Push: true}, {Data: b, Push: true}}, time.Now().Add(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	// The blocking write's deadline must not outlive it.
	time.Sleep(100 * time.Millisecond)
	rest, err := c.TryWrite(transport.Out{Data: a, Push: true})
	if err != nil || rest != nil {
		t.Fatalf("TryWrite after an expired write deadline: rest %d bytes, err %v", len(rest), err)
	}
	got := make([]byte, 2*len(a)+len(b))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if want := append(append(append([]byte(nil), a...), b...), a...); !bytes.Equal(got, want) {
		t.Fatalf("peer read %x, want %x", got, want)
	}
}

// TestTryWriteAfterClose: direct writes stop at Close.
func TestTryWriteAfterClose(t *testing.T) {
	transporttest.TryWriteAfterClose(t, func(nc net.Conn) transporttest.Writer {
		return New(nc, protocol.DefaultMaxBody)
	}, transport.Out{Data: protocol.EncodePush(1000, []byte("a")), Push: true})
}

func TestTryWriteReturnsWhatDoesNotFit(t *testing.T) {
	c, peer := pair(t)
	big := make([]byte, 64<<20) // far more than the socket buffers hold
	rest, err := c.TryWrite(transport.Out{Data: big, Raw: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) == 0 || len(rest) >= len(big) {
		t.Fatalf("rest %d of %d bytes: want a partial write", len(rest), len(big))
	}
	// The rest, written later, completes the stream.
	go func() { _ = c.Write([]transport.Out{{Data: rest, Raw: true}}, time.Now().Add(time.Minute)) }()
	n, err := io.CopyN(io.Discard, peer, int64(len(big)))
	if err != nil || n != int64(len(big)) {
		t.Fatalf("peer read %d bytes: %v", n, err)
	}
}

func TestReadFrameLimits(t *testing.T) {
	c, peer := pair(t)
	if _, err := peer.Write(protocol.Encode(1, protocol.OpAuth, 1, []byte("{}"))); err != nil {
		t.Fatal(err)
	}
	f, err := c.ReadFrame(time.Now().Add(5 * time.Second))
	if err != nil || f.Op != protocol.OpAuth || string(f.Body) != "{}" {
		t.Fatalf("got %v, %v", f, err)
	}
	hdr := protocol.AppendHeader(nil, protocol.DefaultMaxBody+1, 1, protocol.OpSendMsg, 2)
	if _, err := peer.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadFrame(time.Now().Add(5 * time.Second)); err == nil {
		t.Fatal("a frame over the limit was accepted")
	}
}

// TestCloseAfterTooLarge: a reader stopped by a frame over the limit leaves
// its body unread; Close must not reset the connection over it, so the
// peer reads the goodbye written before the Close and then end of stream.
func TestCloseAfterTooLarge(t *testing.T) {
	for _, tt := range []struct {
		name string
		hdr  []byte
	}{
		{"too large", protocol.AppendHeader(nil, protocol.DefaultMaxBody+1, 1, protocol.OpSendMsg, 2)},
		{"bad header length", func() []byte {
			h := protocol.AppendHeader(nil, 10, 1, protocol.OpSendMsg, 2)
			h[5] = 20
			return h
		}()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, peer := pair(t)
			// The body behind the header stays unread in the server's socket.
			if _, err := peer.Write(append(tt.hdr, make([]byte, 2000)...)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadFrame(time.Now().Add(5 * time.Second)); err == nil {
				t.Fatal("a bad frame was accepted")
			}
			bye := protocol.Encode(1, protocol.OpDisconnectReply, 0, []byte("protocol error"))
			if err := c.Write([]transport.Out{{Data: bye}}, time.Now().Add(5*time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(peer)
			if err != nil {
				t.Fatalf("peer read %q, then %v: want end of stream, not a reset", got, err)
			}
			if !bytes.Equal(got, bye) {
				t.Fatalf("peer read %q, want the goodbye %q", got, bye)
			}
		})
	}
}

func BenchmarkTryWrite(b *testing.B) {
	srv, peer := transporttest.Loopback(b)
	go func() { _, _ = io.Copy(io.Discard, peer) }()
	c := New(srv, protocol.DefaultMaxBody)
	defer c.Close()
	out := transport.Out{Data: protocol.EncodePush(1000, make([]byte, 100)), Push: true}
	b.ReportAllocs()
	for b.Loop() {
		rest, err := c.TryWrite(out)
		if err != nil {
			b.Fatal(err)
		}
		if len(rest) > 0 {
			if err := c.Write([]transport.Out{{Data: rest, Raw: true}}, time.Now().Add(time.Second)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func TestDiscardOnClose(t *testing.T) {
	transporttest.DiscardOnClose(t, func(nc net.Conn) transporttest.Writer { return New(nc, protocol.DefaultMaxBody) })
}
