//go:build linux

package bench

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The receive time of a read is the kernel's arrival time, not the time of
// the read: a read well after the data arrived still reports the arrival.
func TestRecvKernelTimestamp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	defer srv.Close()
	c := &conn{fd: rawSocket(t, nc), p: &pool{}}
	defer c.closeFD()

	l := &loop{}
	buf := make([]byte, 64)
	recv := func() (string, int64) {
		t.Helper()
		for {
			n, at, err := l.recv(c.fd, buf)
			if err == unix.EAGAIN {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			return string(buf[:n]), at
		}
	}
	// The kernel turns receive timestamps on for everyone shortly after
	// the first socket asks (a deferred static key): the first segments
	// may come without one, so wait for a stamped read first.
	for i := 0; ; i++ {
		before := time.Now().UnixNano()
		if _, err := srv.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		readAt := time.Now().UnixNano()
		got, at := recv()
		if got != "hello" {
			t.Fatalf("read %q", got)
		}
		if at >= before && at < readAt {
			return // the arrival time, not the read's
		}
		if i == 50 {
			t.Fatalf("no kernel timestamp: %d not between the write (%d) and the read (%d)", at, before, readAt)
		}
	}
}

// rawSocket takes nc's socket out of it, non-blocking and with receive
// timestamps on, as the bench's own dialer makes them.
func rawSocket(t *testing.T, nc net.Conn) int {
	t.Helper()
	f, err := nc.(*net.TCPConn).File() // a blocking duplicate
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	_ = nc.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		t.Fatal(err)
	}
	return fd
}
