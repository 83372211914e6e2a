package ws

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport"
	"github.com/imcloud/imcloud/transport/transporttest"
)

// tcpPair returns a Conn on one end of a loopback TCP connection and the
// other end, with no handshake.
func tcpPair(t testing.TB, maxBody int) (*Conn, net.Conn) {
	t.Helper()
	srv, peer := transporttest.Loopback(t)
	c := newConn(srv, maxBody, peer.LocalAddr().String(), nil)
	t.Cleanup(func() { c.Close() })
	return c, peer
}

func TestTryWriteIdle(t *testing.T) {
	a := push(1000, 'a', 10)
	batch := cat(push(1000, 'x', 1), push(1001, 'y', 200))
	reply := protocol.Encode(1, protocol.OpHeartbeatReply, 3, []byte{0, 0, 0, 1})
	cases := []struct {
		name string
		o    transport.Out
		want []byte // exact bytes on the wire
	}{
		{"push", transport.Out{Data: a, Push: true}, cat([]byte{0x82, byte(16 + len(a))}, protocol.AppendRaw(nil, a))},
		{"push framed by the fan-out", transport.Out{Data: a, Push: true, WSMessage: PushMessage(a)},
			cat([]byte{0x82, byte(16 + len(a))}, protocol.AppendRaw(nil, a))},
		{"push batch, 16-bit length", transport.Out{Data: batch, Push: true},
			cat([]byte{0x82, 126}, binary.BigEndian.AppendUint16(nil, uint16(16+len(batch))), protocol.AppendRaw(nil, batch))},
		{"reply", transport.Out{Data: reply}, cat([]byte{0x82, byte(len(reply))}, reply)},
		{"raw", transport.Out{Data: []byte{0x8a, 1, 'p'}, Raw: true}, []byte{0x8a, 1, 'p'}},
	}
	c, peer := tcpPair(t, protocol.DefaultMaxBody)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rest, err := c.TryWrite(tc.o)
			if err != nil || rest != nil {
				t.Fatalf("TryWrite on an idle socket: rest %d bytes, err %v", len(rest), err)
			}
			got := make([]byte, len(tc.want))
			_ = peer.SetReadDeadline(time.Now().Add(wait))
			if _, err := io.ReadFull(peer, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("peer read\n %x\nwant %x", got, tc.want)
			}
		})
	}
}

// TestTryWritePartial: with a peer that does not read, TryWrite writes what
// the socket takes and returns the rest; the rest, written later as a Raw
// item, completes the stream byte for byte.
func TestTryWritePartial(t *testing.T) {
	seed := make([]byte, 251) // a prime period: any shift shows
	for i := range seed {
		seed[i] = byte(i * 7)
	}
	pattern := func(n int) []byte { return bytes.Repeat(seed, n/len(seed)+1)[:n] }
	bigRaw := pattern(64 << 20) // far more than the socket buffers hold
	var pushes []byte           // pushes of ~32 KiB: one op-9 message each
	for i := 0; len(pushes) < 32<<20; i++ {
		pushes = append(pushes, protocol.EncodePush(1000, pattern(protocol.MaxWSBatch-2*protocol.HeaderLen-i%5))...)
	}
	cases := []struct {
		name string
		o    transport.Out
	}{
		{"raw", transport.Out{Data: bigRaw, Raw: true}},
		{"push batch", transport.Out{Data: pushes, Push: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := tcpPair(t, protocol.DefaultMaxBody)
			// What Write sends for the item is the reference stream.
			want := tc.o.Data // raw: as it is
			if !tc.o.Raw {
				want = framed(t, tc.o)
			}
			rest, err := c.TryWrite(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if len(rest) == 0 || len(rest) >= len(want) {
				t.Fatalf("rest %d of %d bytes: want a partial write", len(rest), len(want))
			}
			if !bytes.Equal(rest, want[len(want)-len(rest):]) {
				t.Fatal("the rest is not the end of the framed item")
			}
			errc := make(chan error, 1)
			go func() { errc <- c.Write([]transport.Out{{Data: rest, Raw: true}}, time.Now().Add(time.Minute)) }()
			got := make([]byte, len(want))
			_ = peer.SetReadDeadline(time.Now().Add(time.Minute))
			if _, err := io.ReadFull(peer, got); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				i := 0
				for i < len(got) && got[i] == want[i] {
					i++
				}
				t.Fatalf("stream differs at byte %d of %d", i, len(want))
			}
			// The stream is still in step: a later TryWrite lands whole.
			a := push(1000, 'z', 1)
			if rest, err := c.TryWrite(transport.Out{Data: a, Push: true}); err != nil || rest != nil {
				t.Fatalf("TryWrite after the rest: %d, %v", len(rest), err)
			}
			tail := make([]byte, 2+16+len(a))
			if _, err := io.ReadFull(peer, tail); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tail[2:], protocol.AppendRaw(nil, a)) {
				t.Fatalf("after the rest: %x", tail)
			}
		})
	}
}

