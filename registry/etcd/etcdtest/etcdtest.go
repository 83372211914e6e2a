// Package etcdtest starts private etcd servers for tests: one process per
// Start, on free loopback ports and a fresh data directory, killed when the
// test ends. Stop and Start simulate an outage: the server restarts on the
// same ports and data directory, so its keys and leases survive.
//
// It runs the etcd binary found on PATH (or /usr/bin/etcd). Without one the
// test is skipped, unless IMCLOUDTEST_REQUIRE_SERVERS is set (as in CI), when it
// fails.
//
// A Server's methods are meant for the test goroutine: Start fails the test
// with t.Fatal. Stop may be called from anywhere, and more than once.
package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcloud/imcloud/internal/freeport"
	"go.uber.org/zap"
)

// readyWithin bounds how long a start may take; etcd usually answers within
// a second or two, but a loaded CI machine running -race can be slow.
const readyWithin = 30 * time.Second

// Server is one private etcd process.
type Server struct {
	// Endpoint is the client URL, e.g. http://127.0.0.1:40123.
	Endpoint string

	t       testing.TB
	bin     string
	dataDir string
	logPath string
	args    []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	logFile *os.File
}

// Start starts a private etcd and waits until it answers; it is killed when
// the test ends. See the package documentation for a missing binary.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := findBinary()
	if bin == "" {
		if os.Getenv("IMCLOUDTEST_REQUIRE_SERVERS") != "" {
			t.Fatal("etcdtest: no etcd binary on PATH or at /usr/bin/etcd, and IMCLOUDTEST_REQUIRE_SERVERS is set")
		}
		t.Skip("etcdtest: no etcd binary on PATH or at /usr/bin/etcd; set IMCLOUDTEST_REQUIRE_SERVERS to make this a failure")
	}
	dir := t.TempDir()
	s := &Server{t: t, bin: bin, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "etcd.log")}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			s.dumpLog()
		}
	})
	// The ports are reserved for this process and outside the ephemeral
	// range (so a restart finds them free again), but a program outside the
	// scheme may still bind one first: the first start retries with others.
	var lastErr error
	for range 3 {
		client, err := freeport.Port()
		if err != nil {
			t.Fatalf("etcdtest: pick ports: %v", err)
		}
		peer, err := freeport.Port()
		if err != nil {
			t.Fatalf("etcdtest: pick ports: %v", err)
		}
		s.configure(client, peer)
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		s.Stop()
		_ = os.RemoveAll(s.dataDir)
	}
	s.dumpLog()
	t.Fatalf("etcdtest: start etcd: %v", lastErr)
	return nil
}

// Start restarts a stopped server on the same ports and data directory and
// waits until it answers. It is a no-op while the server runs.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.Stop()
		s.dumpLog()
		s.t.Fatalf("etcdtest: restart etcd: %v", err)
	}
}

// Stop kills the server (SIGKILL, like a crash) and waits for it to exit. It
// is a no-op when the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	_ = s.logFile.Close()
	s.cmd, s.exited, s.logFile = nil, nil, nil
}

// Wipe deletes the data of a stopped server: the next Start begins a new
// cluster (another cluster id, revisions from 1), as an etcd restored
// without its data would. It is an error while the server runs.
func (s *Server) Wipe() {
	s.t.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		s.t.Fatal("etcdtest: Wipe of a running server")
	}
	if err := os.RemoveAll(s.dataDir); err != nil {
		s.t.Fatalf("etcdtest: wipe: %v", err)
	}
}

func (s *Server) configure(clientPort, peerPort int) {
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	s.args = []string{
		"--name", "default",
		"--data-dir", s.dataDir,
		"--listen-client-urls", s.Endpoint,
		"--advertise-client-urls", s.Endpoint,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default=" + peer,
		"--initial-cluster-state", "new",
		// Short raft timings: a single member elects itself sooner.
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "error",
	}
}

// start launches the process and waits until a Get succeeds.
func (s *Server) start() error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return nil
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = environ()
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		_ = logFile.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited, s.logFile = cmd, exited, logFile
	s.mu.Unlock()
	return waitReady(s.Endpoint, exited)
}

// waitReady polls a Get until it succeeds, the process exits or readyWithin
// passes.
func waitReady(endpoint string, exited <-chan struct{}) error {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("client for %s: %w", endpoint, err)
	}
	defer cli.Close()
	deadline := time.Now().Add(readyWithin)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := cli.Get(ctx, "etcdtest-ready")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("etcd at %s exited before answering", endpoint)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd at %s not answering after %v: %w", endpoint, readyWithin, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dumpLog writes the server's log to the test log.
func (s *Server) dumpLog() {
	b, err := os.ReadFile(s.logPath)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return
	}
	const max = 8 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	s.t.Logf("etcdtest: etcd log (%s), last %d bytes:\n%s", s.Endpoint, len(b), b)
}

func findBinary() string {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd"
	}
	return ""
}

// environ is the test's environment without ETCD_* settings, which would
// override the flags; etcd 3.4 refuses to run on arches other than amd64
// unless ETCD_UNSUPPORTED_ARCH names the arch.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	if runtime.GOARCH != "amd64" {
		env = append(env, "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	}
	return env
}
