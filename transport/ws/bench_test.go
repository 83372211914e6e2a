package ws

import (
	"io"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport"
)

// discardPair returns a Conn on loopback TCP whose peer reads and discards
// everything.
func discardPair(b *testing.B) *Conn {
	c, peer := tcpPair(b, protocol.DefaultMaxBody)
	done := make(chan struct{})
	go func() { defer close(done); _, _ = io.Copy(io.Discard, peer) }()
	b.Cleanup(func() { c.Close(); peer.Close(); <-done })
	return c
}

// benchPush is a typical small push: a 64-byte business message.
var benchPush = protocol.EncodePush(1000, make([]byte, 64))

func benchWrite(b *testing.B, n int) {
	c := discardPair(b)
	items := make([]transport.Out, n)
	for i := range items {
		items[i] = transport.Out{Data: benchPush, Push: true}
	}
	deadline := time.Now().Add(time.Hour)
	_ = c.Write(items, deadline) // warm up the reusable iovec and header slices
	b.SetBytes(int64(n * len(benchPush)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := c.Write(items, deadline); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWrite1Push(b *testing.B)  { benchWrite(b, 1) }
func BenchmarkWrite16Push(b *testing.B) { benchWrite(b, 16) }
func BenchmarkWrite1Reply(b *testing.B) { benchWriteReply(b) }

func benchWriteReply(b *testing.B) {
	c := discardPair(b)
	items := []transport.Out{{Data: protocol.Encode(1, protocol.OpHeartbeatReply, 1, []byte{0, 0, 0, 1})}}
	deadline := time.Now().Add(time.Hour)
	_ = c.Write(items, deadline)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := c.Write(items, deadline); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTryWrite1Push: the fan-out's write to an idle connection, with
// the message framed here (frames) or once by the fan-out (shared).
func BenchmarkTryWrite1Push(b *testing.B) {
	b.Run("frames", func(b *testing.B) { benchTryWrite(b, transport.Out{Data: benchPush, Push: true}) })
	b.Run("shared", func(b *testing.B) {
		benchTryWrite(b, transport.Out{Data: benchPush, Push: true, WSMessage: PushMessage(benchPush)})
	})
}

func benchTryWrite(b *testing.B, o transport.Out) {
	c := discardPair(b)
	_, _ = c.TryWrite(o)
	b.SetBytes(int64(len(benchPush)))
	b.ReportAllocs()
	b.ResetTimer()
	partial := 0
	for b.Loop() {
		rest, err := c.TryWrite(o)
		if err != nil {
			b.Fatal(err)
		}
		if rest != nil { // the socket was full: finish as the writer would
			partial++
			if err := c.Write([]transport.Out{{Data: rest, Raw: true}}, time.Now().Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(partial)/float64(b.N), "partial/op")
}
