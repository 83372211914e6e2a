package transport_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud/transport"
	"github.com/imcloud/imcloud/transport/transporttest"
)

func readN(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRawFDWrites(t *testing.T) {
	a, b := transporttest.Loopback(t)
	var r transport.RawFD
	if !r.Init(a) {
		t.Fatal("Init: a TCP connection has a descriptor")
	}
	if n, err := r.Write([]byte("hello ")); n != 6 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n, err := r.Writev([][]byte{[]byte("wor"), []byte("ld")}); n != 5 || err != nil {
		t.Fatalf("Writev = %d, %v", n, err)
	}
	if got := readN(t, b, 11); string(got) != "hello world" {
		t.Fatalf("peer read %q", got)
	}

	// More buffers than one writev takes: at most transport.MaxIovecs of them go.
	many := make([][]byte, transport.MaxIovecs+10)
	for i := range many {
		many[i] = []byte{byte(i)}
	}
	n, err := r.Writev(many)
	if err != nil || n == 0 || n > transport.MaxIovecs {
		t.Fatalf("Writev of %d one-byte buffers = %d, %v; want 1..%d", len(many), n, err, transport.MaxIovecs)
	}
	readN(t, b, n)

	// Empty buffers are skipped, and a coalesced write of a few frames
	// allocates nothing.
	if n, err := r.Writev([][]byte{nil, []byte("a"), {}, []byte("b")}); n != 2 || err != nil {
		t.Fatalf("Writev with empty buffers = %d, %v", n, err)
	}
	readN(t, b, 2)
	frames := [][]byte{[]byte("h"), []byte("e"), []byte("y")}
	if allocs := testing.AllocsPerRun(50, func() { _, _ = r.Writev(frames) }); allocs != 0 {
		t.Fatalf("Writev of 3 buffers allocates %.1f times, want 0", allocs)
	}
	readN(t, b, 3*51)

	r.Release()
	if _, err := r.Write([]byte("x")); !errors.Is(err, transport.ErrNoFD) {
		t.Fatalf("Write after Release: %v, want transport.ErrNoFD", err)
	}
	if _, err := r.Writev([][]byte{[]byte("x")}); !errors.Is(err, transport.ErrNoFD) {
		t.Fatalf("Writev after Release: %v, want transport.ErrNoFD", err)
	}
}

// TestRawFDFullSocket: a socket whose peer does not read takes what fits
// and then short counts, without blocking and without an error.
func TestRawFDFullSocket(t *testing.T) {
	a, b := transporttest.Loopback(t)
	var r transport.RawFD
	r.Init(a)
	chunk := bytes.Repeat([]byte{'z'}, 64<<10)
	total := 0
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatal("the socket never filled up")
		}
		n, err := r.Write(chunk)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n < len(chunk) {
			break
		}
	}
	if got := readN(t, b, total); !bytes.Equal(got, bytes.Repeat([]byte{'z'}, total)) {
		t.Fatal("the peer read other bytes than were written")
	}
}

// TestRawFDPeerGone: writes to a socket whose peer has reset it fail with
// an error, not a short count that would look like a full socket.
func TestRawFDPeerGone(t *testing.T) {
	a, b := transporttest.Loopback(t)
	var r transport.RawFD
	r.Init(a)
	_ = b.(*net.TCPConn).SetLinger(0) // the close resets the connection
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := r.Write([]byte("x"))
		if err != nil && !errors.Is(err, transport.ErrNoFD) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("writes to a closed peer never failed (last: %v)", err)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := r.Writev([][]byte{[]byte("x"), []byte("y")}); err == nil {
		t.Fatal("Writev to a closed peer succeeded")
	}
}

func TestRawFDWithoutDescriptor(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var r transport.RawFD
	if r.Init(a) {
		t.Fatal("Init: a pipe has no descriptor")
	}
	if _, err := r.Write([]byte("x")); !errors.Is(err, transport.ErrNoFD) {
		t.Fatalf("Write without a descriptor: %v, want transport.ErrNoFD", err)
	}
}

// TestRawFDReleaseDuringWrites: writes racing Release either complete
// before it or fail with transport.ErrNoFD, never touch the descriptor after it,
// and the connection then closes normally.
func TestRawFDReleaseDuringWrites(t *testing.T) {
	a, b := transporttest.Loopback(t)
	go func() { _, _ = io.Copy(io.Discard, b) }()
	var r transport.RawFD
	r.Init(a)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				if _, err := r.Write([]byte("ping")); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	time.Sleep(10 * time.Millisecond)
	r.Release()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, transport.ErrNoFD) {
			t.Fatalf("a write racing Release failed with %v, want transport.ErrNoFD", err)
		}
	}
}
