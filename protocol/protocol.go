package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Op codes of the goim v2 protocol. 0/1 and 10/11 are reserved.
const (
	OpHeartbeat       int32 = 2
	OpHeartbeatReply  int32 = 3
	OpSendMsg         int32 = 4
	OpSendMsgReply    int32 = 5
	OpDisconnectReply int32 = 6
	OpAuth            int32 = 7
	OpAuthReply       int32 = 8
	OpRaw             int32 = 9
	OpChangeRoom      int32 = 12
	OpChangeRoomReply int32 = 13
	OpSub             int32 = 14
	OpSubReply        int32 = 15
	OpUnsub           int32 = 16
	OpUnsubReply      int32 = 17

	// MinBusinessOp is the smallest op a business push may carry.
	MinBusinessOp int32 = 1000
)

const (
	// HeaderLen is the fixed header size; every frame's headerLen field holds it.
	HeaderLen = 16
	// DefaultMaxBody is the default limit on an inbound frame body.
	DefaultMaxBody = 4096
	// PushVer is the ver field of every server push.
	PushVer int16 = 1
	// MaxWSBatch bounds a batched WebSocket message (op-9 frame included), so it
	// stays under the 32 KiB default read limit of common clients.
	MaxWSBatch = 32 * 1024
)

// Sentinel errors; decoders wrap them with details, test with errors.Is.
var (
	ErrHeaderLen   = errors.New("protocol: headerLen is not 16")
	ErrPackLen     = errors.New("protocol: packLen smaller than the header")
	ErrTooLarge    = errors.New("protocol: body over the limit")
	ErrLenMismatch = errors.New("protocol: packLen differs from the message length")
	ErrShort       = errors.New("protocol: incomplete frame")
	ErrBadAuth     = errors.New("protocol: invalid auth body")
)

// Frame is one decoded frame. Body may alias the decoder's buffer.
type Frame struct {
	Ver  int16
	Op   int32
	Seq  int32
	Body []byte
}

// Size is the encoded length of f.
func (f *Frame) Size() int { return HeaderLen + len(f.Body) }

// String renders f for logs and the interactive client.
func (f Frame) String() string {
	return fmt.Sprintf("frame{ver=%d op=%d seq=%d body=%q}", f.Ver, f.Op, f.Seq, f.Body)
}

// AppendHeader appends a header for a body of bodyLen bytes.
func AppendHeader(dst []byte, bodyLen int, ver int16, op, seq int32) []byte {
	var h [HeaderLen]byte
	putHeader(h[:], bodyLen, ver, op, seq)
	return append(dst, h[:]...)
}

func putHeader(h []byte, bodyLen int, ver int16, op, seq int32) {
	binary.BigEndian.PutUint32(h[0:], uint32(HeaderLen+bodyLen))
	binary.BigEndian.PutUint16(h[4:], HeaderLen)
	binary.BigEndian.PutUint16(h[6:], uint16(ver))
	binary.BigEndian.PutUint32(h[8:], uint32(op))
	binary.BigEndian.PutUint32(h[12:], uint32(seq))
}

// Append appends the encoded frame to dst.
func (f *Frame) Append(dst []byte) []byte {
	dst = AppendHeader(dst, len(f.Body), f.Ver, f.Op, f.Seq)
	return append(dst, f.Body...)
}

// Encode returns the frame as a new byte slice.
func Encode(ver int16, op, seq int32, body []byte) []byte {
	b := make([]byte, HeaderLen+len(body))
	putHeader(b, len(body), ver, op, seq)
	copy(b[HeaderLen:], body)
	return b
}

// EncodePush encodes a server push: ver 1, seq 0.
func EncodePush(op int32, body []byte) []byte { return Encode(PushVer, op, 0, body) }

// AppendRaw appends an op-9 frame whose body is inner, a run of complete frames.
func AppendRaw(dst, inner []byte) []byte {
	dst = AppendHeader(dst, len(inner), PushVer, OpRaw, 0)
	return append(dst, inner...)
}

