//go:build linux

package bench

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT on a socket bound to a source IP,
// so the port is picked at connect time from the whole 4-tuple and every
// source IP gives its own ~28k ports per destination. Best effort.
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	return rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
}

// workerSysProcAttr: a worker gets SIGKILL when the parent dies (Pdeathsig)
// and runs in its own process group, so a Ctrl-C in the terminal reaches the
// parent only (which then collects the workers' reports).
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
