package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Worker processes. Above Config.PerProcess connections (one process can hold
// about 19,900 sockets under the 20,000 open-files limit), the parent starts
// `<exe> bench worker` once per slice of clients. The protocol is JSON lines:
//
//	parent -> worker stdin:  first line a workerSpec, then {"cmd":"push"},
//	                         {"cmd":"finish"}, {"cmd":"stop"}
//	worker -> parent stdout: Reports: "progress" every workerReportEvery,
//	                         "connected" once the slice was tried, "final"
//	                         after finish
//
// A worker exits when told to stop, when its stdin closes (the parent is
// gone), or, on Linux, by SIGKILL when the parent dies (Pdeathsig). It runs
// in its own process group so a terminal's Ctrl-C reaches only the parent.

const workerReportEvery = 500 * time.Millisecond

// workerSpec is what a worker process is told to do.
type workerSpec struct {
	Config Config  `json:"config"`
	Lo     int     `json:"lo"`
	Hi     int     `json:"hi"`
	Rate   float64 `json:"rate"`
	Conc   int     `json:"conc"`
	MaxErr int64   `json:"max_err"`
}

type workerCmd struct {
	Cmd string `json:"cmd"`
}

// RunWorker is the body of `imcloud bench worker`: it reads its spec from in,
// holds its connections, and reports on out until stopped or in closes.
func RunWorker(in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("bench worker: reading the spec: %w", err)
	}
	var spec workerSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("bench worker: bad spec: %w", err)
	}
	p, err := newPool(spec.Config, spec.Lo, spec.Hi, spec.Rate, spec.Conc, spec.MaxErr)
	if err != nil {
		return fmt.Errorf("bench worker: %w", err)
	}
	var wmu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(r Report) error {
		wmu.Lock()
		defer wmu.Unlock()
		return enc.Encode(r)
	}
	if err := p.start(); err != nil {
		return fmt.Errorf("bench worker: %w", err)
	}
	defer p.stop()

	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(workerReportEvery)
		defer t.Stop()
		connDone := p.connDone
		for {
			select {
			case <-done:
				return
			case <-connDone:
				connDone = nil
				r := p.report(false)
				r.Type = "connected"
				if send(r) != nil {
					return
				}
			case <-t.C:
				r := p.report(false)
				r.Connected = nil
				if connDone != nil {
					// Until the "connected" report (with the connected
					// ranges) is out, the parent must not see the connect
					// phase as done.
					r.ConnectDone, r.StoppedEarly = false, false
				}
				if send(r) != nil {
					return
				}
			}
		}
	}()
	cmds := bufio.NewScanner(br)
	for cmds.Scan() {
		var c workerCmd
		if err := json.Unmarshal(cmds.Bytes(), &c); err != nil {
			return fmt.Errorf("bench worker: bad command %q: %w", cmds.Text(), err)
		}
		switch c.Cmd {
		case "push":
			p.markPush()
		case "finish":
			if err := send(p.report(true)); err != nil {
				return err
			}
		case "stop":
			return nil
		default:
			return fmt.Errorf("bench worker: unknown command %q", c.Cmd)
		}
	}
	return nil // stdin closed: the parent is gone
}

// shard is a slice of the run's connections: the pool in this process, or a
// worker process.
type shard interface {
	latest() Report
	markPush()
	finish(timeout time.Duration) (Report, error)
	stop()
	// exited is closed if the shard ended on its own (a worker died); err
	// then says why.
	exited() <-chan struct{}
	err() error
}

// localShard is a pool in this process.
type localShard struct{ p *pool }

func (s localShard) latest() Report                       { return s.p.report(false) }
func (s localShard) markPush()                            { s.p.markPush() }
func (s localShard) finish(time.Duration) (Report, error) { return s.p.report(true), nil }
func (s localShard) stop()                                { s.p.stop() }
func (s localShard) exited() <-chan struct{}              { return nil }
func (s localShard) err() error                           { return nil }

// remoteShard is a worker process.
type remoteShard struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	wmu   sync.Mutex

	mu        sync.Mutex
	last      Report
	connected [][2]int
	finalCh   chan Report
	gone      chan struct{}
	goneErr   error
}

func startWorker(exe string, spec workerSpec, stderr io.Writer) (*remoteShard, error) {
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding the bench binary for workers: %w", err)
		}
	}
	cmd := exec.Command(exe, "bench", "worker")
	cmd.Stderr = stderr
	cmd.SysProcAttr = workerSysProcAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting worker %s: %w", exe, err)
	}
	s := &remoteShard{cmd: cmd, stdin: stdin, finalCh: make(chan Report, 1), gone: make(chan struct{})}
	go s.read(stdout)
	b, _ := json.Marshal(spec)
	if err := s.write(b); err != nil {
		s.stop()
		return nil, fmt.Errorf("worker %d: sending the spec: %w", cmd.Process.Pid, err)
	}
	return s, nil
}

func (s *remoteShard) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<30)
	var err error
	for sc.Scan() {
		var r Report
		if err = json.Unmarshal(sc.Bytes(), &r); err != nil {
			err = fmt.Errorf("bad report line: %w", err)
			break
		}
		s.mu.Lock()
		if r.Type == "connected" {
			s.connected = r.Connected
		}
		r.Connected = s.connected
		s.last = r
		s.mu.Unlock()
		if r.Type == "final" {
			s.finalCh <- r
		}
	}
	if err == nil {
		err = sc.Err()
	}
	werr := s.cmd.Wait()
	s.mu.Lock()
	s.goneErr = errors.Join(err, werr)
	if s.goneErr == nil {
		s.goneErr = errors.New("exited")
	}
	s.goneErr = fmt.Errorf("worker %d: %w", s.cmd.Process.Pid, s.goneErr)
	s.mu.Unlock()
	close(s.gone)
}

func (s *remoteShard) write(line []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.stdin.Write(append(line, '\n'))
	return err
}

func (s *remoteShard) command(c string) error {
	b, _ := json.Marshal(workerCmd{Cmd: c})
	return s.write(b)
}

func (s *remoteShard) latest() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *remoteShard) markPush() { _ = s.command("push") }

func (s *remoteShard) finish(timeout time.Duration) (Report, error) {
	if err := s.command("finish"); err != nil {
		return s.latest(), fmt.Errorf("worker %d: %w", s.cmd.Process.Pid, err)
	}
	select {
	case r := <-s.finalCh:
		return r, nil
	case <-s.gone:
		return s.latest(), s.err()
	case <-time.After(timeout):
		return s.latest(), fmt.Errorf("worker %d: no final report within %v", s.cmd.Process.Pid, timeout)
	}
}

// stop asks the worker to close its connections and exit, then kills it if
// it has not within 15 s.
func (s *remoteShard) stop() {
	_ = s.command("stop")
	_ = s.stdin.Close()
	select {
	case <-s.gone:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.gone
	}
}

func (s *remoteShard) exited() <-chan struct{} { return s.gone }

func (s *remoteShard) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.goneErr
}
