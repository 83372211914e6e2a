//go:build unix

package bench

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the server has closed (or reset) nc, without
// waiting or consuming anything: a non-blocking peek at what is readable.
// An idle keep-alive connection should be answering nothing, so any
// readable byte or end of stream means it is unusable.
func peerClosed(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = n > 0 || (rerr == nil && n == 0) || (rerr != nil && rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK && rerr != unix.EINTR)
		return true // never wait
	})
	return closed || err != nil
}
