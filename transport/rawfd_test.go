package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// loopback returns both ends of a loopback TCP connection.
func loopback(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

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
	a, b := loopback(t)
	var r RawFD
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

	// More buffers than one writev takes: at most MaxIovecs of them go.
	many := make([][]byte, MaxIovecs+10)
	for i := range many {
		many[i] = []byte{byte(i)}
	}
	n, err := r.Writev(many)
	if err != nil || n == 0 || n > MaxIovecs {
		t.Fatalf("Writev of %d one-byte buffers = %d, %v; want 1..%d", len(many), n, err, MaxIovecs)
	}
	readN(t, b, n)

	r.Release()
	if _, err := r.Write([]byte("x")); !errors.Is(err, ErrNoFD) {
		t.Fatalf("Write after Release: %v, want ErrNoFD", err)
	}
	if _, err := r.Writev([][]byte{[]byte("x")}); !errors.Is(err, ErrNoFD) {
		t.Fatalf("Writev after Release: %v, want ErrNoFD", err)
	}
}

// TestRawFDFullSocket: a socket whose peer does not read takes what fits
// and then short counts, without blocking and without an error.
func TestRawFDFullSocket(t *testing.T) {
	a, b := loopback(t)
	var r RawFD
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

func TestRawFDWithoutDescriptor(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var r RawFD
	if r.Init(a) {
		t.Fatal("Init: a pipe has no descriptor")
	}
	if _, err := r.Write([]byte("x")); !errors.Is(err, ErrNoFD) {
		t.Fatalf("Write without a descriptor: %v, want ErrNoFD", err)
	}
}

// TestRawFDReleaseDuringWrites: writes racing Release either complete
// before it or fail with ErrNoFD, never touch the descriptor after it,
// and the connection then closes normally.
func TestRawFDReleaseDuringWrites(t *testing.T) {
	a, b := loopback(t)
	go func() { _, _ = io.Copy(io.Discard, b) }()
	var r RawFD
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
		if !errors.Is(err, ErrNoFD) {
			t.Fatalf("a write racing Release failed with %v, want ErrNoFD", err)
		}
	}
}
