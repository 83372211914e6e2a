package protocol_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/imcloud/imcloud/protocol"
)

// Seeds shared by the frame fuzzers; the committed corpus under
// testdata/fuzz/<FuzzName>/ holds the same goim captures plus malformed frames.
func frameSeeds() [][]byte {
	seeds := [][]byte{
		nil,
		hx(goimAuthTCP),
		hx(goimAuthWS),
		hx(goimAuthReply),
		hx(goimHeartbeatRep),
		hx(goimPushMidWS),
		hx(goimRoomBatchWS),
		hx(goimRoomBatchTCP),
		hx(goimReplies),
		hx(goimAuthNotJSON),
		hx(goimTooLarge),
		hx(goimAuthTCP)[:40],                     // short body
		hx(goimHeartbeat)[:9],                    // short header
		hx("00000010000000010000000200000002"),   // headerLen 0
		hx("0000000f001000010000000200000002"),   // packLen 15
		hx("ffffffff001000010000000700000001"),   // packLen max
		append(hx(goimHeartbeat), 0xff, 0xfe, 0), // trailing bytes
	}
	return seeds
}

const fuzzMax = protocol.DefaultMaxBody

// FuzzDecode: Decode never panics; a decoded frame re-encodes to exactly the
// bytes it used, and DecodeMessage, ReadFrame and Split agree with it.
func FuzzDecode(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := protocol.Decode(b, fuzzMax)
		if err != nil {
			if n != 0 {
				t.Fatalf("n = %d with error %v", n, err)
			}
			if errors.Is(err, protocol.ErrShort) {
				// Only short when the header is valid and more bytes would help.
				if len(b) >= protocol.HeaderLen {
					if pl := int(binary.BigEndian.Uint32(b)); pl <= len(b) {
						t.Fatalf("ErrShort with packLen %d <= len %d", pl, len(b))
					}
				}
			}
		} else {
			if n < protocol.HeaderLen || n > len(b) || len(fr.Body) > fuzzMax || n != fr.Size() {
				t.Fatalf("bad result: n=%d len=%d body=%d", n, len(b), len(fr.Body))
			}
			if enc := protocol.Encode(fr.Ver, fr.Op, fr.Seq, fr.Body); !bytes.Equal(enc, b[:n]) {
				t.Fatalf("re-encoded %x, input %x", enc, b[:n])
			}
			if app := fr.Append(nil); !bytes.Equal(app, b[:n]) {
				t.Fatalf("Append %x, input %x", app, b[:n])
			}
			m, err := protocol.DecodeMessage(b[:n], fuzzMax)
			if err != nil || !sameFrame(m, fr) {
				t.Fatalf("DecodeMessage(b[:n]) = %v, %v; Decode = %v", m, err, fr)
			}
		}
		// ReadFrame must agree with Decode on the same bytes.
		var hdr [protocol.HeaderLen]byte
		rf, rerr := protocol.ReadFrame(bytes.NewReader(b), &hdr, fuzzMax)
		switch {
		case err == nil:
			if rerr != nil || !sameFrame(rf, fr) {
				t.Fatalf("ReadFrame = %v, %v; Decode = %v", rf, rerr, fr)
			}
		case errors.Is(err, protocol.ErrShort):
			if !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
				t.Fatalf("Decode short but ReadFrame err = %v", rerr)
			}
		default:
			if rerr == nil || errors.Unwrap(rerr) != errors.Unwrap(err) {
				t.Fatalf("Decode err %v, ReadFrame err %v", err, rerr)
			}
		}
		// Split must not panic and must consume exactly what it reports.
		total := 0
		_ = protocol.Split(b, func(f protocol.Frame) error {
			total += f.Size()
			return nil
		})
		if total > len(b) {
			t.Fatalf("Split consumed %d of %d bytes", total, len(b))
		}
	})
}

// FuzzDecodeMessage: a decoded message re-encodes to exactly the message, and
// DecodeMessage accepts exactly what Decode accepts with n == len(msg).
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		fr, err := protocol.DecodeMessage(msg, fuzzMax)
		df, n, derr := protocol.Decode(msg, fuzzMax)
		wholeFrame := derr == nil && n == len(msg)
		if (err == nil) != wholeFrame {
			t.Fatalf("DecodeMessage err %v; Decode n=%d/%d err %v", err, n, len(msg), derr)
		}
		if err != nil {
			return
		}
		if !sameFrame(fr, df) {
			t.Fatalf("DecodeMessage %v, Decode %v", fr, df)
		}
		if enc := protocol.Encode(fr.Ver, fr.Op, fr.Seq, fr.Body); !bytes.Equal(enc, msg) {
			t.Fatalf("re-encoded %x, message %x", enc, msg)
		}
		if fr.Op == protocol.OpRaw {
			_ = protocol.Split(fr.Body, func(protocol.Frame) error { return nil })
		}
	})
}

