package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
)

// fakeServer accepts on a loopback port and gives every connection to
// serve; it stops at cleanup.
func fakeServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

// TestHandshakeFailures: each way a handshake can fail is counted as a
// failed connection, under its own error kind, and ends the handshake's
// slot (the run finishes).
func TestHandshakeFailures(t *testing.T) {
	refused := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	silent := func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }
	closes := func(c net.Conn) { // after the request: unread bytes would reset the connection
		_, _ = http.ReadRequest(bufio.NewReader(c))
		_ = c.Close()
	}
	notFound := func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			_, _ = io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
		}
	}
	refusesAuth := func(c net.Conn) {
		var h [protocol.HeaderLen]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		_, _ = io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(h[:])-protocol.HeaderLen))
		body := []byte("go away")
		_, _ = c.Write(append(protocol.AppendHeader(nil, len(body), 1, protocol.OpDisconnectReply, 0), body...))
	}
	tests := []struct {
		name, network string
		addr          func() string
		kind          string
	}{
		{"refused", "tcp", refused, "connect: connection refused"},
		{"refused ws", "ws", refused, "connect: connection refused"},
		{"silent", "tcp", func() string { return fakeServer(t, silent) }, "connect: timeout"},
		{"silent ws", "ws", func() string { return fakeServer(t, silent) }, "connect: timeout"},
		{"closed", "ws", func() string { return fakeServer(t, closes) }, "connect: closed by the server (EOF)"},
		{"upgrade refused", "ws", func() string { return fakeServer(t, notFound) }, `connect: upgrade refused: "HTTP/1.1 404 Not Found"`},
		{"auth refused", "tcp", func() string { return fakeServer(t, refusesAuth) }, `connect: auth not accepted: server said "go away"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr()
			cfg := Default()
			cfg.Network = tt.network
			cfg.TCPAddr, cfg.WSURL = addr, "ws://"+addr+"/sub"
			cfg.Conns, cfg.Push, cfg.Duration = 3, PushNone, 100*time.Millisecond
			cfg.Timeout, cfg.Progress, cfg.Settle = 300*time.Millisecond, 0, 0
			cfg.MaxConnectFailures = 0
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := Run(ctx, cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c := s.Connections; c.Failed != 3 || c.Established != 0 {
				t.Fatalf("connections %+v, errors %v", c, s.Errors)
			}
			if s.Errors[tt.kind] != 3 {
				var kinds []string
				for k, n := range s.Errors {
					kinds = append(kinds, k+" ×"+strings.Repeat("I", int(n)))
				}
				t.Fatalf("errors %q, want 3 × %q", kinds, tt.kind)
			}
		})
	}
}
