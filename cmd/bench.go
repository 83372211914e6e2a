package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/roles/bench"
)

const benchLong = `Load generator for imcloud (or any goim-compatible server).

It opens --conns client connections (TCP or WebSocket) from several source
addresses, authenticates them into --rooms rooms (client i joins
live://bench-<i mod rooms>) or as one user each (--mode mid: client i is mid
--mid-offset+i), then pushes through the REST API at --rate pushes/s for
--duration, each message stamped with its send time and sequence, and
reports:

  connections established/failed, connect rate and handshake latency;
  deliveries expected vs received, LOSSES (a delivery missing --grace after
  the last push), duplicates, out-of-order and misrouted deliveries;
  deliveries/s and push->receive latency p50/p90/p99/p99.9/max;
  with --server-pids: server RSS before/after connecting and per connection,
  server CPU over the push phase and CPU µs per delivery;
  the bench's own CPU per delivery (all its processes), so you can tell
  which side was the limit.

A live line goes to stderr every --progress; the summary goes to stdout
(--json: one JSON object). One process holds at most --per-process
connections (the open-files limit); above that, the connections are spread
over worker processes of this binary, which report to this one and die with
it. The run stops, with a summary, when the server goes away (half the
connections closed, the REST API unreachable, a server PID gone) and on
Ctrl-C (a second Ctrl-C exits at once). The exit status is 0 when the result
is ok or interrupted, 1 otherwise (loss, errors, aborted).

Examples (server pinned to core 0, bench to core 1):
  taskset -c 1 imcloud bench --network ws --conns 10000 --rooms 1 --rate 3 --duration 20s --server-pids $(pgrep -f 'imcloud all')
  taskset -c 1 imcloud bench --network ws --conns 10000 --rooms 100 --rate 300
  taskset -c 1 imcloud bench --network tcp --conns 18000 --push none --duration 60s --server-pids 1234
  taskset -c 1 imcloud bench --mode mid --conns 5000 --rate 1000 --json`

func newBenchCmd() *cobra.Command {
	cfg := bench.Default()
	var (
		sourceIPs, serverPIDs, accepts string
		asJSON                         bool
		cpuProfile                     string
		op                             int
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load generator: N connections, pushes through the REST API, loss, latency, server CPU and RSS",
		Long:  benchLong,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if op < math.MinInt32 || op > math.MaxInt32 {
				return configError{fmt.Errorf("--op: %d is not a 32-bit integer", op)}
			}
			cfg.Op = int32(op)
			switch strings.TrimSpace(sourceIPs) {
			case "":
				cfg.SourceIPs = nil // the default: 127.0.0.2-9 for a loopback target
			case "none":
				cfg.SourceIPs = []string{}
			default:
				cfg.SourceIPs = strings.Split(strings.ReplaceAll(sourceIPs, " ", ""), ",")
			}
			for _, p := range strings.Split(serverPIDs, ",") {
				if p = strings.TrimSpace(p); p == "" {
					continue
				}
				pid, err := strconv.Atoi(p)
				if err != nil {
					return configError{fmt.Errorf("--server-pids: %q is not a PID", p)}
				}
				cfg.ServerPIDs = append(cfg.ServerPIDs, pid)
			}
			if accepts != "" {
				ops, err := protocol.ParseOps([]byte(accepts))
				if err != nil {
					return configError{fmt.Errorf("--accepts: %w", err)}
				}
				cfg.Accepts = ops
			}
			if err := cfg.Validate(); err != nil {
				return configError{err}
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return configError{fmt.Errorf("--cpuprofile: %w", err)}
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			ctx, stop := benchSignals(cmd)
			defer stop()
			sum, err := bench.Run(ctx, cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if asJSON {
				err = sum.WriteJSON(cmd.OutOrStdout())
			} else {
				err = sum.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if sum.Result != bench.ResultOK && sum.Result != bench.ResultInterrupted {
				return fmt.Errorf("bench result: %s", sum.Result)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&cfg.Network, "network", cfg.Network, "client transport: tcp or ws")
	fl.StringVar(&cfg.TCPAddr, "tcp-addr", cfg.TCPAddr, "cloud TCP address (--network tcp); comma-separated: client i goes to entry i mod n")
	fl.StringVar(&cfg.WSURL, "ws-url", cfg.WSURL, "cloud WebSocket URL (--network ws); comma-separated: client i goes to entry i mod n")
	fl.StringVar(&cfg.HTTP, "http", cfg.HTTP, "REST API base URL (logic)")
	fl.IntVar(&cfg.Conns, "conns", cfg.Conns, "connections to open")
	fl.Float64Var(&cfg.ConnectRate, "connect-rate", cfg.ConnectRate, "new connections per second over all processes; 0 = as fast as --connect-concurrency allows")
	fl.IntVar(&cfg.ConnectConcurrency, "connect-concurrency", cfg.ConnectConcurrency, "handshakes (dial + upgrade + auth) in flight at once, over all processes")
	fl.IntVar(&cfg.MaxConnectFailures, "max-connect-failures", cfg.MaxConnectFailures, "stop connecting and abort after this many failures; 0 = never; -1 = 5% of --conns (at least 10)")
	fl.StringVar(&sourceIPs, "source-ips", "", "comma-separated source IPs, used round robin with IP_BIND_ADDRESS_NO_PORT (~28k ports each per destination); default: 127.0.0.2-127.0.0.9 when the target is loopback, else the kernel's choice; \"none\": never bind")
	fl.IntVar(&cfg.PerProcess, "per-process", cfg.PerProcess, "most connections one process holds; above it, worker processes of this binary hold them all")
	fl.StringVar(&cfg.Mode, "mode", cfg.Mode, "what clients authenticate as: room (client i joins live://bench-<i mod rooms> with mid offset+i) or mid (client i is mid offset+i, in no room)")
	fl.IntVar(&cfg.Rooms, "rooms", cfg.Rooms, "rooms in room mode")
	fl.Int64Var(&cfg.MidOffset, "mid-offset", cfg.MidOffset, "mid of client 0")
	fl.IntVar(&op, "op", int(cfg.Op), "business op of the pushes (>= 1000)")
	fl.StringVar(&accepts, "accepts", "", "ops the clients accept, comma-separated (default: --op)")
	fl.StringVar(&cfg.Push, "push", "", "what to push: room (round robin over the rooms), mid (round robin over the connected users), all (broadcast) or none (hold the connections idle); default: the mode")
	fl.Float64Var(&cfg.Rate, "rate", cfg.Rate, "pushes per second, sent on schedule (open loop)")
	fl.IntVar(&cfg.Speed, "speed", 0, "with --push all: the broadcasts' speed parameter, sessions per second over the whole cluster (0: as fast as they go)")
	fl.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of the push phase (with --push none: of the idle hold)")
	fl.IntVar(&cfg.Size, "size", cfg.Size, "message body bytes (at least 24: the stamp; padded)")
	fl.DurationVar(&cfg.Grace, "grace", cfg.Grace, "wait this long after the last push for deliveries; what has not arrived then is lost")
	fl.IntVar(&cfg.HTTPConns, "http-conns", cfg.HTTPConns, "keep-alive HTTP connections for pushes (pushes to one target share one, in order)")
	fl.DurationVar(&cfg.Settle, "settle", cfg.Settle, "pause between the last connection and the push phase")
	fl.DurationVar(&cfg.Heartbeat, "heartbeat", cfg.Heartbeat, "heartbeat interval per connection, spread evenly over the connections; 0 = none")
	fl.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "limit for one handshake, one HTTP push and one write")
	fl.StringVar(&serverPIDs, "server-pids", "", "comma-separated server PIDs to sample /proc for RSS and CPU (summed)")
	fl.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	fl.DurationVar(&cfg.Progress, "progress", cfg.Progress, "interval of the live line on stderr; 0 = off")
	fl.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process (not of its workers) to this file")

	cmd.AddCommand(newBenchFloorCmd(), newBenchFloorReaderCmd())
	cmd.AddCommand(&cobra.Command{
		Use:    "worker",
		Short:  "Internal: a worker process started by bench (JSON lines on stdin/stdout)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The parent owns the run: Ctrl-C goes to it, and a worker ends
			// when told to or when its stdin closes.
			signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
			return bench.RunWorker(cmd.InOrStdin(), cmd.OutOrStdout())
		},
	})
	return cmd
}

// benchSignals: the first SIGINT/SIGTERM ends the context (the run stops
// and prints its summary so far); a second one exits at once.
func benchSignals(cmd *cobra.Command) (context.Context, func()) {
	ctx, cancel := context.WithCancel(cmd.Context())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ch:
			fmt.Fprintln(cmd.ErrOrStderr(), "bench: interrupted, finishing (again to exit now)")
			cancel()
		case <-stopped:
			return
		}
		// Not ctx.Done: it is closed now, and the second signal must still
		// be waited for until the run is over.
		select {
		case <-ch:
			os.Exit(130)
		case <-stopped:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(stopped)
			cancel()
		})
	}
}

