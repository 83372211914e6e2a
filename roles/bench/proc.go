package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is the unit of utime/stime in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 for user space on every architecture Go supports
// (sysconf(_SC_CLK_TCK) returns the same constant).
const clockTicks = 100

// procSample is what bench reads of a process: resident memory and CPU time
// (user + system) so far.
type procSample struct {
	RSSKB int64         // VmRSS, KiB
	CPU   time.Duration // utime + stime
}

// readProc samples /proc/<pid>/status and /proc/<pid>/stat.
func readProc(pid int) (procSample, error) {
	var s procSample
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, fmt.Errorf("pid %d: %w", pid, err)
	}
	if s.RSSKB, err = parseVmRSS(status); err != nil {
		return s, fmt.Errorf("pid %d: %w", pid, err)
	}
	cpu, err := readCPU(pid)
	if err != nil {
		return s, err
	}
	s.CPU = cpu
	return s, nil
}

// readCPU returns utime + stime of pid.
func readCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return cpu, nil
}

// parseVmRSS finds "VmRSS:   1234 kB" in a /proc/<pid>/status file.
func parseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 1 {
			break
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad VmRSS line %q", bytes.TrimSpace(line))
		}
		return kb, nil
	}
	return 0, errors.New("no VmRSS in status (a kernel thread or a zombie?)")
}

// parseStatCPU reads utime and stime (fields 14 and 15) of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so fields are counted after the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed stat: no ')'")
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat: %d fields after the name", len(f))
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("malformed stat: %w", err)
	}
	return time.Duration(ut+st) * (time.Second / clockTicks), nil
}

// sampleAll sums readProc over pids; the first error is returned with the
// sum of the others.
func sampleAll(pids []int) (procSample, error) {
	var total procSample
	var first error
	for _, p := range pids {
		s, err := readProc(p)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		total.RSSKB += s.RSSKB
		total.CPU += s.CPU
	}
	return total, first
}
