package ws

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// headSeeds are upgrade requests as clients send them, and odd ones.
var headSeeds = []string{
	// Chrome
	"GET /sub HTTP/1.1\r\nHost: 127.0.0.1:3102\r\nConnection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n" +
		"Upgrade: websocket\r\nOrigin: http://localhost:8080\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
	// Firefox
	"GET /sub?token=abc HTTP/1.1\r\nHost: conn.example.com\r\nUser-Agent: Mozilla/5.0 Firefox/121.0\r\nAccept: */*\r\n" +
		"Sec-WebSocket-Version: 13\r\nOrigin: https://app.example.com\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n" +
		"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
	// Go clients (coder/websocket, the bench), with the first frame behind
	"GET /sub HTTP/1.1\r\nHost: 127.0.0.1:3102\r\nUser-Agent: Go-http-client/1.1\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\n\x82\x90abcd",
	"GET /sub HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\nConnection: close\r\nUpgrade: x\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key:  k1 \r\nSec-WebSocket-Key: k2\r\n\r\n",
	"GET /sub HTTP/1.1\r\nHost: h\r\nOrigin:\r\nOrigin: http://o\r\nSec-WebSocket-Key:\r\n\r\n",
	"POST /sub HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
	"GET /sub HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET /sub HTTP/1.1\r\n\r\n",
	"GET /sub HTTP/1.0\r\nHost: h\r\n\r\n",
	"GET /sub HTTP/1.1\nHost: h\n\n",
	"GET /sub HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
	"GET /sub HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n",
	"GET /sub HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n",
	"GET /sub HTTP/1.1\r\nHost: h\xff\r\n\r\n",
	"GET /sub HTTP/1.1\r\nhOsT: h\r\nuPgRaDe: WebSocket\r\n\r\n",
	"GET http://h/sub HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET  /sub HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /sub HTTP/1.1\r\nHost: h\r\nX:\tv\t \r\n\r\n",
	"GET /s%20b%2F?q=%zz HTTP/1.1\r\nHost: h\r\n\r\n", // the query is not decoded
	"GET /s%2 HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /s%g0 HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /sub HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Protocol: goim, json\r\nsec-websocket-protocol: v2\r\n\r\n",
	"GET /sub HTTP/1.1\r\nHost:\r\n\r\n",
}

// TestParseHeadShapes: the plain shapes are parsed here, the others left to
// net/http.
func TestParseHeadShapes(t *testing.T) {
	for i, in := range headSeeds {
		_, _, ok := ParseHead([]byte(in))
		want := i < 3 || i == 4 || i == 14 || i == 17 || i == 18 || i == 21
		if ok != want {
			t.Errorf("seed %d: ParseHead ok=%v, want %v:\n%q", i, ok, want, in)
		}
	}
	h, n, ok := ParseHead([]byte(headSeeds[2]))
	if !ok || headSeeds[2][n:] != "\x82\x90abcd" {
		t.Fatalf("the bytes behind the head: ok=%v, %q", ok, headSeeds[2][n:])
	}
	want := Head{Method: "GET", Host: "127.0.0.1:3102", Connection: "Upgrade", Upgrade: "websocket", Version: "13", Key: "AQIDBAUGBwgJCgsMDQ4PEA=="}
	if h != want {
		t.Fatalf("head %+v\nwant %+v", h, want)
	}
	if h, _, _ := ParseHead([]byte(headSeeds[21])); h.Protocol != "goim, json,v2" {
		t.Fatalf("Protocol %q: want every header's values joined", h.Protocol)
	}
}

// FuzzParseHead: whatever ParseHead parses, http.ReadRequest reads the same
// way: the same head, ending at the same byte.
func FuzzParseHead(f *testing.F) {
	for _, s := range headSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h, n, ok := ParseHead(in)
		if !ok {
			return
		}
		r := bytes.NewReader(in)
		br := bufio.NewReaderSize(r, len(in)+16)
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("ParseHead took a head net/http refuses (%v):\n%q", err, in)
		}
		if read := len(in) - r.Len() - br.Buffered(); read != n {
			t.Fatalf("head of %d bytes, net/http read %d:\n%q", n, read, in)
		}
		if got := HeadOf(req); got != h {
			t.Fatalf("ParseHead %+v\nnet/http  %+v\n%q", h, got, in)
		}
	})
}
