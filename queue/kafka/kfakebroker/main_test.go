package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue/kafka"
)

// TestMain runs main instead of the tests when re-executed by a test, so
// the tests run the real command without building it.
func TestMain(m *testing.M) {
	if os.Getenv("KFAKEBROKER_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// start runs the command with args and returns its stdout lines reader.
func start(t *testing.T, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	// The race detector otherwise sleeps a second at exit.
	cmd.Env = append(os.Environ(), "KFAKEBROKER_RUN_MAIN=1", "GORACE=atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, bufio.NewScanner(out)
}

// stop sends sig and expects a clean exit.
func stop(t *testing.T, cmd *exec.Cmd, sig os.Signal) {
	t.Helper()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { res <- cmd.Wait() }()
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("kfakebroker exit after %v: %v", sig, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("kfakebroker did not exit 10s after %v", sig)
	}
}

func TestServesUntilSignal(t *testing.T) {
	addrFile := filepath.Join(t.TempDir(), "addr")
	cmd, out := start(t, "--listen", "127.0.0.1:0", "--addr-file", addrFile)
	if !out.Scan() {
		t.Fatalf("no address on stdout: %v", out.Err())
	}
	addr := out.Text()
	data, err := os.ReadFile(addrFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(data)); got != addr {
		t.Fatalf("addr file holds %q, stdout said %q", got, addr)
	}

	// The topic is not auto-created: the producer creates it.
	cfg := kafka.Config{Brokers: []string{addr}, Topic: "kfakebroker-test", Partitions: 2}
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	admin, err := sarama.NewClusterAdmin(cfg.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	md, err := admin.DescribeTopics([]string{cfg.Topic})
	_ = admin.Close()
	if err != nil || len(md) != 1 || !errors.Is(md[0].Err, sarama.ErrUnknownTopicOrPartition) {
		t.Fatalf("topic before the producer: %v %+v, want unknown", err, md)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	p, err := kafka.NewProducer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, &pb.PushMsg{Id: "1", Server: "node-a"}); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	stop(t, cmd, syscall.SIGTERM)
}

func TestPortFlag(t *testing.T) {
	// Find a free port, then ask for it.
	cmd, out := start(t)
	if !out.Scan() {
		t.Fatal("no address on stdout")
	}
	_, port, _ := strings.Cut(out.Text(), ":")
	stop(t, cmd, syscall.SIGINT)

	cmd, out = start(t, "--port", port, "--brokers", "2")
	var addrs []string
	for len(addrs) < 2 && out.Scan() {
		addrs = append(addrs, out.Text())
	}
	if len(addrs) != 2 || addrs[0] != "127.0.0.1:"+port {
		t.Fatalf("addresses %v, want 2 starting with 127.0.0.1:%s", addrs, port)
	}
	stop(t, cmd, syscall.SIGTERM)
}
