package protocol_test

import (
	"bytes"
	"testing"

	"github.com/imcloud/imcloud/protocol"
)

var (
	sinkBytes []byte
	sinkFrame protocol.Frame
	sinkAuth  protocol.Auth
)

func BenchmarkEncodePush(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 100)
	b.ReportAllocs()
	b.SetBytes(int64(protocol.HeaderLen + len(body)))
	for b.Loop() {
		sinkBytes = protocol.EncodePush(1000, body)
	}
}

func BenchmarkAppendRaw(b *testing.B) {
	inner := hx(goimRoomBatchTCP)
	dst := make([]byte, 0, protocol.HeaderLen+len(inner))
	b.ReportAllocs()
	b.SetBytes(int64(protocol.HeaderLen + len(inner)))
	for b.Loop() {
		dst = protocol.AppendRaw(dst[:0], inner)
	}
	sinkBytes = dst
}

func BenchmarkDecode(b *testing.B) {
	in := hx(goimAuthTCP)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		f, _, err := protocol.Decode(in, protocol.DefaultMaxBody)
		if err != nil {
			b.Fatal(err)
		}
		sinkFrame = f
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	in := hx(goimRoomBatchWS)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		f, err := protocol.DecodeMessage(in, protocol.DefaultMaxBody)
		if err != nil {
			b.Fatal(err)
		}
		sinkFrame = f
	}
}

func BenchmarkReadFrame(b *testing.B) {
	in := hx(goimAuthTCP)
	r := bytes.NewReader(in)
	var hdr [protocol.HeaderLen]byte
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		r.Reset(in)
		f, err := protocol.ReadFrame(r, &hdr, protocol.DefaultMaxBody)
		if err != nil {
			b.Fatal(err)
		}
		sinkFrame = f
	}
}

func BenchmarkParseAuth(b *testing.B) {
	in := body(b, goimAuthTCP)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		a, err := protocol.ParseAuth(in)
		if err != nil {
			b.Fatal(err)
		}
		sinkAuth = a
	}
}
