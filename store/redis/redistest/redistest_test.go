package redistest

import (
	"bufio"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStopStart(t *testing.T) {
	s := NewServer(t)
	if err := ping(s.Addr); err != nil {
		t.Fatalf("PING after NewServer: %v", err)
	}
	s.Stop()
	if err := ping(s.Addr); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Stop() // idempotent
	s.Start()
	if err := ping(s.Addr); err != nil {
		t.Fatalf("PING after Start on the same port: %v", err)
	}
	s.Start() // no-op while running
}

func TestExtraArgs(t *testing.T) {
	s := NewServer(t, "--requirepass", "secret")
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "-NOAUTH") {
		t.Fatalf("PING without AUTH = %q, %v; want -NOAUTH", line, err)
	}
}

// fakeTB records Skip and Fatal instead of ending the goroutine.
type fakeTB struct {
	testing.TB
	mu             sync.Mutex
	skipped, fatal bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(...any) {
	f.mu.Lock()
	f.skipped = true
	f.mu.Unlock()
}
func (f *fakeTB) Fatal(...any) {
	f.mu.Lock()
	f.fatal = true
	f.mu.Unlock()
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("IMCLOUDTEST_REDIS_SERVER", "")
	old := fallbacks
	fallbacks = nil
	t.Cleanup(func() { fallbacks = old })

	for _, tt := range []struct {
		require     string
		skip, fatal bool
	}{{"", true, false}, {"1", false, true}} {
		t.Setenv("IMCLOUDTEST_REQUIRE_SERVERS", tt.require)
		if tt.require == "" {
			os.Unsetenv("IMCLOUDTEST_REQUIRE_SERVERS")
		}
		f := &fakeTB{TB: t}
		if addr := Start(f); addr != "" {
			t.Errorf("REQUIRE=%q: Start returned %q without a binary", tt.require, addr)
		}
		if f.skipped != tt.skip || f.fatal != tt.fatal {
			t.Errorf("REQUIRE=%q: skipped %v fatal %v, want %v %v", tt.require, f.skipped, f.fatal, tt.skip, tt.fatal)
		}
	}
}
