package bench

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFloor(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "imcloud")
	if out, err := exec.Command("go", "build", "-o", bin, "../..").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, cpu := range []int{-1, 0} {
		cfg := FloorConfig{Conns: 20, Size: 100, Batch: 4, Duration: 300 * time.Millisecond, ReaderCPU: cpu, Exe: bin}
		if cpu == 0 {
			cfg.Rate = 20 // about 6 passes
		}
		r, err := RunFloor(context.Background(), cfg)
		if err != nil {
			t.Fatalf("reader cpu %d: %v", cpu, err)
		}
		if cfg.Rate > 0 && (r.Writes > 8*20) {
			t.Errorf("paced at %g/s for %v: %d writes", cfg.Rate, cfg.Duration, r.Writes)
		}
		if r.Writes < 20 || r.Writes%20 != 0 || r.CPUSeconds <= 0 || r.USPerWrite <= 0 || r.USPerMessage != r.USPerWrite/4 {
			t.Errorf("reader cpu %d: %+v", cpu, r)
		}
	}
}

func TestFloorConfig(t *testing.T) {
	for _, cfg := range []FloorConfig{
		{Size: 1, Batch: 1, Duration: time.Second},
		{Conns: 1, Batch: 1, Duration: time.Second},
		{Conns: 1, Size: 1, Duration: time.Second},
		{Conns: 1, Size: 1, Batch: 1},
		{Conns: 1, Size: 1, Batch: 1, Duration: time.Second, Rate: -1},
	} {
		if _, err := RunFloor(context.Background(), cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// A reader that dies before connecting is an error, not a hang.
func TestFloorReaderExits(t *testing.T) {
	cfg := FloorConfig{Conns: 5, Size: 100, Batch: 1, Duration: time.Second, ReaderCPU: -1, Exe: "/bin/false"}
	done := make(chan error, 1)
	go func() { _, err := RunFloor(context.Background(), cfg); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "reader exited") {
			t.Fatalf("err %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("RunFloor hangs when its reader exits")
	}
}