// framed returns the bytes Write puts on the wire for o.
func framed(t testing.TB, o transport.Out) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	c := newConn(a, protocol.DefaultMaxBody, "pipe", nil)
	done := make(chan []byte)
	go func() {
		all, _ := io.ReadAll(b)
		done <- all
	}()
	if err := c.Write([]transport.Out{o}, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	return <-done
}

// TestTryWriteManyIovecs: an item split into more pieces than one writev
// takes (IOV_MAX, 1024 on Linux) must still be written, in part or whole.
func TestTryWriteManyIovecs(t *testing.T) {
	var batch []byte
	for i := range 5000 { // empty pushes: 5000 frames, 3 op-9 messages
		batch = append(batch, protocol.EncodePush(1000+int32(i), nil)...)
	}
	o := transport.Out{Data: batch, Push: true}
	want := framed(t, o)
	c, peer := tcpPair(t, protocol.DefaultMaxBody)
	rest, err := c.TryWrite(o)
	if err != nil {
		t.Fatalf("TryWrite of a batch of %d frames: %v", 5000, err)
	}
	if len(rest) > 0 {
		if !bytes.Equal(rest, want[len(want)-len(rest):]) {
			t.Fatal("the rest is not the end of the framed item")
		}
		if err := c.Write([]transport.Out{{Data: rest, Raw: true}}, time.Now().Add(wait)); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, len(want))
	_ = peer.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the stream differs from what Write sends")
	}
}

// TestTryWriteAfterExpiredWriteDeadline: a blocking Write's deadline must
// not outlive it.
func TestTryWriteAfterExpiredWriteDeadline(t *testing.T) {
	c, peer := tcpPair(t, protocol.DefaultMaxBody)
	a := push(1000, 'a', 1)
	deadline := time.Now().Add(20 * time.Millisecond)
	if err := c.Write([]transport.Out{{Data: a, Push: true}}, deadline); err != nil {
		t.Fatal(err)
	}
	for !time.Now().After(deadline.Add(10 * time.Millisecond)) {
		time.Sleep(10 * time.Millisecond)
	}
	rest, err := c.TryWrite(transport.Out{Data: a, Push: true})
	if err != nil || rest != nil {
		t.Fatalf("TryWrite after an expired write deadline: rest %d bytes, err %v", len(rest), err)
	}
	// So must a blocking Write with no deadline, and Close's close frame.
	if err := c.Write([]transport.Out{{Data: a, Push: true}}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	one := cat([]byte{0x82, byte(16 + len(a))}, protocol.AppendRaw(nil, a))
	want := cat(one, one, one, []byte{0x88, 2, 0x03, 0xe8})
	_ = peer.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(peer)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("peer read\n %x\nwant %x", got, want)
	}
}

