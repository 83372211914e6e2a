package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// lowest is the lowest port handed out: below it live the well-known and
// registered ports of services a developer machine may run.
const lowest = 10000

// tries bounds the search; a busy machine needs only a few.
const tries = 500

// Port reserves a free loopback port for the rest of the process's life.
func Port() (int, error) {
	lo, hi := candidates()
	// One directory per user: another user's would not be writable.
	dir := filepath.Join(os.TempDir(), "imcloud-test-ports-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	var lastErr error
	for range tries {
		port := lo + rand.IntN(hi-lo+1)
		ok, err := reserve(dir, port)
		if err != nil {
			lastErr = err
			continue
		}
		if ok && bindable(port) {
			return port, nil
		}
		// A port reserved but not bindable stays reserved: someone outside
		// the scheme is using it, and no other test should try it either.
	}
	if lastErr == nil {
		lastErr = errors.New("every port tried was taken")
	}
	return 0, fmt.Errorf("freeport: no free port in %d-%d after %d tries: %w", lo, hi, tries, lastErr)
}

// Addr is Port as "127.0.0.1:port", failing tb if no port can be found.
func Addr(tb testing.TB) string {
	tb.Helper()
	port, err := Port()
	if err != nil {
		tb.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// candidates is the widest range of ports outside the ephemeral range.
func candidates() (lo, hi int) {
	elo, ehi := ephemeral()
	if elo-lowest >= 65535-ehi {
		return lowest, elo - 1
	}
	return ehi + 1, 65535
}

// ephemeral reads the kernel's range for outgoing connections' local ports,
// with Linux's default where it cannot be read.
func ephemeral() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l < 1 || h < l || h > 65535 {
		return lo, hi
	}
	return l, h
}

// bindable says whether a listener can bind the port on loopback now.
func bindable(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}
