package ws

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport"
)

// FuzzReadFrame feeds arbitrary client bytes to ReadFrame, split between
// what came with the handshake and what the socket delivers, and checks it
// never panics or hangs and agrees with refParse, a plain reading of
// RFC 6455 and the goim rules over the whole input.
func FuzzReadFrame(f *testing.F) {
	auth := protocol.Encode(1, protocol.OpAuth, 1, []byte(`{"mid":1,"room_id":"live://1000"}`))
	hb := protocol.Encode(1, protocol.OpHeartbeat, 2, nil)
	seeds := [][]byte{
		msg(auth),
		cat(msg(auth), msg(hb), msgFragment(true, opClose, []byte{3, 232})),
		cat(msgFragment(false, opBinary, auth[:3]), msgFragment(true, opPing, []byte("p")), msgFragment(true, opContinuation, auth[3:])),
		wsFrame{fin: true, op: opBinary, payload: hb, unmasked: true}.bytes(),
		wsFrame{fin: true, op: opBinary, payload: hb, lenBytes: 8}.bytes(),
		wsFrame{fin: true, op: opBinary, declare: true, declared: 1 << 40}.bytes(),
		msg(cat(hb, []byte{0})),
		msgFragment(true, opClose, []byte{0x03, 0xed}),                  // 1005 may not be sent
		msgFragment(true, opClose, []byte{0x0b, 0xb8, 'o', 'k'}),        // 3000, a library's
		msgFragment(true, opClose, []byte{0x03, 0xe8, 0xff, 0xfe, 'x'}), // reason not UTF-8
	}
	for _, s := range seeds {
		f.Add(s, uint16(0), uint16(protocol.DefaultMaxBody))
		f.Add(s, uint16(len(s)/2), uint16(16))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint16, maxBody uint16) {
		pending := in[:min(int(split), len(in))]
		rest := in[len(pending):]
		got := runReadFrame(t, pending, rest, int(maxBody))
		want := refParse(in, int(maxBody))
		if got.end != want.end {
			t.Fatalf("ended with %q, reference %q (%d frames, %d controls read)", got.end, want.end, len(got.frames), len(got.controls))
		}
		if len(got.frames) != len(want.frames) {
			t.Fatalf("%d frames, reference %d", len(got.frames), len(want.frames))
		}
		for i := range got.frames {
			if !bytes.Equal(got.frames[i], want.frames[i]) {
				t.Fatalf("frame %d: %x, reference %x", i, got.frames[i], want.frames[i])
			}
		}
		if got.closeCode != want.closeCode {
			t.Fatalf("close code %d, reference %d", got.closeCode, want.closeCode)
		}
		if len(got.controls) != len(want.controls) {
			t.Fatalf("%d control items, reference %d", len(got.controls), len(want.controls))
		}
		for i := range got.controls {
			if !bytes.Equal(got.controls[i], want.controls[i]) {
				t.Fatalf("control item %d: %x, reference %x", i, got.controls[i], want.controls[i])
			}
		}
	})
}

// parsed is what a stream of client bytes yields: goim frames (encoded),
// control items queued, how reading ended, and the code of the close frame
// Close then sends (0: one with no body).
type parsed struct {
	frames    [][]byte
	controls  [][]byte
	end       string // eof, closed, protocol, too_large, len_mismatch, pack_len, header_len
	closeCode uint16
}

func runReadFrame(t *testing.T, pending, rest []byte, maxBody int) parsed {
	a, b := net.Pipe()
	c := newConn(pipeEnd{a}, maxBody, "pipe", bytes.Clone(pending))
	var res parsed
	var mu sync.Mutex
	c.SetControl(func(o transport.Out) bool {
		if !o.Raw || o.Push {
			t.Errorf("control item %+v is not raw", o)
		}
		mu.Lock()
		res.controls = append(res.controls, bytes.Clone(o.Data))
		mu.Unlock()
		return true
	})
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = b.Write(rest) // fails once the reader gave up and closed
		b.Close()
	})
	defer func() { a.Close(); wg.Wait() }()
	for {
		fr, err := c.ReadFrame(time.Now().Add(10 * time.Second))
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("ReadFrame hung")
			}
			res.end = errorClass(err)
			if res.end == "" {
				t.Fatalf("unexpected error: %v", err)
			}
			res.closeCode = closeCodeOf(t, c.closeFrame())
			return res
		}
		if len(fr.Body) > maxBody {
			t.Fatalf("body of %d bytes over the limit %d", len(fr.Body), maxBody)
		}
		res.frames = append(res.frames, fr.Append(nil))
	}
}

// pipeEnd is a net.Pipe end whose SetReadDeadline keeps working once the
// other end is closed (net.Pipe refuses with io.ErrClosedPipe, a TCP socket
// does not), so the bytes that came with the handshake are still read and
// the end of the stream shows as io.EOF from Read.
type pipeEnd struct{ net.Conn }

func (p pipeEnd) SetReadDeadline(t time.Time) error {
	if err := p.Conn.SetReadDeadline(t); err != nil && !errors.Is(err, io.ErrClosedPipe) {
		return err
	}
	return nil
}

