//go:build unix

package http1

import "syscall"

// readNow reads into b what the kernel already holds for nc, without
// waiting (and whatever its read deadline says): 0 if nothing, or if nc has
// no descriptor.
func readNow(nc any, b []byte) int {
	sc, ok := nc.(syscall.Conn)
	if !ok || len(b) == 0 {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	// Control, not Read: RawConn.Read refuses once the read deadline has
	// passed, which is how Shutdown wakes an idle connection.
	var n int
	_ = rc.Control(func(fd uintptr) {
		n, _ = syscall.Read(int(fd), b) // non-blocking socket: EAGAIN when empty
	})
	return max(n, 0)
}
