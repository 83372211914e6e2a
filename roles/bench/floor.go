package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/imcloud/imcloud/internal/deadline"
)

// FloorConfig is a floor measurement: what one plain write of a message to a
// loopback TCP socket costs the writing process, the cost no server can go
// under with one write per delivery.
type FloorConfig struct {
	Conns    int           // sockets written round robin
	Size     int           // message bytes
	Batch    int           // messages per write (1: one write per delivery)
	Duration time.Duration // length of the write phase
	// Rate is passes per second, a pass writing once to every socket; 0:
	// passes back to back. Paced passes let the reader go idle between them,
	// as clients do between pushes, so each write also pays for waking it.
	Rate float64
	// ReaderCPU pins the reader process to this CPU; -1 leaves it where the
	// scheduler puts it (and where this process's affinity allows).
	ReaderCPU int
	Exe       string // binary run as "bench floor-reader"; empty: os.Executable()
}

// FloorResult is what RunFloor measured.
type FloorResult struct {
	Conns        int     `json:"conns"`
	Size         int     `json:"size"`
	Batch        int     `json:"batch"`
	Rate         float64 `json:"rate"`
	Writes       int64   `json:"writes"`
	Seconds      float64 `json:"seconds"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	CPUPercent   float64 `json:"cpu_percent"`
	USPerWrite   float64 `json:"cpu_us_per_write"`
	USPerMessage float64 `json:"cpu_us_per_message"`
}

func (r FloorResult) String() string {
	pace := "back to back"
	if r.Rate > 0 {
		pace = fmt.Sprintf("%g passes/s", r.Rate)
	}
	return fmt.Sprintf("floor: %d writes of %d x %d bytes to %d sockets (%s) in %.1fs: writer CPU %.2fs (%.0f%% of a core), %.2f µs per write, %.2f µs per message",
		r.Writes, r.Batch, r.Size, r.Conns, pace, r.Seconds, r.CPUSeconds, r.CPUPercent, r.USPerWrite, r.USPerMessage)
}

// RunFloor starts a reader process that opens cfg.Conns connections to a
// listener of this process and drains them, then writes to them round robin
// for cfg.Duration from one goroutine and reports this process's CPU per
// write. Nothing else runs in this process meanwhile, so its CPU time is the
// write path: the Go runtime, the syscall and the kernel's loopback work,
// which includes the receive side.
func RunFloor(ctx context.Context, cfg FloorConfig) (FloorResult, error) {
	res := FloorResult{Conns: cfg.Conns, Size: cfg.Size, Batch: cfg.Batch, Rate: cfg.Rate}
	if cfg.Conns < 1 || cfg.Size < 1 || cfg.Batch < 1 || cfg.Duration <= 0 || !(cfg.Rate >= 0) || math.IsInf(cfg.Rate, 0) {
		return res, errors.New("floor: --conns, --size, --batch and --duration must be positive, --rate a finite number not negative")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, fmt.Errorf("floor: %w", err)
	}
	defer ln.Close()
	exe := cfg.Exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return res, fmt.Errorf("floor: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, exe, "bench", "floor-reader", "--addr", ln.Addr().String(), "--conns", strconv.Itoa(cfg.Conns))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = workerSysProcAttr()
	if err := startPinned(cmd, cfg.ReaderCPU); err != nil {
		return res, fmt.Errorf("floor: reader: %w", err)
	}
	readerExit := make(chan error, 1)
	go func() { readerExit <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill(); <-readerExit }()

	conns := make([]net.Conn, 0, cfg.Conns)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	accepted := make(chan error, 1)
	go func() {
		for len(conns) < cfg.Conns {
			c, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			conns = append(conns, c)
		}
		accepted <- nil
	}()
	select {
	case err := <-accepted:
		if err != nil {
			return res, fmt.Errorf("floor: accept: %w", err)
		}
	case err := <-readerExit:
		readerExit <- err // for the deferred wait
		_ = ln.Close()
		<-accepted
		return res, fmt.Errorf("floor: the reader exited before connecting: %v", err)
	case <-ctx.Done():
		_ = ln.Close()
		<-accepted
		return res, ctx.Err()
	}

	buf := make([]byte, cfg.Size*cfg.Batch)
	for i := range buf {
		buf[i] = 'x'
	}
	cpu0 := selfCPU()
	t0 := time.Now()
	end := t0.Add(cfg.Duration)
	for i := 0; ; i++ {
		if i%len(conns) == 0 {
			if cfg.Rate > 0 {
				pass := i / len(conns)
				// Capped at the end: a slow rate must not outlast --duration.
				at := t0.Add(time.Duration(min(float64(pass)/cfg.Rate*float64(time.Second), float64(cfg.Duration))))
				if !deadline.Sleep(ctx, time.Until(at)) {
					break
				}
			}
			if time.Now().After(end) || ctx.Err() != nil {
				break
			}
		}
		if _, err := conns[i%len(conns)].Write(buf); err != nil {
			return res, fmt.Errorf("floor: write: %w", err)
		}
		res.Writes++
	}
	cpu1 := selfCPU()
	res.Seconds = time.Since(t0).Seconds()
	res.CPUSeconds = (cpu1 - cpu0).Seconds()
	res.CPUPercent = 100 * res.CPUSeconds / res.Seconds
	res.USPerWrite = 1e6 * res.CPUSeconds / float64(res.Writes)
	res.USPerMessage = res.USPerWrite / float64(cfg.Batch)
	return res, ctx.Err()
}

// RunFloorReader is the reader process: it opens conns connections to addr
// and drains them until the writer closes them or goes away.
func RunFloorReader(addr string, conns int) error {
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("floor-reader: %w", err)
		}
		wg.Go(func() {
			defer c.Close()
			buf := make([]byte, 16<<10)
			for {
				if _, err := c.Read(buf); err != nil {
					if !errors.Is(err, io.EOF) {
						select {
						case errc <- err:
						default:
						}
					}
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		if errors.Is(err, syscall.ECONNRESET) {
			return nil // the writer exited without closing first
		}
		return fmt.Errorf("floor-reader: %w", err)
	default:
		return nil
	}
}