// parseHeader validates a header and returns the body length.
func parseHeader(h []byte, maxBody int) (f Frame, bodyLen int, err error) {
	packLen := int64(binary.BigEndian.Uint32(h[0:]))
	headerLen := binary.BigEndian.Uint16(h[4:])
	if headerLen != HeaderLen {
		return f, 0, fmt.Errorf("%w: got %d", ErrHeaderLen, headerLen)
	}
	if packLen < HeaderLen {
		return f, 0, fmt.Errorf("%w: packLen %d", ErrPackLen, packLen)
	}
	if packLen-HeaderLen > int64(maxBody) {
		return f, 0, fmt.Errorf("%w: packLen %d, limit %d", ErrTooLarge, packLen, maxBody+HeaderLen)
	}
	f.Ver = int16(binary.BigEndian.Uint16(h[6:]))
	f.Op = int32(binary.BigEndian.Uint32(h[8:]))
	f.Seq = int32(binary.BigEndian.Uint32(h[12:]))
	return f, int(packLen - HeaderLen), nil
}

// Decode decodes the first frame in b and returns it with the number of bytes
// it used. ErrShort means b holds only part of a frame. Body aliases b.
func Decode(b []byte, maxBody int) (Frame, int, error) {
	if len(b) < HeaderLen {
		return Frame{}, 0, ErrShort
	}
	f, n, err := parseHeader(b, maxBody)
	if err != nil {
		return Frame{}, 0, err
	}
	if len(b) < HeaderLen+n {
		return Frame{}, 0, ErrShort
	}
	f.Body = b[HeaderLen : HeaderLen+n : HeaderLen+n]
	return f, HeaderLen + n, nil
}

// DecodeMessage decodes a WebSocket message, which must hold exactly one frame.
func DecodeMessage(msg []byte, maxBody int) (Frame, error) {
	if len(msg) < HeaderLen {
		return Frame{}, fmt.Errorf("%w: message of %d bytes", ErrPackLen, len(msg))
	}
	f, n, err := parseHeader(msg, maxBody)
	if err != nil {
		return Frame{}, err
	}
	if HeaderLen+n != len(msg) {
		return Frame{}, fmt.Errorf("%w: packLen %d, message %d", ErrLenMismatch, HeaderLen+n, len(msg))
	}
	f.Body = msg[HeaderLen:]
	return f, nil
}

// ReadFrame reads one frame from r. hdr is scratch space for the header so an
// idle connection needs no buffer; the body is newly allocated (nil if empty).
func ReadFrame(r io.Reader, hdr *[HeaderLen]byte, maxBody int) (Frame, error) {
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, err
	}
	return ReadBody(r, hdr, maxBody)
}

// ReadBody is ReadFrame once the header is in hdr: it checks the header and
// reads the body. A caller that waits long for frames reads the header
// itself and calls ReadBody, so little is on its stack while it waits.
func ReadBody(r io.Reader, hdr *[HeaderLen]byte, maxBody int) (Frame, error) {
	f, n, err := parseHeader(hdr[:], maxBody)
	if err != nil {
		return Frame{}, err
	}
	if n > 0 {
		f.Body = make([]byte, n)
		if _, err := io.ReadFull(r, f.Body); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
	}
	return f, nil
}

// Split calls fn for each frame in a run of complete frames (an op-9 body).
// Inner frames are not size-limited beyond the run itself.
func Split(b []byte, fn func(Frame) error) error {
	for len(b) > 0 {
		f, n, err := Decode(b, len(b))
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// ParseOps parses a Sub/Unsub body: comma-separated int32 ops.
func ParseOps(body []byte) ([]int32, error) {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	ops := make([]int32, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		v, err := strconv.ParseInt(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("protocol: bad op %q in list: %w", p, err)
		}
		ops = append(ops, int32(v))
	}
	return ops, nil
}
