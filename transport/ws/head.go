package ws

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/imcloud/imcloud/transport/http1"
)

// Head is what an upgrade looks at in an HTTP request.
type Head struct {
	Method     string
	Host       string
	Connection string // the values of every Connection header, joined by commas
	Upgrade    string // likewise for Upgrade
	Version    string // the first Sec-WebSocket-Version
	Key        string // the first Sec-WebSocket-Key
	Origin     string // the first Origin
	Protocol   string // the values of every Sec-WebSocket-Protocol header, joined by commas
	RemoteAddr string
	// Invalid says why the request cannot be an upgrade whatever its
	// WebSocket headers say (RFC 6455 section 4.2.1), "" if it can.
	Invalid string
}

// HeadOf takes what an upgrade needs from r.
func HeadOf(r *http.Request) Head {
	invalid := ""
	switch {
	case !r.ProtoAtLeast(1, 1):
		invalid = "an upgrade needs HTTP/1.1 or later"
	case r.Host == "":
		invalid = "missing Host header"
	case len(r.Header.Values("Sec-WebSocket-Key")) > 1:
		invalid = "more than one Sec-WebSocket-Key"
	case len(r.Header.Values("Sec-WebSocket-Version")) > 1:
		invalid = "more than one Sec-WebSocket-Version" // RFC 6455 section 11.3.5
	case r.ContentLength != 0:
		invalid = "an upgrade request has no body"
	}
	return Head{
		Invalid:    invalid,
		Method:     r.Method,
		Host:       r.Host,
		Connection: strings.Join(r.Header.Values("Connection"), ","),
		Upgrade:    strings.Join(r.Header.Values("Upgrade"), ","),
		Version:    r.Header.Get("Sec-WebSocket-Version"),
		Key:        r.Header.Get("Sec-WebSocket-Key"),
		Origin:     r.Header.Get("Origin"),
		Protocol:   strings.Join(r.Header.Values("Sec-WebSocket-Protocol"), ","),
		RemoteAddr: r.RemoteAddr,
	}
}

// maxHeadLines bounds the header lines ParseHead reads itself.
const maxHeadLines = 64

// ParseHead reads the request head at the start of b without net/http: an
// upgrade is a short GET whose head is all a connect storm parses, and
// http.ReadRequest (header map, URL, textproto) was ~8% of a connect. It
// takes only the plain shape: CRLF lines, "HTTP/1.1", one Host of the bytes
// net/http accepts there, header names that are tokens, values without
// control bytes, no body (no Content-Length or Transfer-Encoding), at most
// maxHeadLines headers. Anything else is !ok, and the caller has
// http.ReadRequest read it, which accepts or refuses it as it would any
// request. n is the head's length, blank line included; RemoteAddr is
// left empty.
func ParseHead(b []byte) (h Head, n int, ok bool) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return Head{}, 0, false
	}
	lines := b[:end+2] // each line ends in CRLF
	line, lines, _ := bytes.Cut(lines, []byte("\r\n"))
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || !http1.IsToken(method) || len(target) == 0 || target[0] != '/' ||
		!printable(target) || !pathEscapes(target) || string(proto) != "HTTP/1.1" {
		return Head{}, 0, false
	}
	h.Method = internMethod(method)
	var connection, upgrade, protocol [][]byte
	var hosts int
	var haveVersion, haveKey, haveOrigin bool // the first Origin wins, as with Header.Get; a second key or version is refused
	for count := 0; len(lines) > 0; count++ {
		if count == maxHeadLines {
			return Head{}, 0, false
		}
		line, lines, _ = bytes.Cut(lines, []byte("\r\n"))
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found || !http1.IsToken(name) || !http1.ValidValue(value) {
			return Head{}, 0, false
		}
		value = bytes.Trim(value, " \t")
		switch {
		case http1.EqualFold(name, "Host"):
			if hosts++; hosts > 1 || len(value) == 0 || !http1.ValidHost(value) {
				return Head{}, 0, false
			}
			h.Host = string(value)
		case http1.EqualFold(name, "Connection"):
			connection = append(connection, value)
		case http1.EqualFold(name, "Upgrade"):
			upgrade = append(upgrade, value)
		case http1.EqualFold(name, "Sec-WebSocket-Version"):
			if haveVersion {
				return Head{}, 0, false // HeadOf says why not
			}
			h.Version, haveVersion = internVersion(value), true
		case http1.EqualFold(name, "Sec-WebSocket-Key"):
			if haveKey {
				return Head{}, 0, false // HeadOf says why not
			}
			h.Key, haveKey = string(value), true
		case http1.EqualFold(name, "Origin"):
			if !haveOrigin {
				h.Origin, haveOrigin = string(value), true
			}
		case http1.EqualFold(name, "Sec-WebSocket-Protocol"):
			protocol = append(protocol, value)
		case http1.EqualFold(name, "Content-Length"), http1.EqualFold(name, "Transfer-Encoding"):
			return Head{}, 0, false
		}
	}
	if hosts != 1 {
		return Head{}, 0, false
	}
	h.Connection = string(bytes.Join(connection, []byte(",")))
	h.Upgrade = string(bytes.Join(upgrade, []byte(",")))
	if len(protocol) > 0 {
		h.Protocol = string(bytes.Join(protocol, []byte(",")))
	}
	return h, end + 4, true
}

func internMethod(m []byte) string {
	if string(m) == http.MethodGet {
		return http.MethodGet
	}
	return string(m)
}

func internVersion(v []byte) string {
	if string(v) == "13" {
		return "13"
	}
	return string(v)
}

// pathEscapes reports whether every % in a request target's path (the
// query is not decoded) starts a two-digit hex escape, as net/http's URL
// parsing requires.
func pathEscapes(target []byte) bool {
	path, _, _ := bytes.Cut(target, []byte("?"))
	for i := bytes.IndexByte(path, '%'); i >= 0; i = bytes.IndexByte(path, '%') {
		if i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2]) {
			return false
		}
		path = path[i+3:]
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// printable reports whether a request target has only visible ASCII.
func printable(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
