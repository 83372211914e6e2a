// Command kfakebroker runs an in-process fake Kafka cluster (kfake, which
// speaks the real wire protocol) for multi-process tests:
//
//	kfakebroker [--listen 127.0.0.1:0] [--port N] [--brokers N] [--addr-file path]
//
// Once listening it writes each broker's host:port on its own line to the
// --addr-file, if given (through a temporary file and a rename, so a reader
// never sees it half written), then prints the same lines to stdout.
// It runs until SIGTERM or SIGINT. Topic auto-creation is off: clients must
// create their topics, as on a production cluster.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kfakebroker:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "host:port of the first broker (port 0: random)")
	port := flag.Int("port", -1, "port of the first broker, overriding the port of --listen")
	brokers := flag.Int("brokers", 1, "number of brokers; the ones after the first get random ports")
	addrFile := flag.String("addr-file", "", "file to write the broker addresses to once listening")
	flag.Parse()

	host, portStr, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", *listen, err)
	}
	first, err := strconv.Atoi(portStr)
	if err != nil || first < 0 || first > 65535 {
		return fmt.Errorf("--listen %q: bad port", *listen)
	}
	if *port >= 0 {
		first = *port
	}
	if *brokers < 1 {
		return fmt.Errorf("--brokers %d: want at least 1", *brokers)
	}
	ports := make([]int, *brokers) // kfake listens on 127.0.0.1:<port>, 0: random
	ports[0] = first
	c, err := kfake.NewCluster(
		kfake.Ports(ports...),
		// kfake always asks for 127.0.0.1; listen on the host asked for.
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, p, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
	)
	if err != nil {
		return err
	}
	defer c.Close()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	// The file first: whoever reads stdout may rely on it.
	out := strings.Join(c.ListenAddrs(), "\n") + "\n"
	if *addrFile != "" {
		if err := writeFile(*addrFile, out); err != nil {
			return err
		}
	}
	if _, err := os.Stdout.WriteString(out); err != nil {
		return err
	}
	<-sigs
	return nil
}

// writeFile writes data to path through a temporary file in the same
// directory and a rename.
func writeFile(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kfakebroker-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
