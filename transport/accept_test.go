package transport

import (
	"net"
	"syscall"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// scriptedListener returns its results in order, then net.ErrClosed.
type scriptedListener struct {
	net.Listener
	results []error // nil: a connection
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	if len(l.results) == 0 {
		return nil, net.ErrClosed
	}
	err := l.results[0]
	l.results = l.results[1:]
	if err != nil {
		return nil, err
	}
	a, b := net.Pipe()
	_ = b.Close()
	return a, nil
}

func TestAcceptLoop(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	emfile := &net.OpError{Op: "accept", Err: syscall.EMFILE}
	ln := &scriptedListener{results: []error{nil, emfile, emfile, nil}}
	handled := 0
	err := AcceptLoop(ln, zap.New(core), func(c net.Conn) {
		handled++
		_ = c.Close()
	})
	if err != nil {
		t.Fatalf("AcceptLoop after the listener closed: %v", err)
	}
	if handled != 2 {
		t.Fatalf("handled %d connections, want 2 (around two failed accepts)", handled)
	}
	failed := logs.FilterMessage("accept failed").All()
	if len(failed) != 2 || failed[0].ContextMap()["error"] != emfile.Error() {
		t.Fatalf("logs: %v", logs.All())
	}
}
