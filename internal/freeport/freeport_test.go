package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsAreDistinctBindableAndNotEphemeral(t *testing.T) {
	elo, ehi := ephemeral()
	seen := map[int]bool{}
	for range 50 {
		port, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if port >= elo && port <= ehi {
			t.Errorf("port %d is in the ephemeral range %d-%d", port, elo, ehi)
		}
		if port < lowest || port > 65535 {
			t.Errorf("port %d out of bounds", port)
		}
		if seen[port] {
			t.Errorf("port %d handed out twice", port)
		}
		seen[port] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Errorf("port %d not bindable: %v", port, err)
			continue
		}
		_ = ln.Close()
	}
}

// TestReservationIsExclusive: a second reservation of a port fails even from
// the same process, as one from another process would.
func TestReservationIsExclusive(t *testing.T) {
	dir := t.TempDir()
	if ok, err := reserve(dir, 12345); !ok || err != nil {
		t.Fatalf("first reserve = %v, %v", ok, err)
	}
	if ok, err := reserve(dir, 12345); ok || err != nil {
		t.Fatalf("second reserve = %v, %v; want false, nil", ok, err)
	}
	if ok, err := reserve(dir, 12346); !ok || err != nil {
		t.Fatalf("other port reserve = %v, %v", ok, err)
	}
	if _, err := reserve(dir+"/missing", 1); err == nil {
		t.Fatal("reserve in a missing directory succeeded")
	}
}

func TestCandidatesAvoidEphemeral(t *testing.T) {
	lo, hi := candidates()
	elo, ehi := ephemeral()
	if lo > hi || (lo <= ehi && hi >= elo) {
		t.Fatalf("candidates %d-%d overlap ephemeral %d-%d", lo, hi, elo, ehi)
	}
	if hi-lo < 1000 {
		t.Fatalf("candidates %d-%d: too few", lo, hi)
	}
}