// TestTryWriteWithoutDescriptor: on a net.Conn with no file descriptor
// nothing is written at once; all the framed bytes come back.
func TestTryWriteWithoutDescriptor(t *testing.T) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	c := newConn(a, protocol.DefaultMaxBody, "pipe", nil)
	p := push(1000, 'p', 3)
	cases := []transport.Out{
		{Data: p, Push: true},
		{Data: protocol.Encode(1, protocol.OpAuthReply, 1, nil)},
		{Data: []byte{0x8a, 0}, Raw: true},
	}
	for _, o := range cases {
		rest, err := c.TryWrite(o)
		if err != nil {
			t.Fatal(err)
		}
		if want := framed(t, o); !bytes.Equal(rest, want) {
			t.Fatalf("rest %x, want %x", rest, want)
		}
	}
}

// TestPushMessage: the message a fan-out frames once is byte for byte what
// a connection sends for the same push, across the frame header's length
// forms; pushes too large for one message are left to the connections.
func TestPushMessage(t *testing.T) {
	for _, body := range []int{0, 1, 125 - 2*protocol.HeaderLen, 126 - 2*protocol.HeaderLen, 1000, protocol.MaxWSBatch - 2*protocol.HeaderLen} {
		frames := protocol.EncodePush(1000, bytes.Repeat([]byte{'m'}, body))
		got := PushMessage(frames)
		if want := framed(t, transport.Out{Data: frames, Push: true}); !bytes.Equal(got, want) {
			t.Errorf("body %d: PushMessage\n %x\nwant %x", body, got, want)
		}
	}
	two := cat(push(1000, 'x', 3), push(1001, 'y', 4))
	if got, want := PushMessage(two), framed(t, transport.Out{Data: two, Push: true}); !bytes.Equal(got, want) {
		t.Errorf("two frames: PushMessage\n %x\nwant %x", got, want)
	}
	big := protocol.EncodePush(1000, make([]byte, protocol.MaxWSBatch-2*protocol.HeaderLen+1))
	if got := PushMessage(big); got != nil {
		t.Errorf("a push over MaxWSBatch: PushMessage gave %d bytes, want nil", len(got))
	}
}

// TestTryWritePushMessagePartial: a socket that fills up mid-message leaves
// the end of the shared message as the rest, and the stream stays whole.
func TestTryWritePushMessagePartial(t *testing.T) {
	c, peer := tcpPair(t, protocol.DefaultMaxBody)
	frames := protocol.EncodePush(1000, bytes.Repeat([]byte{'q'}, 20000))
	o := transport.Out{Data: frames, Push: true, WSMessage: PushMessage(frames)}
	var rest []byte
	whole := 0
	for rest == nil {
		if whole > 100000 {
			t.Fatal("the socket never filled up")
		}
		var err error
		if rest, err = c.TryWrite(o); err != nil {
			t.Fatal(err)
		}
		if rest == nil {
			whole++
		}
	}
	if len(rest) == len(o.WSMessage) {
		// Nothing of this one went out: it is all the rest.
		whole--
	} else if !bytes.Equal(rest, o.WSMessage[len(o.WSMessage)-len(rest):]) {
		t.Fatal("the rest is not the end of the shared message")
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Write([]transport.Out{{Data: rest, Raw: true}}, time.Now().Add(time.Minute)) }()
	_ = peer.SetReadDeadline(time.Now().Add(time.Minute))
	for i := 0; i <= whole; i++ {
		got := make([]byte, len(o.WSMessage))
		if _, err := io.ReadFull(peer, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, o.WSMessage) {
			t.Fatalf("message %d of %d differs", i, whole+1)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestTryWriteAfterClose: direct writes stop at Close.
func TestTryWriteAfterClose(t *testing.T) {
	a := push(1000, 'a', 1)
	for _, o := range []transport.Out{
		{Data: a, Push: true},
		{Data: a, Push: true, WSMessage: PushMessage(a)},
	} {
		transporttest.TryWriteAfterClose(t, func(nc net.Conn) transporttest.Writer {
			return newConn(nc, protocol.DefaultMaxBody, "test", nil)
		}, o)
	}
}

func TestDiscardOnClose(t *testing.T) {
	transporttest.DiscardOnClose(t, func(nc net.Conn) transporttest.Writer {
		return newConn(nc, protocol.DefaultMaxBody, "test", nil)
	})
}
