package http1

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// Limits of what is read here; anything beyond goes to the fallback server.
const (
	maxHead    = 16 << 10 // request line and headers
	maxHeaders = 64       // header lines
)

// verdict is what parseHead made of the bytes so far.
type verdict int

const (
	headComplete   verdict = iota // h is filled in
	headIncomplete                // read more
	headSlow                      // not one for this server: hand it over
	headNotHTTP                   // cannot become an HTTP request: answer 400 and close
	headBad                       // framed ambiguously (head.bad says how): answer 400 and close
)

// head is a parsed request head.
type head struct {
	size      int // bytes, through the blank line
	method    string
	target    string
	url       *url.URL
	minor     int // HTTP/1.<minor>: 0 or 1
	header    http.Header
	host      string
	length    int64 // Content-Length; 0 when absent
	keepAlive bool  // the client keeps the connection open after this request
	bad       string
}

// parseHead parses the request head at the start of b. It accepts only
// what it fully understands: CRLF line ends, an origin-form target, HTTP/1.0
// or 1.1, no Transfer-Encoding, Expect or Upgrade, at most one
// Content-Length of plain digits, exactly one Host on HTTP/1.1. Everything
// else is headSlow, for net/http to read and answer, except what RFC 9112
// says a server must not read on (which net/http does): Transfer-Encoding
// with Content-Length (section 6.3: a smuggling attempt, or a proxy's
// mistake) or on HTTP/1.0 (section 6.1), headBad.
func parseHead(b []byte, h *head) verdict {
	if len(b) > maxHead {
		v := parseHead(b[:maxHead], h)
		if v == headIncomplete {
			v = headSlow
		}
		return v
	}
	*h = head{}
	line, rest, v := nextLine(b)
	if v == headIncomplete && !MayStartRequest(b) {
		return headNotHTTP // not left waiting for a line that never comes
	}
	if v != headComplete {
		return v
	}
	if !parseRequestLine(line, h) {
		return headSlow
	}
	pos := len(b) - len(rest)
	var closeReq, keepAliveReq, sawHost, sawLength, sawTE bool
	for n := 0; ; n++ {
		line, rest, v = nextLine(b[pos:])
		if v != headComplete {
			return v
		}
		pos = len(b) - len(rest)
		if len(line) == 0 {
			break
		}
		if n == maxHeaders || line[0] == ' ' || line[0] == '\t' { // obsolete line folding
			return headSlow
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !IsToken(line[:colon]) {
			return headSlow
		}
		value := bytes.Trim(line[colon+1:], " \t")
		if !ValidValue(value) {
			return headSlow
		}
		switch name := canonicalName(line[:colon]); name {
		case "Transfer-Encoding":
			sawTE = true
		case "Expect", "Upgrade":
			return headSlow
		case "Content-Length":
			if sawLength || !parseLength(value, &h.length) {
				return headSlow
			}
			sawLength = true
			h.header.Add(name, string(value))
		case "Host":
			if sawHost || !ValidHost(value) {
				return headSlow
			}
			sawHost = true
			h.host = string(value)
		case "Connection":
			for _, tok := range bytes.Split(value, []byte(",")) {
				switch tok = bytes.Trim(tok, " \t"); {
				case EqualFold(tok, "close"):
					closeReq = true
				case EqualFold(tok, "keep-alive"):
					keepAliveReq = true
				case EqualFold(tok, "upgrade"):
					return headSlow
				}
			}
			h.header.Add(name, string(value))
		default:
			h.header.Add(name, string(value))
		}
	}
	switch {
	case sawTE && sawLength:
		h.bad = "both Transfer-Encoding and Content-Length"
		return headBad
	case sawTE && h.minor == 0:
		h.bad = "Transfer-Encoding on HTTP/1.0"
		return headBad
	case sawTE:
		return headSlow
	case h.minor == 1 && !sawHost: // net/http answers the 400
		return headSlow
	}
	h.size = pos
	h.keepAlive = !closeReq && (h.minor == 1 || keepAliveReq)
	return headComplete
}

// nextLine splits b after its first line, which must end in CRLF; the
// line is returned without it.
func nextLine(b []byte) (line, rest []byte, v verdict) {
	i := bytes.IndexByte(b, '\n')
	switch {
	case i < 0:
		return nil, nil, headIncomplete
	case i == 0 || b[i-1] != '\r':
		return nil, nil, headSlow
	}
	return b[:i-1], b[i+1:], headComplete
}

// parseRequestLine fills in method, target, url and minor from
// "METHOD /target HTTP/1.x"; false if the line is anything else.
func parseRequestLine(line []byte, h *head) bool {
	method, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(method) == 0 || !IsToken(method) {
		return false
	}
	target, proto, ok := bytes.Cut(rest, []byte(" "))
	if !ok || len(target) == 0 || target[0] != '/' {
		return false
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	switch string(proto) {
	case "HTTP/1.1":
		h.minor = 1
	case "HTTP/1.0":
		h.minor = 0
	default:
		return false
	}
	h.method = internMethod(method)
	h.target = string(target)
	u, err := url.ParseRequestURI(h.target)
	if err != nil {
		return false
	}
	h.url = u
	h.header = make(http.Header, 4)
	return true
}

// parseLength parses a Content-Length: digits only, at most 12 of them.
func parseLength(v []byte, n *int64) bool {
	if len(v) == 0 || len(v) > 12 {
		return false
	}
	var x int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
		x = x*10 + int64(c-'0')
	}
	*n = x
	return true
}

// internMethod avoids an allocation for the common methods.
func internMethod(m []byte) string {
	for _, s := range [...]string{http.MethodPost, http.MethodGet, http.MethodHead} {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}

// commonNames are header names canonicalized without an allocation.
var commonNames = [...]string{
	"Host", "Content-Length", "Content-Type", "Connection", "User-Agent", "Accept",
	"Accept-Encoding", "Transfer-Encoding", "Expect", "Upgrade",
}

// canonicalName is textproto's canonical form of a header name.
func canonicalName(name []byte) string {
	for _, s := range commonNames {
		if EqualFold(name, s) {
			return s
		}
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

// EqualFold compares b and s ignoring ASCII case.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// IsToken reports whether b is an RFC 9110 token (method, header name).
func IsToken(b []byte) bool {
	return len(b) > 0 && alnumOr(b, "!#$%&'*+-.^_`|~")
}

// MayStartRequest reports whether b may be the start of an HTTP request:
// up to the first space or line end it holds only token characters, as a
// method does. A TLS ClientHello (https:// or wss:// to a plain port) fails
// at its first byte, 0x16, long before it sends a line end, if ever.
func MayStartRequest(b []byte) bool {
	end := bytes.IndexAny(b, " \r\n")
	if end < 0 {
		end = len(b)
	}
	return end == 0 || IsToken(b[:end])
}

// ValidValue reports whether a header value has no control bytes but tab.
func ValidValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// ValidHost reports whether a Host value has only the bytes net/http
// accepts there (it answers 400 for any other).
func ValidHost(v []byte) bool {
	return alnumOr(v, "!$&'()*+,;=:[]-._~%")
}

// alnumOr reports whether every byte of b is an ASCII letter or digit or
// one of punct.
func alnumOr(b []byte, punct string) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(punct, c) >= 0:
		default:
			return false
		}
	}
	return true
}
