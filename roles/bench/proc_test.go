package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestReadProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	before, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.RSSKB <= 0 {
		t.Fatalf("RSS %d KiB", before.RSSKB)
	}
	// Burn some CPU, then CPU time must not go backwards (tick granularity
	// is 10 ms, so no exact amount is asserted).
	x := 0
	for deadline := time.Now().Add(50 * time.Millisecond); time.Now().Before(deadline); {
		x++
	}
	after, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.CPU < before.CPU {
		t.Fatalf("CPU went from %v to %v", before.CPU, after.CPU)
	}
	// /proc's figure and getrusage's agree to within the tick size plus
	// what ran between the two reads.
	if self := selfCPU(); self+50*time.Millisecond < after.CPU {
		t.Fatalf("getrusage %v, /proc %v", self, after.CPU)
	}
	if _, err := readProc(1 << 30); err == nil {
		t.Fatal("no error for a PID that cannot exist")
	}
	_ = x
}

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "1234 (my (weird) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 99 1000 50 18446744073709551615\n"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3250 * time.Millisecond; cpu != want {
		t.Fatalf("cpu %v, want %v (325 ticks)", cpu, want)
	}
	for _, bad := range []string{"", "1234 (x S 1", "1 (x) S 1 2 3"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	status := strings.Join([]string{"Name:\tx", "VmPeak:\t  999 kB", "VmRSS:\t   12345 kB", "Threads:\t3", ""}, "\n")
	kb, err := parseVmRSS([]byte(status))
	if err != nil || kb != 12345 {
		t.Fatalf("%d, %v", kb, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tkthread\n")); err == nil {
		t.Fatal("no VmRSS accepted")
	}
}
