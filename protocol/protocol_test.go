package protocol_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/imcloud/imcloud/protocol"
)

// Byte strings captured from a running goim v2 (shared/goim-observed.md §7).
const (
	// TCP auth: ver 1, op 7, seq 1, body {"accepts":[1000,1001,1002],"key":"tcp-key-1","mid":1,"platform":"web","room_id":"live://1000"}.
	goimAuthTCP = "0000006f0010000100000007000000017b2261636365707473223a5b313030302c313030312c313030325d2c226b6579223a227463702d6b65792d31222c226d6964223a312c22706c6174666f726d223a22776562222c22726f6f6d5f6964223a226c6976653a2f2f31303030227d"
	// WS auth payload (the WebSocket frame header 82ee + zero mask stripped).
	goimAuthWS        = "0000006e0010000100000007000000017b2261636365707473223a5b313030302c313030312c313030325d2c226b6579223a2277732d6b65792d32222c226d6964223a322c22706c6174666f726d223a22776562222c22726f6f6d5f6964223a226c6976653a2f2f31303030227d"
	goimAuthReply     = "00000010001000010000000800000001"
	goimHeartbeat     = "00000010001000010000000200000002"
	goimHeartbeatRep  = "0000001400100001000000030000000200000001"
	goimHeartbeatV0   = "00000010001000000000000200000000"
	goimHeartbeatRep0 = "0000001400100000000000030000000000000001"
	// Push by mid, TCP (plain frame) and WS (op-9 wrapper).
	goimPushMidTCP = "0000001900100001000003e80000000068656c6c6f2d6d6964"
	goimPushMidWS  = "000000290010000100000009000000000000001900100001000003e80000000068656c6c6f2d6d6964"
	goimPushKeyWS  = "000000290010000100000009000000000000001900100001000003e90000000068656c6c6f2d6b6579"
	goimBcastWS    = "000000270010000100000009000000000000001700100001000003e80000000062636173742d31"
	// Room batch of three, WS (one op 9) and TCP (three frames in one write).
	goimRoomBatchWS  = "0000005e0010000100000009000000000000001a00100001000003e800000000726f6f6d2d6d73672d320000001a00100001000003e800000000726f6f6d2d6d73672d330000001a00100001000007d000000000726f6f6d2d6d73672d34"
	goimRoomBatchTCP = "0000001a00100001000003e800000000726f6f6d2d6d73672d320000001a00100001000003e800000000726f6f6d2d6d73672d330000001a00100001000007d000000000726f6f6d2d6d73672d34"
	// Client ops 4, 14, 16, 12 and the four replies goim wrote back in one chunk.
	goimSendMsg    = "0000001a00100001000000040000000a636c69656e742d6d7367"
	goimSub        = "00000014001000010000000e0000000b32303030"
	goimUnsub      = "0000001400100001000000100000000c32303030"
	goimChangeRoom = "0000001b001000010000000c0000000d6c6976653a2f2f32303030"
	goimReplies    = "0000001000100001000000040000000a00000014001000010000000f0000000b323030300000001400100001000000110000000c323030300000001b001000010000000d0000000d6c6976653a2f2f32303030"
	// Bad input: auth body not JSON; packLen 5000 (over 4096+16).
	goimAuthNotJSON = "000000180010000100000007000000016e6f742d6a736f6e"
	goimTooLarge    = "00001388001000010000000700000001"
)