func newBenchFloorCmd() *cobra.Command {
	cfg := bench.FloorConfig{Conns: 2000, Size: 100, Batch: 1, Duration: 5 * time.Second, ReaderCPU: -1}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "floor",
		Short: "Measure the floor: CPU per plain write of a message to a loopback TCP socket",
		Long: `Opens --conns loopback connections to a reader process it starts itself and
writes --batch messages of --size bytes per write to them round robin, from one
goroutine, for --duration; then prints this process's CPU time per write and per
message. The kernel charges much of the receive side to the writer, so this is
what one write per delivery costs any server on this machine.

  taskset -c 0 imcloud bench floor --reader-cpu 1 --rate 3
  taskset -c 0 imcloud bench floor --reader-cpu 1 --batch 4`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := benchSignals(cmd)
			defer stop()
			res, err := bench.RunFloor(ctx, cfg)
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), res)
			return err
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Conns, "conns", cfg.Conns, "connections written round robin")
	fl.IntVar(&cfg.Size, "size", cfg.Size, "message bytes")
	fl.IntVar(&cfg.Batch, "batch", cfg.Batch, "messages per write")
	fl.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of the write phase")
	fl.Float64Var(&cfg.Rate, "rate", cfg.Rate, "passes per second (a pass writes once to every connection); 0: back to back, the reader never idle")
	fl.IntVar(&cfg.ReaderCPU, "reader-cpu", cfg.ReaderCPU, "CPU to pin the reader process to; -1: not pinned")
	fl.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

func newBenchFloorReaderCmd() *cobra.Command {
	var addr string
	var conns int
	cmd := &cobra.Command{
		Use:    "floor-reader",
		Short:  "Internal: the reader process of bench floor",
		Hidden: true,
		Args:   noArgs,
		RunE: func(*cobra.Command, []string) error {
			signal.Ignore(syscall.SIGINT, syscall.SIGTERM) // it ends with the writer
			return bench.RunFloorReader(addr, conns)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "writer address")
	cmd.Flags().IntVar(&conns, "conns", 0, "connections to open")
	return cmd
}
