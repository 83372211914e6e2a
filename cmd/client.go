package cmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport/client"
)

const clientHelp = `commands: room <type://id> | sub <op,op> | unsub <op,op> | send <text> | hb | quit`

func newClientCmd() *cobra.Command {
	var (
		network, addr, key, room, platform, accepts string
		mid                                         int64
		heartbeat                                   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "client",
		Short: "Connect as a goim client, print what arrives, send what you type",
		Long: "Connects to a cloud node over TCP or WebSocket, authenticates with --mid/--key/--room, " +
			"heartbeats, and prints every frame it receives. Lines typed on stdin are commands:\n  " + clientHelp,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				addr = "127.0.0.1:3101"
				if network == "ws" {
					addr = "ws://127.0.0.1:3102/sub"
				}
			}
			ops, err := protocol.ParseOps([]byte(accepts))
			if err != nil {
				return configError{fmt.Errorf("--accepts: %w", err)}
			}
			if network != "tcp" && network != "ws" {
				return configError{fmt.Errorf("--network: want tcp or ws, got %q", network)}
			}
			if heartbeat <= 0 {
				return configError{fmt.Errorf("--heartbeat: want a positive interval, got %s", heartbeat)}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			c, err := client.Dial(ctx, client.Options{
				Network: network, Addr: addr,
				Auth: protocol.Auth{Mid: mid, Key: key, RoomID: room, Platform: platform, Accepts: ops},
			})
			if err != nil {
				return err
			}
			defer c.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "connected to %s over %s as mid=%d room=%q accepts=%v\n%s\n", addr, network, mid, room, ops, clientHelp)
			return runClient(ctx, c, cmd.InOrStdin(), out, heartbeat)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&network, "network", "tcp", "tcp or ws")
	fl.StringVar(&addr, "addr", "", "server address (tcp: host:port, default 127.0.0.1:3101; ws: URL, default ws://127.0.0.1:3102/sub)")
	fl.Int64Var(&mid, "mid", 1, "user id")
	fl.StringVar(&key, "key", "", "session key (empty: the server generates one)")
	fl.StringVar(&room, "room", "live://1000", "room id type://id (empty: no room)")
	fl.StringVar(&platform, "platform", "cli", "platform name")
	fl.StringVar(&accepts, "accepts", "1000,1001,1002", "ops accepted for key, mid and broadcast pushes")
	fl.DurationVar(&heartbeat, "heartbeat", 30*time.Second, "heartbeat interval")
	return cmd
}

// lockedWriter serializes the client's output: frames arrive on one
// goroutine while typed commands answer on another.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func runClient(ctx context.Context, c *client.Client, in io.Reader, out io.Writer, heartbeat time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out = &lockedWriter{w: out}
	var seq atomic.Int32
	seq.Store(1)
	errs := make(chan error, 2)
	go func() {
		for {
			f, err := c.Next(ctx)
			if err != nil {
				errs <- err
				return
			}
			printFrame(out, f)
		}
	}()
	go func() {
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := c.Heartbeat(seq.Add(1)); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			if err := clientCommand(c, sc.Text(), seq.Add(1), out); err != nil {
				if errors.Is(err, io.EOF) {
					cancel()
					return
				}
				fmt.Fprintln(out, "error:", err)
			}
		}
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("connection ended: %w", err)
	}
}

func clientCommand(c *client.Client, line string, seq int32, out io.Writer) error {
	verb, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch verb {
	case "":
		return nil
	case "room":
		return c.Send(1, protocol.OpChangeRoom, seq, []byte(arg))
	case "sub", "unsub":
		// The server closes a connection that sends a bad op list: a
		// typo here would end the session.
		if _, err := protocol.ParseOps([]byte(arg)); err != nil {
			return err
		}
		op := protocol.OpSub
		if verb == "unsub" {
			op = protocol.OpUnsub
		}
		return c.Send(1, op, seq, []byte(arg))
	case "send":
		return c.Send(1, protocol.OpSendMsg, seq, []byte(arg))
	case "hb":
		return c.Heartbeat(seq)
	case "quit", "exit":
		return io.EOF
	default:
		fmt.Fprintln(out, clientHelp)
		return nil
	}
}

func printFrame(out io.Writer, f protocol.Frame) {
	ts := time.Now().Format("15:04:05.000")
	switch f.Op {
	case protocol.OpHeartbeatReply:
		n := int32(0)
		if len(f.Body) == 4 {
			n = int32(uint32(f.Body[0])<<24 | uint32(f.Body[1])<<16 | uint32(f.Body[2])<<8 | uint32(f.Body[3]))
		}
		fmt.Fprintf(out, "%s heartbeat reply seq=%d room online=%d\n", ts, f.Seq, n)
	case protocol.OpDisconnectReply:
		fmt.Fprintf(out, "%s disconnected by server: %s\n", ts, f.Body)
	default:
		fmt.Fprintf(out, "%s op=%d ver=%d seq=%d body=%q\n", ts, f.Op, f.Ver, f.Seq, f.Body)
	}
}