func hx(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func body(t testing.TB, hexFrame string) []byte {
	t.Helper()
	return hx(hexFrame)[protocol.HeaderLen:]
}

// TestEncodeGoimBytes checks that our encoder produces goim's bytes exactly.
func TestEncodeGoimBytes(t *testing.T) {
	pushMid := protocol.EncodePush(1000, []byte("hello-mid"))
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"auth tcp", protocol.Encode(1, protocol.OpAuth, 1, body(t, goimAuthTCP)), goimAuthTCP},
		{"auth ws", protocol.Encode(1, protocol.OpAuth, 1, body(t, goimAuthWS)), goimAuthWS},
		{"auth reply", protocol.Encode(1, protocol.OpAuthReply, 1, nil), goimAuthReply},
		{"heartbeat", protocol.Encode(1, protocol.OpHeartbeat, 2, nil), goimHeartbeat},
		{"heartbeat reply", protocol.Encode(1, protocol.OpHeartbeatReply, 2, []byte{0, 0, 0, 1}), goimHeartbeatRep},
		{"heartbeat ver 0", protocol.Encode(0, protocol.OpHeartbeat, 0, nil), goimHeartbeatV0},
		{"heartbeat reply ver 0", protocol.Encode(0, protocol.OpHeartbeatReply, 0, []byte{0, 0, 0, 1}), goimHeartbeatRep0},
		{"push mid tcp", pushMid, goimPushMidTCP},
		{"push mid ws", protocol.AppendRaw(nil, pushMid), goimPushMidWS},
		{"push key ws", protocol.AppendRaw(nil, protocol.EncodePush(1001, []byte("hello-key"))), goimPushKeyWS},
		{"broadcast ws", protocol.AppendRaw(nil, protocol.EncodePush(1000, []byte("bcast-1"))), goimBcastWS},
		{"room batch tcp", func() []byte {
			var b []byte
			for _, m := range []struct {
				op   int32
				body string
			}{{1000, "room-msg-2"}, {1000, "room-msg-3"}, {2000, "room-msg-4"}} {
				f := protocol.Frame{Ver: protocol.PushVer, Op: m.op, Body: []byte(m.body)}
				b = f.Append(b)
			}
			return b
		}(), goimRoomBatchTCP},
		{"room batch ws", protocol.AppendRaw(nil, hx(goimRoomBatchTCP)), goimRoomBatchWS},
		{"send msg", protocol.Encode(1, protocol.OpSendMsg, 10, []byte("client-msg")), goimSendMsg},
		{"sub", protocol.Encode(1, protocol.OpSub, 11, []byte("2000")), goimSub},
		{"unsub", protocol.Encode(1, protocol.OpUnsub, 12, []byte("2000")), goimUnsub},
		{"change room", protocol.Encode(1, protocol.OpChangeRoom, 13, []byte("live://2000")), goimChangeRoom},
		{"replies", func() []byte {
			b := protocol.AppendHeader(nil, 0, 1, protocol.OpSendMsg, 10)
			b = protocol.AppendHeader(b, 4, 1, protocol.OpSubReply, 11)
			b = append(b, "2000"...)
			b = protocol.AppendHeader(b, 4, 1, protocol.OpUnsubReply, 12)
			b = append(b, "2000"...)
			f := protocol.Frame{Ver: 1, Op: protocol.OpChangeRoomReply, Seq: 13, Body: []byte("live://2000")}
			return f.Append(b)
		}(), goimReplies},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hex.EncodeToString(tt.got); got != tt.want {
				t.Errorf("encoded\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestEncodeAppend(t *testing.T) {
	tests := []struct {
		name string
		f    protocol.Frame
		want string
	}{
		{"empty body", protocol.Frame{Ver: 1, Op: 2, Seq: 3}, "00000010001000010000000200000003"},
		{"body", protocol.Frame{Ver: 1, Op: 1000, Seq: 0, Body: []byte("ab")}, "0000001200100001000003e8000000006162"},
		{"negative fields", protocol.Frame{Ver: -1, Op: -2, Seq: -3, Body: []byte{0}}, "000000110010fffffffffffefffffffd00"},
		{"max fields", protocol.Frame{Ver: 32767, Op: 2147483647, Seq: -2147483648}, "000000100010" + "7fff" + "7fffffff" + "80000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := protocol.Encode(tt.f.Ver, tt.f.Op, tt.f.Seq, tt.f.Body)
			if got := hex.EncodeToString(enc); got != tt.want {
				t.Errorf("Encode = %s, want %s", got, tt.want)
			}
			if len(enc) != tt.f.Size() {
				t.Errorf("Size = %d, encoded %d", tt.f.Size(), len(enc))
			}
			prefix := []byte("xyz")
			app := tt.f.Append(append([]byte(nil), prefix...))
			if !bytes.Equal(app[:3], prefix) || !bytes.Equal(app[3:], enc) {
				t.Errorf("Append = %x, want prefix + %x", app, enc)
			}
			hdr := protocol.AppendHeader(nil, len(tt.f.Body), tt.f.Ver, tt.f.Op, tt.f.Seq)
			if !bytes.Equal(hdr, enc[:protocol.HeaderLen]) {
				t.Errorf("AppendHeader = %x, want %x", hdr, enc[:protocol.HeaderLen])
			}
			// Round trip.
			f, n, err := protocol.Decode(enc, len(tt.f.Body))
			if err != nil || n != len(enc) {
				t.Fatalf("Decode = %v, %d, %v", f, n, err)
			}
			if f.Ver != tt.f.Ver || f.Op != tt.f.Op || f.Seq != tt.f.Seq || !bytes.Equal(f.Body, tt.f.Body) {
				t.Errorf("Decode = %v, want %v", f, tt.f)
			}
		})
	}
}

func TestEncodeCopiesBody(t *testing.T) {
	b := []byte("body")
	enc := protocol.Encode(1, 1000, 0, b)
	b[0] = 'X'
	if string(enc[protocol.HeaderLen:]) != "body" {
		t.Errorf("Encode aliases its body argument: %q", enc[protocol.HeaderLen:])
	}
}

func TestAppendRaw(t *testing.T) {
	inner := append(protocol.EncodePush(1000, []byte("a")), protocol.EncodePush(1001, []byte("bc"))...)
	dst := []byte{0xAA}
	got := protocol.AppendRaw(dst, inner)
	want := append([]byte{0xAA}, protocol.Encode(protocol.PushVer, protocol.OpRaw, 0, inner)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendRaw = %x, want %x", got, want)
	}
	f, n, err := protocol.Decode(got[1:], len(inner))
	if err != nil || n != len(got)-1 || f.Op != protocol.OpRaw || f.Ver != 1 || f.Seq != 0 {
		t.Fatalf("Decode(AppendRaw) = %v, %d, %v", f, n, err)
	}
	var ops []int32
	if err := protocol.Split(f.Body, func(f protocol.Frame) error { ops = append(ops, f.Op); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ops, []int32{1000, 1001}) {
		t.Errorf("inner ops = %v", ops)
	}
	// An empty batch is still a well-formed op-9 frame.
	if got := hex.EncodeToString(protocol.AppendRaw(nil, nil)); got != "00000010001000010000000900000000" {
		t.Errorf("AppendRaw(nil, nil) = %s", got)
	}
}

func TestDecode(t *testing.T) {
	withTail := append(hx(goimHeartbeatRep), 0xde, 0xad)
	atLimit := protocol.Encode(1, 1000, 0, make([]byte, 100))
	tests := []struct {
		name    string
		in      []byte
		max     int
		wantN   int
		wantErr error
		want    protocol.Frame
	}{
		{"auth", hx(goimAuthTCP), 4096, 111, nil, protocol.Frame{Ver: 1, Op: 7, Seq: 1, Body: body(t, goimAuthTCP)}},
		{"empty body", hx(goimAuthReply), 4096, 16, nil, protocol.Frame{Ver: 1, Op: 8, Seq: 1, Body: []byte{}}},
		{"trailing bytes ignored", withTail, 4096, 20, nil, protocol.Frame{Ver: 1, Op: 3, Seq: 2, Body: []byte{0, 0, 0, 1}}},
		{"exactly at limit", atLimit, 100, 116, nil, protocol.Frame{Ver: 1, Op: 1000, Body: make([]byte, 100)}},
		{"zero limit, empty body", hx(goimHeartbeat), 0, 16, nil, protocol.Frame{Ver: 1, Op: 2, Seq: 2, Body: []byte{}}},
		{"one over limit", atLimit, 99, 0, protocol.ErrTooLarge, protocol.Frame{}},
		{"goim too large", hx(goimTooLarge), 4096, 0, protocol.ErrTooLarge, protocol.Frame{}},
		{"packLen max uint32", hx("ffffffff001000010000000700000001"), 4096, 0, protocol.ErrTooLarge, protocol.Frame{}},
		{"empty", nil, 4096, 0, protocol.ErrShort, protocol.Frame{}},
		{"short header", hx(goimHeartbeat)[:15], 4096, 0, protocol.ErrShort, protocol.Frame{}},
		{"short body", hx(goimAuthTCP)[:110], 4096, 0, protocol.ErrShort, protocol.Frame{}},
		{"header only of a frame with a body", hx(goimAuthTCP)[:16], 4096, 0, protocol.ErrShort, protocol.Frame{}},
		{"headerLen 0", hx("00000010000000010000000200000002"), 4096, 0, protocol.ErrHeaderLen, protocol.Frame{}},
		{"headerLen 17", hx("00000011001100010000000200000002ff"), 4096, 0, protocol.ErrHeaderLen, protocol.Frame{}},
		{"headerLen ffff", hx("0000001000ffff010000000200000002"), 4096, 0, protocol.ErrHeaderLen, protocol.Frame{}},
		{"packLen 0", hx("00000000001000010000000200000002"), 4096, 0, protocol.ErrPackLen, protocol.Frame{}},
		{"packLen 15", hx("0000000f001000010000000200000002"), 4096, 0, protocol.ErrPackLen, protocol.Frame{}},
		{"headerLen checked before a short body", hx("00000100000000010000000200000002"), 4096, 0, protocol.ErrHeaderLen, protocol.Frame{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, err := protocol.Decode(tt.in, tt.max)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if n != tt.wantN {
				t.Errorf("n = %d, want %d", n, tt.wantN)
			}
			if err != nil {
				if !reflect.DeepEqual(f, protocol.Frame{}) {
					t.Errorf("frame on error = %v", f)
				}
				return
			}
			if f.Ver != tt.want.Ver || f.Op != tt.want.Op || f.Seq != tt.want.Seq || !bytes.Equal(f.Body, tt.want.Body) {
				t.Errorf("frame = %v, want %v", f, tt.want)
			}
			if cap(f.Body) != len(f.Body) {
				t.Errorf("body cap %d > len %d: appending to it would clobber the next frame", cap(f.Body), len(f.Body))
			}
		})
	}
}

func TestDecodeBodyAliases(t *testing.T) {
	b := protocol.Encode(1, 1000, 0, []byte("abc"))
	f, _, err := protocol.Decode(b, 4096)
	if err != nil {
		t.Fatal(err)
	}
	b[protocol.HeaderLen] = 'X'
	if string(f.Body) != "Xbc" {
		t.Errorf("Decode body does not alias input: %q", f.Body)
	}
}

func TestDecodeMessage(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		max     int
		wantErr error
		want    protocol.Frame
	}{
		{"auth ws", hx(goimAuthWS), 4096, nil, protocol.Frame{Ver: 1, Op: 7, Seq: 1, Body: body(t, goimAuthWS)}},
		{"heartbeat", hx(goimHeartbeat), 4096, nil, protocol.Frame{Ver: 1, Op: 2, Seq: 2}},
		{"op 9 push", hx(goimRoomBatchWS), 4096, nil, protocol.Frame{Ver: 1, Op: 9, Seq: 0, Body: hx(goimRoomBatchTCP)}},
		{"exactly at limit", protocol.Encode(1, 4, 1, make([]byte, 64)), 64, nil, protocol.Frame{Ver: 1, Op: 4, Seq: 1, Body: make([]byte, 64)}},
		{"over limit", protocol.Encode(1, 4, 1, make([]byte, 65)), 64, protocol.ErrTooLarge, protocol.Frame{}},
		{"goim too large", hx(goimTooLarge), 4096, protocol.ErrTooLarge, protocol.Frame{}},
		{"packLen < message", append(hx(goimHeartbeat), 0), 4096, protocol.ErrLenMismatch, protocol.Frame{}},
		{"packLen > message", hx(goimAuthWS)[:100], 4096, protocol.ErrLenMismatch, protocol.Frame{}},
		{"two frames in one message", append(hx(goimHeartbeat), hx(goimHeartbeat)...), 4096, protocol.ErrLenMismatch, protocol.Frame{}},
		{"empty message", nil, 4096, protocol.ErrPackLen, protocol.Frame{}},
		{"tiny message", []byte{0, 0, 0, 16}, 4096, protocol.ErrPackLen, protocol.Frame{}},
		{"15 bytes", hx(goimHeartbeat)[:15], 4096, protocol.ErrPackLen, protocol.Frame{}},
		{"headerLen 0", hx("00000010000000010000000200000002"), 4096, protocol.ErrHeaderLen, protocol.Frame{}},
		{"packLen 4", hx("00000004001000010000000200000002"), 4096, protocol.ErrPackLen, protocol.Frame{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := protocol.DecodeMessage(tt.in, tt.max)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if f.Ver != tt.want.Ver || f.Op != tt.want.Op || f.Seq != tt.want.Seq || !bytes.Equal(f.Body, tt.want.Body) {
				t.Errorf("frame = %v, want %v", f, tt.want)
			}
		})
	}
}

func TestReadFrame(t *testing.T) {
	type result struct {
		f   protocol.Frame
		err error
	}
	stream := hx(goimAuthReply + goimHeartbeatRep + goimPushMidTCP)
	tests := []struct {
		name string
		in   []byte
		max  int
		want []result // in order; reading stops after the first error
	}{
		{"stream", stream, 4096, []result{
			{f: protocol.Frame{Ver: 1, Op: 8, Seq: 1}},
			{f: protocol.Frame{Ver: 1, Op: 3, Seq: 2, Body: []byte{0, 0, 0, 1}}},
			{f: protocol.Frame{Ver: 1, Op: 1000, Body: []byte("hello-mid")}},
			{err: io.EOF},
		}},
		{"clean EOF", nil, 4096, []result{{err: io.EOF}}},
		{"truncated header", hx(goimHeartbeat)[:7], 4096, []result{{err: io.ErrUnexpectedEOF}}},
		{"truncated body", hx(goimAuthTCP)[:50], 4096, []result{{err: io.ErrUnexpectedEOF}}},
		{"header only, body missing", hx(goimAuthTCP)[:16], 4096, []result{{err: io.ErrUnexpectedEOF}}},
		{"frame then truncated", hx(goimHeartbeat + goimPushMidTCP)[:30], 4096, []result{
			{f: protocol.Frame{Ver: 1, Op: 2, Seq: 2}},
			{err: io.ErrUnexpectedEOF},
		}},
		{"too large", hx(goimTooLarge), 4096, []result{{err: protocol.ErrTooLarge}}},
		{"exactly at limit", protocol.Encode(1, 1000, 0, []byte("12345")), 5, []result{
			{f: protocol.Frame{Ver: 1, Op: 1000, Body: []byte("12345")}},
			{err: io.EOF},
		}},
		{"one over limit", protocol.Encode(1, 1000, 0, []byte("123456")), 5, []result{{err: protocol.ErrTooLarge}}},
		{"bad headerLen", hx("00000010000f00010000000200000002"), 4096, []result{{err: protocol.ErrHeaderLen}}},
		{"bad packLen", hx("00000008001000010000000200000002"), 4096, []result{{err: protocol.ErrPackLen}}},
	}
	readers := map[string]func([]byte) io.Reader{
		"bytes.Reader": func(b []byte) io.Reader { return bytes.NewReader(b) },
		"OneByteReader": func(b []byte) io.Reader {
			return iotest.OneByteReader(bytes.NewReader(b))
		},
		"DataErrReader": func(b []byte) io.Reader {
			return iotest.DataErrReader(bytes.NewReader(b))
		},
	}
	for _, tt := range tests {
		for rname, mk := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				r := mk(tt.in)
				var hdr [protocol.HeaderLen]byte
				for i, w := range tt.want {
					f, err := protocol.ReadFrame(r, &hdr, tt.max)
					if w.err != nil {
						if !errors.Is(err, w.err) {
							t.Fatalf("read %d: err = %v, want %v", i, err, w.err)
						}
						return
					}
					if err != nil {
						t.Fatalf("read %d: %v", i, err)
					}
					if f.Ver != w.f.Ver || f.Op != w.f.Op || f.Seq != w.f.Seq || !bytes.Equal(f.Body, w.f.Body) {
						t.Errorf("read %d: frame = %v, want %v", i, f, w.f)
					}
					if len(w.f.Body) == 0 && f.Body != nil {
						t.Errorf("read %d: empty body should be nil, got %#v", i, f.Body)
					}
				}
			})
		}
	}
}