// FuzzReadFrame: reading a stream frame by frame (one byte per Read) never
// panics, every frame re-encodes to its bytes, and the stream ends with EOF,
// ErrUnexpectedEOF or a protocol error exactly where Decode says it should.
func FuzzReadFrame(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := iotest.OneByteReader(bytes.NewReader(b))
		var hdr [protocol.HeaderLen]byte
		rest := b
		for i := 0; ; i++ {
			fr, err := protocol.ReadFrame(r, &hdr, fuzzMax)
			df, n, derr := protocol.Decode(rest, fuzzMax)
			if err != nil {
				switch {
				case len(rest) == 0:
					if err != io.EOF {
						t.Fatalf("frame %d: at end err = %v, want io.EOF", i, err)
					}
				case errors.Is(derr, protocol.ErrShort):
					if err != io.ErrUnexpectedEOF {
						t.Fatalf("frame %d: truncated err = %v, want io.ErrUnexpectedEOF", i, err)
					}
				case derr == nil:
					t.Fatalf("frame %d: ReadFrame err %v but Decode ok", i, err)
				default:
					if errors.Unwrap(err) != errors.Unwrap(derr) {
						t.Fatalf("frame %d: ReadFrame err %v, Decode err %v", i, err, derr)
					}
				}
				return
			}
			if derr != nil || !sameFrame(fr, df) {
				t.Fatalf("frame %d: ReadFrame %v, Decode %v %v", i, fr, df, derr)
			}
			if enc := protocol.Encode(fr.Ver, fr.Op, fr.Seq, fr.Body); !bytes.Equal(enc, rest[:n]) {
				t.Fatalf("frame %d: re-encoded %x, input %x", i, enc, rest[:n])
			}
			rest = rest[n:]
		}
	})
}

// FuzzParseAuth: ParseAuth never panics, enforces its limits, and what it
// accepts survives a JSON round trip unchanged.
func FuzzParseAuth(f *testing.F) {
	f.Add(body(f, goimAuthTCP))
	f.Add(body(f, goimAuthWS))
	f.Add(body(f, goimAuthNotJSON))
	f.Add([]byte(`{"mid":123,"key":"","room_id":"live://1000","platform":"web","accepts":[1000,1001]}`))
	f.Add([]byte(`{"mid":-1,"token":"x","accepts":null}`))
	f.Add([]byte(`{"key":"\ud800","room_id":"\u00e9"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"accepts":[2147483648]}`))
	f.Add([]byte{0xff, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := protocol.ParseAuth(b)
		if err != nil {
			if !errors.Is(err, protocol.ErrBadAuth) {
				t.Fatalf("error %v does not wrap ErrBadAuth", err)
			}
			return
		}
		if len(a.Key) > protocol.MaxKeyLen || len(a.RoomID) > protocol.MaxRoomLen {
			t.Fatalf("limits not enforced: key %d room %d", len(a.Key), len(a.RoomID))
		}
		if strings.Contains(a.Key, ",") || strings.TrimSpace(a.Key) != a.Key {
			t.Fatalf("key %q cannot be pushed to by REST but was accepted", a.Key)
		}
		if !utf8.ValidString(a.Key) || !utf8.ValidString(a.RoomID) || !utf8.ValidString(a.Platform) {
			t.Fatalf("invalid UTF-8 survived decoding: %+v", a)
		}
		enc, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("marshal %+v: %v", a, err)
		}
		a2, err := protocol.ParseAuth(enc)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", enc, err)
		}
		if !reflect.DeepEqual(a, a2) {
			t.Fatalf("round trip changed %+v to %+v", a, a2)
		}
	})
}

func sameFrame(a, b protocol.Frame) bool {
	return a.Ver == b.Ver && a.Op == b.Op && a.Seq == b.Seq && bytes.Equal(a.Body, b.Body)
}
