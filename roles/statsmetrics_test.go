package roles

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcloud/imcloud/queue/kafka"
	sredis "github.com/imcloud/imcloud/store/redis"
)

// TestKafkaCollector: the job's Kafka counters and lag are exported once
// the consumer is connected, and nothing before.
func TestKafkaCollector(t *testing.T) {
	connected := false
	stats := kafka.Stats{Undecodable: 1, Refused: 2, Sessions: 3, GroupErrors: 4, Lag: 42}
	reg := prometheus.NewRegistry()
	if err := reg.Register(newKafkaCollector(func() (kafka.Stats, bool) { return stats, connected })); err != nil {
		t.Fatal(err)
	}
	gather := func() map[string]float64 { return gatherAll(t, reg) }
	if got := gather(); len(got) != 0 {
		t.Fatalf("before the consumer connected: %v, want nothing", got)
	}
	connected = true
	want := map[string]float64{
		"imcloud_job_kafka_lag":                  42,
		"imcloud_job_kafka_undecodable_total":    1,
		"imcloud_job_kafka_refused_total":        2,
		"imcloud_job_kafka_group_sessions_total": 3,
		"imcloud_job_kafka_group_errors_total":   4,
	}
	got := gather()
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v (all: %v)", name, got[name], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d metrics, want %d: %v", len(got), len(want), got)
	}
}

// gatherAll reads every gauge and counter of reg, by name and, for a
// labelled one, `name{label="value",...}`.
func gatherAll(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			if labels := m.GetLabel(); len(labels) > 0 {
				pairs := make([]string, len(labels))
				for i, l := range labels {
					pairs[i] = fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
				}
				name += "{" + strings.Join(pairs, ",") + "}"
			}
			switch {
			case m.GetGauge() != nil:
				out[name] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func TestRedisPoolCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	stats := sredis.PoolStats{Hits: 10, Misses: 2, Timeouts: 3, Waits: 4, TotalConns: 5, IdleConns: 1}
	if err := reg.Register(newRedisPoolCollector(func() sredis.PoolStats { return stats })); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"imcloud_store_redis_pool_hits_total":       10,
		"imcloud_store_redis_pool_misses_total":     2,
		"imcloud_store_redis_pool_timeouts_total":   3,
		"imcloud_store_redis_pool_waits_total":      4,
		"imcloud_store_redis_pool_connections":      5,
		"imcloud_store_redis_pool_idle_connections": 1,
	}
	if got := gatherAll(t, reg); !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestNodeQueueCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	queues := map[string]int{"n1": 3, "n2": 0}
	if err := reg.Register(newNodeQueueCollector(func() map[string]int { return queues })); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{`imcloud_job_node_queue{node="n1"}`: 3, `imcloud_job_node_queue{node="n2"}`: 0}
	if got := gatherAll(t, reg); !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