func TestReadFrameBodyIsFresh(t *testing.T) {
	var hdr [protocol.HeaderLen]byte
	src := protocol.Encode(1, 1000, 0, []byte("abc"))
	f, err := protocol.ReadFrame(bytes.NewReader(src), &hdr, 4096)
	if err != nil {
		t.Fatal(err)
	}
	src[protocol.HeaderLen] = 'X'
	if string(f.Body) != "abc" {
		t.Errorf("ReadFrame body aliases the source: %q", f.Body)
	}
}

func TestSplit(t *testing.T) {
	type fr struct {
		op   int32
		seq  int32
		body string
	}
	collect := func(b []byte) ([]fr, error) {
		var got []fr
		err := protocol.Split(b, func(f protocol.Frame) error {
			got = append(got, fr{f.Op, f.Seq, string(f.Body)})
			return nil
		})
		return got, err
	}
	roomBatch := []fr{{1000, 0, "room-msg-2"}, {1000, 0, "room-msg-3"}, {2000, 0, "room-msg-4"}}
	tests := []struct {
		name    string
		in      []byte
		want    []fr
		wantErr error
	}{
		{"goim room batch of 3", hx(goimRoomBatchTCP), roomBatch, nil},
		{"goim replies", hx(goimReplies), []fr{{4, 10, ""}, {15, 11, "2000"}, {17, 12, "2000"}, {13, 13, "live://2000"}}, nil},
		{"empty", nil, nil, nil},
		{"truncated last frame", hx(goimRoomBatchTCP)[:77], roomBatch[:2], protocol.ErrShort},
		{"trailing garbage", append(hx(goimRoomBatchTCP), 1, 2, 3), roomBatch, protocol.ErrShort},
		{"corrupt headerLen in second frame", func() []byte {
			b := hx(goimRoomBatchTCP)
			b[26+5] = 0x11
			return b
		}(), roomBatch[:1], protocol.ErrHeaderLen},
		{"packLen 0 in first frame", func() []byte {
			b := hx(goimRoomBatchTCP)
			b[3] = 0
			return b
		}(), nil, protocol.ErrPackLen},
		{"inner packLen beyond the run", func() []byte {
			b := hx(goimRoomBatchTCP)
			b[2] = 0x10 // first frame claims 4122 bytes
			return b
		}(), nil, protocol.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collect(tt.in)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("frames = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSplitStopsOnCallbackError(t *testing.T) {
	stop := errors.New("stop")
	calls := 0
	err := protocol.Split(hx(goimRoomBatchTCP), func(protocol.Frame) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 2 {
		t.Errorf("Split = %v after %d calls, want stop after 2", err, calls)
	}
}

func TestSplitWSPush(t *testing.T) {
	// The op-9 WebSocket push: decode the message, split its body.
	f, err := protocol.DecodeMessage(hx(goimPushMidWS), 4096)
	if err != nil || f.Op != protocol.OpRaw {
		t.Fatalf("DecodeMessage = %v, %v", f, err)
	}
	var inner []protocol.Frame
	if err := protocol.Split(f.Body, func(f protocol.Frame) error { inner = append(inner, f); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(inner) != 1 || inner[0].Op != 1000 || inner[0].Ver != 1 || inner[0].Seq != 0 || string(inner[0].Body) != "hello-mid" {
		t.Errorf("inner = %v", inner)
	}
}

func TestParseOps(t *testing.T) {
	tests := []struct {
		in      string
		want    []int32
		wantErr bool
	}{
		{"2000", []int32{2000}, false},
		{"1000,1001", []int32{1000, 1001}, false},
		{" 1000 , 1001 ,1002 ", []int32{1000, 1001, 1002}, false},
		{"1000,,1001,", []int32{1000, 1001}, false},
		{"", nil, false},
		{"  ", nil, false},
		{",", []int32{}, false},
		{"-1,0", []int32{-1, 0}, false},
		{"2147483647", []int32{2147483647}, false},
		{"2147483648", nil, true},
		{"abc", nil, true},
		{"1000;1001", nil, true},
		{"1000,x", nil, true},
		{"1e3", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := protocol.ParseOps([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseOps(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseAuth(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    protocol.Auth
		wantErr bool
	}{
		{"goim tcp", string(body(t, goimAuthTCP)), protocol.Auth{Mid: 1, Key: "tcp-key-1", RoomID: "live://1000", Platform: "web", Accepts: []int32{1000, 1001, 1002}}, false},
		{"goim ws", string(body(t, goimAuthWS)), protocol.Auth{Mid: 2, Key: "ws-key-2", RoomID: "live://1000", Platform: "web", Accepts: []int32{1000, 1001, 1002}}, false},
		{"design example", `{"mid":123,"key":"","room_id":"live://1000","platform":"web","accepts":[1000,1001]}`, protocol.Auth{Mid: 123, RoomID: "live://1000", Platform: "web", Accepts: []int32{1000, 1001}}, false},
		{"unknown fields ignored", `{"mid":5,"token":"secret","extra":{"a":[1,2]},"room_id":"x"}`, protocol.Auth{Mid: 5, RoomID: "x"}, false},
		{"empty object", `{}`, protocol.Auth{}, false},
		{"key at limit", `{"key":"` + strings.Repeat("k", protocol.MaxKeyLen) + `"}`, protocol.Auth{Key: strings.Repeat("k", protocol.MaxKeyLen)}, false},
		{"room at limit", `{"room_id":"` + strings.Repeat("r", protocol.MaxRoomLen) + `"}`, protocol.Auth{RoomID: strings.Repeat("r", protocol.MaxRoomLen)}, false},
		{"not JSON (goim capture)", string(body(t, goimAuthNotJSON)), protocol.Auth{}, true},
		{"empty body", ``, protocol.Auth{}, true},
		{"truncated", `{"mid":1`, protocol.Auth{}, true},
		{"trailing data", `{"mid":1}x`, protocol.Auth{}, true},
		{"array", `[1,2]`, protocol.Auth{}, true},
		{"mid wrong type", `{"mid":"1"}`, protocol.Auth{}, true},
		{"accepts overflow int32", `{"accepts":[2147483648]}`, protocol.Auth{}, true},
		{"key too long", `{"key":"` + strings.Repeat("k", protocol.MaxKeyLen+1) + `"}`, protocol.Auth{}, true},
		{"key with a comma", `{"key":"a,b"}`, protocol.Auth{}, true},
		{"key with surrounding spaces", `{"key":" k"}`, protocol.Auth{}, true},
		{"key with inner space", `{"key":"k k"}`, protocol.Auth{Key: "k k"}, false},
		{"room too long", `{"room_id":"` + strings.Repeat("r", protocol.MaxRoomLen+1) + `"}`, protocol.Auth{}, true},
		{"accepts at the limit", `{"accepts":[` + opsJSON(protocol.MaxAccepts, 0) + `]}`, protocol.Auth{Accepts: opsSeq(protocol.MaxAccepts, 0)}, false},
		{"accepts repeated past the limit", `{"accepts":[` + opsJSON(protocol.MaxAccepts, 1) + `]}`, protocol.Auth{Accepts: opsSeq(protocol.MaxAccepts, 1)}, false},
		{"too many accepts", `{"accepts":[` + opsJSON(protocol.MaxAccepts+1, 0) + `]}`, protocol.Auth{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.ParseAuth([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, protocol.ErrBadAuth) {
					t.Errorf("err %v does not wrap ErrBadAuth", err)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseAuth = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRoomHelpers(t *testing.T) {
	if got := protocol.RoomID("live", "1000"); got != "live://1000" {
		t.Errorf("RoomID = %q", got)
	}
	if err := protocol.ValidRoom(""); err != nil {
		t.Errorf("ValidRoom(\"\") = %v", err)
	}
	if err := protocol.ValidRoom(strings.Repeat("x", protocol.MaxRoomLen+1)); err == nil {
		t.Error("ValidRoom accepted an over-long room")
	}
	if err := protocol.ValidRoom("live://\xff\xfe"); err == nil {
		t.Error("ValidRoom accepted a room that is not UTF-8")
	}
	if err := protocol.ValidRoom("live://\ufffd"); err == nil {
		t.Error("ValidRoom accepted U+FFFD, what invalid bytes decode to")
	}
	if _, err := protocol.ParseAuth([]byte(`{"mid":1,"room_id":"live://\udc80"}`)); err == nil {
		t.Error("ParseAuth accepted a room id with a lone surrogate")
	}
	if _, err := protocol.ParseAuth([]byte("{\"mid\":1,\"room_id\":\"live://\xff\"}")); err == nil {
		t.Error("ParseAuth accepted a room id that is not UTF-8")
	}
	if err := protocol.ValidRoom("live://房间"); err != nil {
		t.Errorf("ValidRoom refused a UTF-8 room: %v", err)
	}
}

func TestFrameString(t *testing.T) {
	f := protocol.Frame{Ver: 1, Op: 1000, Seq: 0, Body: []byte("hi\x00")}
	if got, want := f.String(), `frame{ver=1 op=1000 seq=0 body="hi\x00"}`; got != want {
		t.Errorf("String = %s, want %s", got, want)
	}
}

// opsSeq returns ops 0..n-1, then the first `again` of them once more.
func opsSeq(n, again int) []int32 {
	ops := make([]int32, 0, n+again)
	for i := range n {
		ops = append(ops, int32(i))
	}
	return append(ops, ops[:again]...)
}

func opsJSON(n, again int) string {
	var b strings.Builder
	for i, op := range opsSeq(n, again) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(op)))
	}
	return b.String()
}
