package bench

import (
	"encoding/binary"
	"errors"
)

// Every pushed message starts with a stamp, then is padded to --size bytes:
//
//	offset size field
//	0      4    magic "IMCB"
//	4      8    due time: when the schedule had the push sent (unix nanoseconds, big-endian
//	            int64), set just before the HTTP request; latency is measured from it
//	12     4    push id: index of the push in this run (0-based), for per-push delivery counts
//	16     4    stream sequence: the n-th push (1-based) to this target, for duplicate/order checks
//	20     4    target: room index (room pushes), mid (mid pushes) or 0 (broadcasts)
//
// The stamp is binary; the REST API passes the body through unchanged.
const (
	stampLen   = 24
	stampMagic = "IMCB"
	padByte    = '.'
)

// Stamp is the parsed head of a bench message.
type Stamp struct {
	SentNanos int64
	PushID    uint32
	StreamSeq uint32
	Target    uint32
}

var errNotStamped = errors.New("bench: not a bench message")

// newMessage returns a size-byte message (size >= stampLen) carrying s,
// padded with padByte.
func newMessage(size int, s Stamp) []byte {
	b := make([]byte, max(size, stampLen))
	putStamp(b, s)
	for i := stampLen; i < len(b); i++ {
		b[i] = padByte
	}
	return b
}

// putStamp writes s into b[:stampLen].
func putStamp(b []byte, s Stamp) {
	copy(b, stampMagic)
	binary.BigEndian.PutUint64(b[4:], uint64(s.SentNanos))
	binary.BigEndian.PutUint32(b[12:], s.PushID)
	binary.BigEndian.PutUint32(b[16:], s.StreamSeq)
	binary.BigEndian.PutUint32(b[20:], s.Target)
}

// setSent rewrites the time stamped in a message made by newMessage (the
// push's due time: latency is measured from it).
func setSent(b []byte, nanos int64) { binary.BigEndian.PutUint64(b[4:], uint64(nanos)) }

// parseStamp reads the stamp at the start of body without allocating.
func parseStamp(body []byte) (Stamp, error) {
	if len(body) < stampLen || string(body[:4]) != stampMagic {
		return Stamp{}, errNotStamped
	}
	return Stamp{
		SentNanos: int64(binary.BigEndian.Uint64(body[4:])),
		PushID:    binary.BigEndian.Uint32(body[12:]),
		StreamSeq: binary.BigEndian.Uint32(body[16:]),
		Target:    binary.BigEndian.Uint32(body[20:]),
	}, nil
}
