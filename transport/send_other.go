//go:build unix && !linux

package transport

import "golang.org/x/sys/unix"

func write(fd int, b []byte) (int, error) { return unix.Write(fd, b) }

// writev writes bufs one write(2) each where x/sys has no writev: what a
// short write leaves is the caller's to send later, as with writev.
func writev(fd int, bufs [][]byte) (int, error) {
	total := 0
	for _, b := range bufs {
		n, err := unix.Write(fd, b)
		if n > 0 {
			total += n
		}
		if err != nil {
			if total > 0 {
				return total, nil
			}
			return n, err
		}
		if n < len(b) {
			break
		}
	}
	return total, nil
}
