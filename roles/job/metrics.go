package job

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcloud/imcloud/protocol/pb"
)

// Metrics are the job's counters.
type Metrics struct {
	Consumed      *prometheus.CounterVec
	Dropped       *prometheus.CounterVec
	Calls         *prometheus.CounterVec
	RoomBatches   *prometheus.CounterVec
	RoomBatchMsgs prometheus.Histogram
	Nodes         prometheus.Gauge
	Merged        prometheus.Counter
}

// NewMetrics creates the job's metrics and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "job", Name: "consumed_total",
			Help: "Queue messages consumed, by type.",
		}, []string{"type"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "job", Name: "dropped_total",
			Help: "Pushes or deliveries not made, by reason.",
		}, []string{"reason"}),
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "job", Name: "node_calls_total",
			Help: "Calls to cloud nodes, by result (ok, retry, failed).",
		}, []string{"result"}),
		RoomBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "job", Name: "room_batches_total",
			Help: "Room batches sent, by what flushed them (idle, window, full, shutdown).",
		}, []string{"flush"}),
		RoomBatchMsgs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "imcloud", Subsystem: "job", Name: "room_batch_messages",
			Help:    "Messages per room batch.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
		Nodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "imcloud", Subsystem: "job", Name: "cloud_nodes",
			Help: "Cloud nodes the job delivers to.",
		}),
		Merged: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "job", Name: "room_batches_merged_total",
			Help: "Room batches folded into an earlier one queued for the same node and room.",
		}),
	}
	// Every known label value is exported from the start, at 0, so an alert
	// can tell "none yet" from "not exported".
	for _, t := range pb.PushMsg_Type_name {
		m.Consumed.WithLabelValues(t)
	}
	for _, r := range []string{"too_old", "bad_op", "bad_type", "no_room", "node_gone", "node_queue_full", "no_nodes"} {
		m.Dropped.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "retry", "failed"} {
		m.Calls.WithLabelValues(r)
	}
	for _, f := range []string{"idle", "window", "full", "shutdown"} {
		m.RoomBatches.WithLabelValues(f)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Consumed, m.Dropped, m.Calls, m.RoomBatches, m.RoomBatchMsgs, m.Nodes, m.Merged} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("job: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
