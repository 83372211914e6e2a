// Package kafkatest runs an in-process fake Kafka cluster (kfake, which
// speaks the real wire protocol) for tests of queue/kafka and of the roles
// that use it.
//
// The cluster has one broker on a random loopback port unless opts say
// otherwise, and topic auto-creation is off (as on a production cluster
// where the application creates its topic), so tests prove that the code
// under test creates what it needs. Start registers Close with t.Cleanup.
package kafkatest

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Broker is a running fake cluster.
type Broker struct {
	// Addrs are the brokers' host:port addresses, to use as bootstrap
	// brokers.
	Addrs []string
	// Cluster is the kfake cluster, for tests that inject faults.
	Cluster *kfake.Cluster
}

// Start runs a fake cluster until the test ends. opts are applied after the
// defaults (one broker, random port), so kfake.NumBrokers or kfake.Ports
// override them.
func Start(t testing.TB, opts ...kfake.Opt) *Broker {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("kafkatest: start kfake: %v", err)
	}
	b := &Broker{Addrs: c.ListenAddrs(), Cluster: c}
	t.Cleanup(b.Close)
	return b
}

// Close stops the cluster, closing every client connection: clients then
// see the brokers as down. It is idempotent.
func (b *Broker) Close() { b.Cluster.Close() }
