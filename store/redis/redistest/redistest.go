// Package redistest starts private redis-server processes for tests.
//
// Each server listens on a free loopback port with persistence off and its
// working directory in t.TempDir(), and is killed when the test ends. If
// redis-server is not installed the test is skipped, unless the environment
// variable IMCLOUDTEST_REQUIRE_SERVERS is set (CI sets it), in which case it
// fails, so a missing server can never pass silently. IMCLOUDTEST_REDIS_SERVER
// names the binary if it is not on PATH.
//
// A Server is safe for concurrent use; Stop and Start let an outage test take
// the server down and bring it back on the same port.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud/internal/freeport"
)

// readyTimeout bounds how long a server may take to answer PING.
const readyTimeout = 30 * time.Second

// errExited means redis-server exited before it answered, e.g. because its
// port was taken meanwhile.
var errExited = errors.New("redis-server exited before answering PING")

// Server is one private redis-server.
type Server struct {
	// Addr is host:port; it stays the same across Stop and Start.
	Addr string

	t    testing.TB
	bin  string
	dir  string
	port int
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *os.File
}

// Start starts a private redis-server for t and returns its address. The
// server is killed when t ends.
func Start(t testing.TB) string {
	t.Helper()
	s := NewServer(t)
	if s == nil {
		return ""
	}
	return s.Addr
}

// NewServer starts a private redis-server for t; it is killed when t ends.
// args are extra redis-server options, e.g. "--requirepass", "secret".
func NewServer(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := binary(t)
	if bin == "" {
		return nil // only with a fake t whose Skip and Fatal return
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), args: args}
	t.Cleanup(s.Stop)
	var err error
	// The port is reserved for this process and outside the ephemeral
	// range, but a program outside the scheme may still bind it first: try
	// a few ports.
	for range 5 {
		var port int
		if port, err = freeport.Port(); err != nil {
			continue
		}
		s.port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = s.start(); err == nil || !errors.Is(err, errExited) {
			break
		}
	}
	if err == nil {
		return s
	}
	t.Fatalf("redistest: start redis-server: %v", err)
	return nil
}

// Start restarts a stopped server on the same port and waits until it
// answers PING; it does nothing if the server is running. The data is gone
// (persistence is off).
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart redis-server on %s: %v", s.Addr, err)
	}
}

// Stop kills the server (SIGKILL, as a crash would) and waits for it to
// exit. It does nothing if the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	_ = s.log.Close()
	s.cmd, s.done, s.log = nil, nil, nil
}

// start runs redis-server on s.port and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	logPath := filepath.Join(s.dir, "redis.log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
		"--loglevel", "warning",
	)
	cmd.Args = append(cmd.Args, s.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.log = cmd, done, log
	if err := waitReady(s.Addr, done); err != nil {
		s.stopLocked()
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("%w; redis-server log:\n%s", err, out)
	}
	return nil
}

// waitReady polls addr with PING until it answers +PONG, the process exits
// (done is closed) or readyTimeout passes.
func waitReady(addr string, done <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return errExited
		default:
		}
		if last = ping(addr); last == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s did not answer PING within %v: %w", addr, readyTimeout, last)
}

// ping sends one PING and expects +PONG, or -NOAUTH from a server with a
// password (a server still loading answers -LOADING).
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// fallbacks are where redis-server is looked for if it is not on PATH.
var fallbacks = []string{"/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"}

// binary finds redis-server, or skips (fails with IMCLOUDTEST_REQUIRE_SERVERS
// set) the test.
func binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("IMCLOUDTEST_REDIS_SERVER"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("redis-server"); err == nil {
		return bin
	}
	for _, bin := range fallbacks {
		if fi, err := os.Stat(bin); err == nil && !fi.IsDir() {
			return bin
		}
	}
	const msg = "redistest: redis-server not found (install it, or set IMCLOUDTEST_REDIS_SERVER)"
	if os.Getenv("IMCLOUDTEST_REQUIRE_SERVERS") != "" {
		t.Fatal(msg + "; IMCLOUDTEST_REQUIRE_SERVERS is set, so this is a failure")
	} else {
		t.Skip(msg)
	}
	return ""
}
