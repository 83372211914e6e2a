package roles

import (
	"context"
	"net"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Client connections carry no TCP keep-alive (the heartbeat deadline finds
// dead peers); other listeners keep Go's default.
func TestListenKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen func(context.Context, string, string) (net.Listener, error)
		want   int
	}{
		{"clients", listenClients, 0},
		{"default", listen, 1},
	} {
		ln, err := tc.listen(context.Background(), "cloud.tcp_addr", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := s.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var serr error
		if err := rc.Control(func(fd uintptr) { got, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE) }); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		if got != tc.want {
			t.Errorf("%s: SO_KEEPALIVE %d, want %d", tc.name, got, tc.want)
		}
		c.Close()
		s.Close()
		ln.Close()
	}
	if _, err := listenClients(context.Background(), "cloud.ws_addr", "127.0.0.1:99999"); err == nil || !strings.Contains(err.Error(), "cloud.ws_addr") {
		t.Errorf("bad address: %v", err)
	}
}
