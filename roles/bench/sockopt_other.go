//go:build !linux

package bench

import "syscall"

var bindNoPort func(_, _ string, rc syscall.RawConn) error

// workerSysProcAttr: no parent-death signal here; workers still exit when
// their stdin closes.
func workerSysProcAttr() *syscall.SysProcAttr { return nil }