// closeCodeOf is the code of close frame f, 0 if it has no body.
func closeCodeOf(t testing.TB, f []byte) uint16 {
	t.Helper()
	if len(f) < 2 || f[0] != 0x80|opClose || int(f[1]) != len(f)-2 || len(f) == 3 || len(f) > 127 {
		t.Fatalf("close frame %x is malformed", f)
	}
	if len(f) == 2 {
		return 0
	}
	return binary.BigEndian.Uint16(f[2:])
}

func errorClass(err error) string {
	switch {
	case errors.Is(err, ErrClosedByPeer):
		return "closed"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, ErrProtocol):
		return "protocol"
	case errors.Is(err, protocol.ErrTooLarge):
		return "too_large"
	case errors.Is(err, protocol.ErrLenMismatch):
		return "len_mismatch"
	case errors.Is(err, protocol.ErrPackLen):
		return "pack_len"
	case errors.Is(err, protocol.ErrHeaderLen):
		return "header_len"
	}
	return ""
}

// refParse reads in as a whole: the reference for the fuzzer.
func refParse(in []byte, maxBody int) (res parsed) {
	res.closeCode = transport.CloseNormal // unless the WebSocket layer finds fault
	take := func(n uint64) ([]byte, bool) {
		if uint64(len(in)) < n {
			return nil, false
		}
		b := in[:n]
		in = in[n:]
		return b, true
	}
	var msg []byte
	inMsg := false
	for {
		h, ok := take(2)
		if !ok {
			res.end = "eof"
			return res
		}
		fin, rsv, op, masked := h[0]&0x80 != 0, h[0]&0x70, h[0]&0x0f, h[1]&0x80 != 0
		if rsv != 0 || !masked { // no extension is negotiated; clients must mask
			res.end, res.closeCode = "protocol", transport.CloseProtocolError
			return res
		}
		n := uint64(h[1] & 0x7f)
		if n >= 126 {
			ext, ok := take(map[uint64]uint64{126: 2, 127: 8}[n])
			if !ok {
				res.end = "eof"
				return res
			}
			if len(ext) == 2 {
				n = uint64(binary.BigEndian.Uint16(ext))
			} else {
				n = binary.BigEndian.Uint64(ext)
				if n>>63 != 0 { // RFC 6455 section 5.2: the top bit must be 0
					res.end, res.closeCode = "protocol", transport.CloseProtocolError
					return res
				}
			}
		}
		key, ok := take(4)
		if !ok {
			res.end = "eof"
			return res
		}
		unmasked := func(p []byte) []byte {
			out := make([]byte, len(p))
			for i := range p {
				out[i] = p[i] ^ key[i%4]
			}
			return out
		}
		if op >= opClose { // control frames: short, whole, allowed between fragments
			if !fin || n > 125 {
				res.end, res.closeCode = "protocol", transport.CloseProtocolError
				return res
			}
			p, ok := take(n)
			if !ok {
				res.end = "eof"
				return res
			}
			p = unmasked(p)
			switch op {
			case opPing:
				res.controls = append(res.controls, append([]byte{0x8a, byte(n)}, p...))
			case opPong:
			case opClose: // answered by Close: the code echoed, if valid
				res.end, res.closeCode = "closed", 0
				if len(p) == 0 {
					return res
				}
				res.end, res.closeCode = "protocol", transport.CloseProtocolError
				if len(p) == 1 {
					return res
				}
				code := binary.BigEndian.Uint16(p)
				if code < 1000 || code >= 5000 || code == 1004 || code == 1005 || code == 1006 || code > 1014 && code < 3000 {
					return res
				}
				if !utf8.Valid(p[2:]) {
					res.closeCode = transport.CloseInvalidData
					return res
				}
				res.end, res.closeCode = "closed", code
				return res
			default:
				res.end, res.closeCode = "protocol", transport.CloseProtocolError
				return res
			}
			continue
		}
		switch {
		case (op == opBinary || op == opText) && !inMsg:
			inMsg = true
		case op == opContinuation && inMsg:
		default:
			res.end, res.closeCode = "protocol", transport.CloseProtocolError
			return res
		}
		if uint64(len(msg))+n > uint64(maxBody+protocol.HeaderLen) {
			res.end, res.closeCode = "too_large", transport.CloseTooBig
			return res
		}
		p, ok := take(n)
		if !ok {
			res.end = "eof"
			return res
		}
		msg = append(msg, unmasked(p)...)
		if !fin {
			continue
		}
		// One goim frame per message.
		switch {
		case len(msg) < protocol.HeaderLen:
			res.end = "pack_len"
		case binary.BigEndian.Uint16(msg[4:]) != protocol.HeaderLen:
			res.end = "header_len"
		case binary.BigEndian.Uint32(msg) < protocol.HeaderLen:
			res.end = "pack_len"
		case binary.BigEndian.Uint32(msg)-protocol.HeaderLen > uint32(maxBody):
			res.end = "too_large"
		case binary.BigEndian.Uint32(msg) != uint32(len(msg)):
			res.end = "len_mismatch"
		}
		if res.end != "" {
			return res
		}
		res.frames = append(res.frames, msg)
		msg, inMsg = nil, false
	}
}
