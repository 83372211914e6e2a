package cmd

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud/roles/rolestest"
)

// TestClientCommand drives `imcloud client` as the README's demo does,
// against `all` in process: it prints a push, answers typed commands and
// ends on "quit", over TCP and WebSocket.
func TestClientCommand(t *testing.T) {
	app, _ := rolestest.StartAll(t, nil)
	addrs := app.Addrs()
	for i, tc := range []struct{ network, addr string }{
		{"tcp", addrs.TCP},
		{"ws", "ws://" + addrs.WS + "/sub"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			mid := 500 + i
			in, typed := io.Pipe()
			defer typed.Close()
			var buf bytes.Buffer
			out := &lockedWriter{w: &buf} // the test reads while the client writes
			printed := func() string {
				out.mu.Lock()
				defer out.mu.Unlock()
				return buf.String()
			}
			root := newRoot()
			root.SetIn(in)
			root.SetOut(out)
			root.SetErr(out)
			root.SetArgs([]string{"client", "--network", tc.network, "--addr", tc.addr,
				"--mid", fmt.Sprint(mid), "--room", "live://cli", "--heartbeat", "1h"})
			done := make(chan error, 1)
			go func() { done <- root.Execute() }()
			waitOutput := func(what string, n int) {
				t.Helper()
				deadline := time.Now().Add(15 * time.Second)
				for strings.Count(printed(), what) < n {
					select {
					case err := <-done:
						t.Fatalf("client ended (%v) before printing %q %d times:\n%s", err, what, n, printed())
					default:
					}
					if time.Now().After(deadline) {
						t.Fatalf("client did not print %q %d times:\n%s", what, n, printed())
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			typeLine := func(line string) {
				t.Helper()
				if _, err := io.WriteString(typed, line+"\n"); err != nil {
					t.Fatal(err)
				}
			}

			waitOutput("connected to "+tc.addr+" over "+tc.network, 1)
			resp, err := http.Post(fmt.Sprintf("http://%s/goim/push/mids?operation=1000&mids=%d", addrs.HTTP, mid),
				"text/plain", strings.NewReader("hello-cli"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			waitOutput(`op=1000 ver=1 seq=0 body="hello-cli"`, 1)
			typeLine("hb")
			waitOutput("room online=1", 1)
			typeLine("room live://other")
			waitOutput(`op=13 ver=1 seq=3 body="live://other"`, 1)
			typeLine("sub 1005")
			waitOutput(`op=15 ver=1 seq=4 body="1005"`, 1)
			typeLine("unsub 1005,x") // a typo: answered here, the session lives on
			waitOutput(`error: protocol: bad op "x"`, 1)
			typeLine("hb")
			waitOutput("room online=1", 2)
			typeLine("nonsense")
			waitOutput(clientHelp, 2) // once at the start, once for the unknown command
			typeLine("quit")
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("client ended with %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("client still running after quit:\n%s", printed())
			}
		})
	}
}
