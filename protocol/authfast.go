package protocol

import (
	"bytes"
	"math"
)

// parseAuthFast decodes the Auth bodies clients really send (one flat JSON
// object: ASCII strings without escapes, integers, an array of integers) in
// one pass without reflection; the handshake is hot during connect storms
// and encoding/json was a tenth of its CPU. Whatever it is not sure about,
// it refuses (ok false) and ParseAuth falls back to encoding/json, so both
// always agree: FuzzParseAuthFast checks that.
func parseAuthFast(b []byte) (a Auth, ok bool) {
	p := authScanner{b: b}
	p.space()
	if !p.byte('{') {
		return Auth{}, false
	}
	p.space()
	if p.byte('}') {
		return a, p.end()
	}
	for {
		key, ok := p.raw()
		if !ok {
			return Auth{}, false
		}
		p.space()
		if !p.byte(':') {
			return Auth{}, false
		}
		p.space()
		switch string(key) { // no allocation: the compiler compares the bytes
		case "mid":
			if a.Mid, ok = p.int(math.MinInt64, math.MaxInt64); !ok {
				return Auth{}, false
			}
		case "key":
			if a.Key, ok = p.str(); !ok {
				return Auth{}, false
			}
		case "room_id":
			if a.RoomID, ok = p.str(); !ok {
				return Auth{}, false
			}
		case "platform":
			if a.Platform, ok = p.str(); !ok {
				return Auth{}, false
			}
		case "accepts":
			if a.Accepts, ok = p.ints(); !ok {
				return Auth{}, false
			}
		default:
			// encoding/json matches names case-insensitively; other
			// fields' values are skipped only when they are simple.
			if knownAuthKey(key) || !p.skipSimple() {
				return Auth{}, false
			}
		}
		p.space()
		if p.byte('}') {
			return a, p.end()
		}
		if !p.byte(',') {
			return Auth{}, false
		}
		p.space()
	}
}

func knownAuthKey(k []byte) bool {
	for _, n := range [...]string{"mid", "key", "room_id", "platform", "accepts"} {
		if bytes.EqualFold(k, []byte(n)) {
			return true
		}
	}
	return false
}

type authScanner struct {
	b []byte
	i int
}

func (p *authScanner) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *authScanner) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only white space follows.
func (p *authScanner) end() bool {
	p.space()
	return p.i == len(p.b)
}

// str reads a string of ASCII without escapes.
func (p *authScanner) str() (string, bool) {
	b, ok := p.raw()
	return string(b), ok
}

// raw reads a string of ASCII without escapes and returns its bytes.
func (p *authScanner) raw() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return p.b[start : p.i-1], true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// int reads a JSON integer (no fraction, no exponent) within [lo, hi].
func (p *authScanner) int(lo, hi int64) (int64, bool) {
	neg := p.byte('-')
	start := p.i
	var u uint64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		if u > (math.MaxUint64-9)/10 {
			return 0, false
		}
		u = u*10 + uint64(p.b[p.i]-'0')
		p.i++
	}
	n := p.i - start
	if n == 0 || (n > 1 && p.b[start] == '0') {
		return 0, false
	}
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, false
	}
	var v int64
	switch {
	case !neg && u <= math.MaxInt64:
		v = int64(u)
	case neg && u <= 1<<63:
		v = int64(-u) // -(1<<63) wraps to MinInt64, as wanted
	default:
		return 0, false
	}
	if v < lo || v > hi {
		return 0, false
	}
	return v, true
}

// ints reads an array of int32.
func (p *authScanner) ints() ([]int32, bool) {
	if !p.byte('[') {
		return nil, false
	}
	out := make([]int32, 0, 4)
	p.space()
	if p.byte(']') {
		return out, true
	}
	for {
		v, ok := p.int(math.MinInt32, math.MaxInt32)
		if !ok {
			return nil, false
		}
		out = append(out, int32(v))
		p.space()
		if p.byte(']') {
			return out, true
		}
		if !p.byte(',') {
			return nil, false
		}
		p.space()
	}
}

// skipSimple skips a string, an integer, true or false.
func (p *authScanner) skipSimple() bool {
	if p.i < len(p.b) && p.b[p.i] == '"' {
		_, ok := p.raw()
		return ok
	}
	for _, lit := range [...]string{"true", "false"} {
		if bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
			p.i += len(lit)
			return true
		}
	}
	_, ok := p.int(math.MinInt64, math.MaxInt64)
	return ok
}
