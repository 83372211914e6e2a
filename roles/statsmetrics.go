package roles

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcloud/imcloud/queue/kafka"
	sredis "github.com/imcloud/imcloud/store/redis"
)

// statsCollector exports figures a backend client keeps itself (Kafka
// consumer, Redis pool), read at scrape time.
type statsCollector[S any] struct {
	read    func() (S, bool) // false: no figures yet (not connected)
	metrics []statMetric[S]
}

type statMetric[S any] struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(S) int64
}

func stat[S any](subsystem, name, help string, kind prometheus.ValueType, value func(S) int64) statMetric[S] {
	return statMetric[S]{
		desc: prometheus.NewDesc(prometheus.BuildFQName("imcloud", subsystem, name), help, nil, nil),
		kind: kind, value: value,
	}
}

func (c *statsCollector[S]) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

func (c *statsCollector[S]) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.read()
	if !ok {
		return
	}
	for _, m := range c.metrics {
		if metric, err := prometheus.NewConstMetric(m.desc, m.kind, float64(m.value(s))); err == nil {
			ch <- metric
		}
	}
}

// newKafkaCollector exports the job's Kafka consumer counters and lag.
func newKafkaCollector(read func() (kafka.Stats, bool)) *statsCollector[kafka.Stats] {
	const g, c = prometheus.GaugeValue, prometheus.CounterValue
	return &statsCollector[kafka.Stats]{read: read, metrics: []statMetric[kafka.Stats]{
		stat("job", "kafka_lag", "Messages of the partitions this job holds that it has not received yet (a lower bound while backpressure holds a partition).",
			g, func(s kafka.Stats) int64 { return s.Lag }),
		stat("job", "kafka_undecodable_total", "Kafka messages skipped because they are not a push.",
			c, func(s kafka.Stats) int64 { return s.Undecodable }),
		stat("job", "kafka_refused_total", "Hand-overs of a push to the job that failed (the job stopping, a session ending) and were retried.",
			c, func(s kafka.Stats) int64 { return s.Refused }),
		stat("job", "kafka_group_errors_total", "Errors of the Kafka consumer group (fetch, commit, rebalance); sarama retries them.",
			c, func(s kafka.Stats) int64 { return s.GroupErrors }),
		stat("job", "kafka_group_sessions_total", "Consumer group sessions (generations) this job joined: rebalances.",
			c, func(s kafka.Stats) int64 { return s.Sessions }),
	}}
}

// newRedisPoolCollector exports the session store's Redis connection pool.
func newRedisPoolCollector(read func() sredis.PoolStats) *statsCollector[sredis.PoolStats] {
	const g, c = prometheus.GaugeValue, prometheus.CounterValue
	return &statsCollector[sredis.PoolStats]{
		read: func() (sredis.PoolStats, bool) { return read(), true },
		metrics: []statMetric[sredis.PoolStats]{
			stat("store", "redis_pool_timeouts_total", "Store calls that gave up waiting for a free Redis connection.",
				c, func(s sredis.PoolStats) int64 { return s.Timeouts }),
			stat("store", "redis_pool_waits_total", "Store calls that waited for a free Redis connection.",
				c, func(s sredis.PoolStats) int64 { return s.Waits }),
			stat("store", "redis_pool_hits_total", "Store calls that found an idle Redis connection.",
				c, func(s sredis.PoolStats) int64 { return s.Hits }),
			stat("store", "redis_pool_misses_total", "Store calls that found no idle Redis connection.",
				c, func(s sredis.PoolStats) int64 { return s.Misses }),
			stat("store", "redis_pool_connections", "Open Redis connections.",
				g, func(s sredis.PoolStats) int64 { return s.TotalConns }),
			stat("store", "redis_pool_idle_connections", "Idle Redis connections.",
				g, func(s sredis.PoolStats) int64 { return s.IdleConns }),
		},
	}
}

// nodeQueueCollector exports how many deliveries wait for each cloud node
// in the job: one node's queue growing while the others stay empty is that
// node falling behind.
type nodeQueueCollector struct {
	read func() map[string]int
	desc *prometheus.Desc
}

func newNodeQueueCollector(read func() map[string]int) *nodeQueueCollector {
	return &nodeQueueCollector{read: read, desc: prometheus.NewDesc("imcloud_job_node_queue",
		"Deliveries waiting in the job's queue for a cloud node (job.node_queue bounds it).", []string{"node"}, nil)}
}

func (c *nodeQueueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *nodeQueueCollector) Collect(ch chan<- prometheus.Metric) {
	for node, n := range c.read() {
		if m, err := prometheus.NewConstMetric(c.desc, prometheus.GaugeValue, float64(n), node); err == nil {
			ch <- m
		}
	}
}
