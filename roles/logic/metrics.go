package logic

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the REST API's counters and histogram.
type metrics struct {
	requests    *prometheus.CounterVec   // route, code
	pushes      *prometheus.CounterVec   // type
	pushLatency *prometheus.HistogramVec // type
}

// newMetrics creates the metrics and registers them with reg (nil: none).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "logic", Name: "requests_total",
			Help: "REST requests, by route (path, or \"unmatched\") and HTTP status.",
		}, []string{"route", "code"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imcloud", Subsystem: "logic", Name: "pushes_total",
			Help: "Accepted push requests, by type (keys, mids, room, all).",
		}, []string{"type"}),
		pushLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "imcloud", Subsystem: "logic", Name: "push_duration_seconds",
			Help:    "Time to accept a push request (parse, look up, publish), by type.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9), // 100µs .. 6.5s
		}, []string{"type"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.pushes, m.pushLatency} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("logic: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// request counts one answered request.
func (m *metrics) request(route string, status int) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
}
