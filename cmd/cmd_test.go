package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imcloud/imcloud/internal/freeport"
	"github.com/imcloud/imcloud/internal/lockedbuf"
	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/roles"
	"github.com/imcloud/imcloud/transport/client"
)

// run executes the command line in process and returns its exit code.
func run(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	if err != nil {
		out.WriteString(err.Error())
	}
	return exitCode(err), out.String()
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("cloud:\n  tcp_adr: 1.2.3.4:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		mention string
	}{
		{"unknown key in file", nil, []string{"all", "--config", bad}, "cloud.tcp_adr"},
		{"missing explicit file", nil, []string{"all", "--config", filepath.Join(dir, "none.yaml")}, "none.yaml"},
		{"bad env value", map[string]string{"IMCLOUD_CLOUD_HANDSHAKE_TIMEOUT": "soon"}, []string{"all", "--config", filepath.Join("..", "config.yaml")}, "cloud.handshake_timeout"},
		{"bad log level flag", nil, []string{"all", "--config", filepath.Join("..", "config.yaml"), "--log-level", "loud"}, "--log-level"},
		{"empty config path", nil, []string{"all", "--config", ""}, "--config: empty path"},
		{"empty log level flag", nil, []string{"all", "--config", filepath.Join("..", "config.yaml"), "--log-level", ""}, "--log-level"},
		{"upper-case log level flag", nil, []string{"all", "--config", filepath.Join("..", "config.yaml"), "--log-level", "DEBUG"}, "--log-level"},
		{"zap-only log level flag", nil, []string{"all", "--config", filepath.Join("..", "config.yaml"), "--log-level", "fatal"}, "--log-level"},
		{"unknown flag", nil, []string{"cloud", "--confg", "x"}, "unknown flag: --confg"},
		{"flag without its value", nil, []string{"cloud", "--config"}, "flag needs an argument"},
		{"extra argument", nil, []string{"cloud", "extra"}, "unknown command \"extra\""},
		{"unknown command", nil, []string{"clod"}, "unknown command \"clod\""},
		{"bench argument", nil, []string{"bench", "x"}, "unknown command \"x\""},
		{"memory backend in a separate role", nil, []string{"cloud", "--config", filepath.Join("..", "config.yaml")}, "registry.backend"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run(t, tc.env, tc.args...)
			if code != exitConfig {
				t.Fatalf("exit %d, want %d; output: %s", code, exitConfig, out)
			}
			if !strings.Contains(out, tc.mention) {
				t.Errorf("output %q does not name %q", out, tc.mention)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out := run(t, nil, "version")
	if code != exitOK || !strings.HasPrefix(out, "imcloud ") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

func TestClientFlags(t *testing.T) {
	code, out := run(t, nil, "client", "--network", "udp")
	if code != exitConfig || !strings.Contains(out, "--network") {
		t.Errorf("exit %d, output %q", code, out)
	}
	code, out = run(t, nil, "client", "--accepts", "1000,x")
	if code != exitConfig || !strings.Contains(out, "--accepts") {
		t.Errorf("exit %d, output %q", code, out)
	}
	code, out = run(t, nil, "client", "--heartbeat", "0s")
	if code != exitConfig || !strings.Contains(out, "--heartbeat") {
		t.Errorf("exit %d, output %q", code, out)
	}
}

// TestBinaryServesAndStopsOnSignal builds imcloud, starts `imcloud all` on
// config.yaml with ports moved by environment, pushes through it and stops
// it with SIGTERM.
func TestBinaryServesAndStopsOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	tcpAddr, httpAddr := freeport.Addr(t), freeport.Addr(t)
	cmd, logs, exited := startBinary(t, "IMCLOUD_CLOUD_TCP_ADDR="+tcpAddr, "IMCLOUD_LOGIC_HTTP_ADDR="+httpAddr, "IMCLOUD_NODE_ID=bin-test")

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Network: "tcp", Addr: tcpAddr,
		Auth: protocol.Auth{Mid: 77, RoomID: "live://bin", Accepts: []int32{1000}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := http.Post("http://"+httpAddr+"/goim/push/mids?operation=1000&mids=77", "application/octet-stream", strings.NewReader("via-binary"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if f, err := c.Next(ctx); err != nil || f.Op != 1000 || string(f.Body) != "via-binary" {
		t.Fatalf("got %v, %v", f, err)
	}

	// SIGHUP, a reload by habit, is ignored with a warning: still serving.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(logs.String(), "SIGHUP ignored") {
		select {
		case err := <-exited:
			t.Fatalf("exited on SIGHUP: %v; logs:\n%s", err, logs.String())
		case <-ctx.Done():
			t.Fatalf("no warning for SIGHUP; logs:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	resp, err = http.Post("http://"+httpAddr+"/goim/push/mids?operation=1000&mids=77", "application/octet-stream", strings.NewReader("after-hup"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if f, err := c.Next(ctx); err != nil || string(f.Body) != "after-hup" {
		t.Fatalf("after SIGHUP got %v, %v", f, err)
	}

	// Twice at once, as timeout(1) sends it (to the process and its
	// group): one stop, a clean one.
	for range 2 {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v; logs:\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15 s after SIGTERM; logs:\n%s", logs.String())
	}
	if f, err := c.Next(ctx); err == nil && f.Op != protocol.OpDisconnectReply {
		t.Errorf("after shutdown got %v, want a DisconnectReply or the close", f)
	}
	if _, err := net.DialTimeout("tcp", tcpAddr, time.Second); err == nil {
		t.Error("TCP listener still accepting after exit")
	}
}

// buildBinary builds imcloud into a directory of the test's.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "imcloud")
	build := exec.Command("go", "build", "-o", bin, "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startBinary builds imcloud and starts `imcloud all` on config.yaml with
// every listener on a free loopback port and env (later entries win)
// applied; it is killed when the test ends.
func startBinary(t *testing.T, env ...string) (*exec.Cmd, *lockedbuf.Buffer, <-chan error) {
	t.Helper()
	cmd := exec.Command(buildBinary(t), "all", "--config", filepath.Join("..", "config.yaml"))
	cmd.Env = append(os.Environ(),
		"IMCLOUD_CLOUD_TCP_ADDR="+freeport.Addr(t), "IMCLOUD_CLOUD_WS_ADDR="+freeport.Addr(t),
		"IMCLOUD_CLOUD_GRPC_ADDR="+freeport.Addr(t), "IMCLOUD_LOGIC_HTTP_ADDR="+freeport.Addr(t))
	cmd.Env = append(cmd.Env, env...)
	logs := &lockedbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, logs, exited
}

// TestBinaryLameDuckAndSecondSignal: with node.lame_duck the binary says
// not ready while it still serves; a second signal then exits at once,
// with code 1.
func TestBinaryLameDuckAndSecondSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	httpAddr := freeport.Addr(t)
	cmd, logs, exited := startBinary(t, "IMCLOUD_LOGIC_HTTP_ADDR="+httpAddr, "IMCLOUD_NODE_ID=lame-test", "IMCLOUD_NODE_LAME_DUCK=5m")
	readyz := func() int {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitStatus := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); readyz() != want; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("/readyz never %d; logs:\n%s", want, logs.String())
			}
		}
	}
	waitStatus(http.StatusOK)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitStatus(http.StatusServiceUnavailable) // the lame duck: still answering
	time.Sleep(2 * repeatWindow)              // not the first one repeated
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitFail {
			t.Fatalf("exit after a second signal: %v, want code %d; logs:\n%s", err, exitFail, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("a second signal in the lame duck did not exit; logs:\n%s", logs.String())
	}
}

// TestLogSampling: with log.sampling a message repeated past 100 in a second
// is thinned out; without it every line is written.
func TestLogSampling(t *testing.T) {
	for _, tc := range []struct {
		sampling bool
		min, max int
	}{{true, 100, 200}, {false, 1000, 1000}} {
		t.Run(fmt.Sprint("sampling=", tc.sampling), func(t *testing.T) {
			zc, err := loggerConfig(roles.LogConfig{Level: "info", Format: "json", Sampling: tc.sampling})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "log")
			zc.OutputPaths = []string{path}
			log, err := zc.Build()
			if err != nil {
				t.Fatal(err)
			}
			for range 1000 {
				log.Info("connection closed: protocol error")
			}
			_ = log.Sync()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// The sampler's second may roll over during the loop, letting
			// up to another 100 through.
			if n := strings.Count(string(b), "\n"); n < tc.min || n > tc.max {
				t.Fatalf("%d lines written, want %d to %d", n, tc.min, tc.max)
			}
		})
	}
	if _, err := loggerConfig(roles.LogConfig{Level: "loud"}); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("bad level: %v", err)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errors.New("listen: address in use"), exitFail},
		{configError{errors.New("cloud.tcp_addr: bad")}, exitConfig},
		{fmt.Errorf("cloud: start: %w", fmt.Errorf("%w: node.id", roles.ErrConfig)), exitConfig},
		{errors.New(`unknown command "x" for "imcloud"`), exitConfig},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
