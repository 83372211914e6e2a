package http1test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// Conn is a client connection that writes raw bytes and reads answers.
type Conn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// Dial connects to addr; every read and write must finish within wait, and
// the connection is closed when the test ends.
func Dial(t testing.TB, addr string, wait time.Duration) *Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(wait))
	return &Conn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// Send writes s as it is.
func (c *Conn) Send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// Answer reads the next final answer to a request of method (1xx answers
// skipped), body included.
func (c *Conn) Answer(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	for err == nil && resp.StatusCode < 200 { // 100 Continue
		resp, err = http.ReadResponse(c.br, &http.Request{Method: method})
	}
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

// Closed reports whether the server closed the connection (EOF or reset
// with nothing more to read) before the connection's deadline; still open
// then, or a byte to read, is false.
func (c *Conn) Closed() bool {
	c.t.Helper()
	_, err := c.br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}
