//go:build !linux

package bench

import (
	"errors"
	"os/exec"
	"syscall"
)

// workerSysProcAttr: no parent-death signal here; workers still exit when
// their stdin closes.
func workerSysProcAttr() *syscall.SysProcAttr { return nil }

// startPinned starts cmd; pinning is Linux only.
func startPinned(cmd *exec.Cmd, cpu int) error {
	if cpu >= 0 {
		return errors.New("pinning to a CPU needs Linux")
	}
	return cmd.Start()
}
