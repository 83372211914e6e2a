package cloud

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the hub's counters and gauges.
type Metrics struct {
	Conns        *prometheus.GaugeVec
	Connects     *prometheus.CounterVec
	Disconnects  *prometheus.CounterVec
	SlowClients  prometheus.Counter
	Deliveries   *prometheus.CounterVec
	Upstream     prometheus.Counter
	ProtocolErrs *prometheus.CounterVec
	Repeats      prometheus.Counter
	Parked       prometheus.Gauge
}

// NewMetrics creates the hub's metrics and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "imcloud", Subsystem: "cloud", Name: "connections",
			Help: "Authenticated client connections, by transport.",
		}, []string{"transport"}),
		Connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "cloud", Name: "connects_total",
			Help: "Successful authentications, by transport.",
		}, []string{"transport"}),
		Disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "cloud", Name: "disconnects_total",
			Help: "Closed authenticated connections, by reason.",
		}, []string{"reason"}),
		SlowClients: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "cloud", Name: "slow_clients_total",
			Help: "Connections closed because their send queue overflowed.",
		}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "cloud", Name: "deliveries_total",
			Help: "Push items queued to sessions, by kind (keys, room, broadcast).",
		}, []string{"kind"}),
		Upstream: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "cloud", Name: "upstream_messages_total",
			Help: "Client messages received: SendMsg (op 4) and business ops (1000 and above) sent upstream.",
		}),
		ProtocolErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "cloud", Name: "protocol_errors_total",
			Help: "Connections closed for a protocol error, by kind.",
		}, []string{"kind"}),
		Repeats: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "cloud", Name: "repeated_pushes_total",
			Help: "Pushes dropped because their id was already delivered (job redelivery).",
		}),
		Parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "imcloud", Subsystem: "cloud", Name: "parked_readers",
			Help: "Connections waiting for their next frame without a reader goroutine (cloud.park_readers).",
		}),
	}
	// Every known label value is exported from the start, at 0, so an alert
	// can tell "none yet" from "not exported".
	for _, t := range []string{"tcp", "ws"} {
		m.Conns.WithLabelValues(t)
		m.Connects.WithLabelValues(t)
	}
	for _, k := range []string{"keys", "room", "broadcast"} {
		m.Deliveries.WithLabelValues(k)
	}
	// A session ends for one of these, or for a protocol error of a kind
	// after auth; protocol errors are counted of those and the earlier ones.
	for _, r := range []string{"eof", "timeout", "replaced", "slow"} {
		m.Disconnects.WithLabelValues(r)
	}
	for _, k := range []string{"header_len", "pack_len", "too_large", "len_mismatch", "ws_protocol",
		"bad_room", "bad_ops", "too_many_ops", "auth_twice", "unknown_op"} {
		m.Disconnects.WithLabelValues(k)
		m.ProtocolErrs.WithLabelValues(k)
	}
	for _, k := range []string{"before_auth", "bad_auth"} {
		m.ProtocolErrs.WithLabelValues(k)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Conns, m.Connects, m.Disconnects, m.SlowClients, m.Deliveries, m.Upstream, m.ProtocolErrs, m.Repeats, m.Parked} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("cloud: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
