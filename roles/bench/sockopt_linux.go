//go:build linux

package bench

import (
	"fmt"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// workerSysProcAttr: a worker gets SIGKILL when the parent dies (Pdeathsig)
// and runs in its own process group, so a Ctrl-C in the terminal reaches the
// parent only (which then collects the workers' reports).
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// startPinned starts cmd on CPU cpu (cpu < 0: anywhere). The child inherits
// the affinity of the thread that forks it, so that thread is pinned for the
// fork and restored afterwards; the whole child, every thread it will start,
// stays on cpu.
func startPinned(cmd *exec.Cmd, cpu int) error {
	if cpu < 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	err := cmd.Start()
	if unix.SchedSetaffinity(0, &old) == nil {
		runtime.UnlockOSThread() // else the pinned thread ends with this goroutine
	}
	return err
}
