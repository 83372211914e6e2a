package roles

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcloud/imcloud/roles/cloud"
	"github.com/imcloud/imcloud/roles/job"
)

// TestMetricsExportedAtZero: the labelled series an operator alerts on
// (docs/deploy.md) are there, at 0, before their first event.
func TestMetricsExportedAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := cloud.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := job.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"imcloud_cloud_protocol_errors_total": "kind=bad_auth",
		"imcloud_cloud_connections":           "transport=ws",
		"imcloud_cloud_disconnects_total":     "reason=replaced",
		"imcloud_cloud_deliveries_total":      "kind=broadcast",
		"imcloud_job_dropped_total":           "reason=node_queue_full",
		"imcloud_job_node_calls_total":        "result=failed",
		"imcloud_job_consumed_total":          "type=ROOM",
		"imcloud_job_room_batches_total":      "flush=window",
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if want[mf.GetName()] != l.GetName()+"="+l.GetValue() {
					continue
				}
				found[mf.GetName()] = true
				if v := m.GetCounter().GetValue() + m.GetGauge().GetValue(); v != 0 {
					t.Errorf("%s{%s} = %v, want 0", mf.GetName(), want[mf.GetName()], v)
				}
			}
		}
	}
	for name, label := range want {
		if !found[name] {
			t.Errorf("%s{%s} not exported", name, label)
		}
	}
}
