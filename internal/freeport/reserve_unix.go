//go:build unix

package freeport

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
)

// reserve takes an exclusive lock on the port's file and keeps the
// descriptor open, unreferenced, so the lock lasts until the process exits.
// A raw descriptor is used because an *os.File would be closed, and the lock
// dropped, by its finalizer.
func reserve(dir string, port int) (bool, error) {
	fd, err := syscall.Open(filepath.Join(dir, strconv.Itoa(port)), syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return false, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = syscall.Close(fd)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, fmt.Errorf("lock: %w", err)
	}
	return true, nil
}
