package bench

import (
	"bytes"
	"testing"
)

func TestStampRoundTrip(t *testing.T) {
	s := Stamp{SentNanos: 1795711146208164612, PushID: 4000000001, StreamSeq: 7, Target: 99}
	for _, size := range []int{stampLen, 100, 5000} {
		b := newMessage(size, s)
		if len(b) != size {
			t.Fatalf("size %d: got %d bytes", size, len(b))
		}
		if !bytes.Equal(b[stampLen:], bytes.Repeat([]byte{padByte}, size-stampLen)) {
			t.Fatalf("size %d: bad padding", size)
		}
		got, err := parseStamp(b)
		if err != nil || got != s {
			t.Fatalf("size %d: parsed %+v, %v", size, got, err)
		}
		setSent(b, 42)
		if got, _ := parseStamp(b); got.SentNanos != 42 || got.PushID != s.PushID {
			t.Fatalf("setSent: %+v", got)
		}
	}
	for _, bad := range [][]byte{nil, []byte("IMCB"), bytes.Repeat([]byte("x"), 100), append([]byte("IMCX"), make([]byte, 30)...)} {
		if _, err := parseStamp(bad); err == nil {
			t.Errorf("parseStamp(%q) accepted", bad)
		}
	}
}

func TestParseStampDoesNotAllocate(t *testing.T) {
	b := newMessage(100, Stamp{SentNanos: 1, PushID: 2, StreamSeq: 3, Target: 4})
	if n := testing.AllocsPerRun(100, func() { _, _ = parseStamp(b) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
