//go:build linux

package client

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPortControl is the net.Dialer.Control used when a source IP is set.
var bindNoPortControl = setBindNoPort

// setBindNoPort sets IP_BIND_ADDRESS_NO_PORT so that binding a source IP does
// not reserve a port: the port is chosen at connect time from the whole
// 4-tuple. It is best effort: a kernel without the option (< 4.2) still dials.
func setBindNoPort(_, _ string, rc syscall.RawConn) error {
	return rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
}
