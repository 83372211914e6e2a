package roles

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/imcloud/imcloud/roles/logic"
	"github.com/imcloud/imcloud/store"
	"github.com/imcloud/imcloud/store/memory"
)

// TestStoreOnlineSkipsDepartedNodes: the report of a node that left the
// registry is not counted, though it has not expired yet; before the
// registry is known, every report counts.
func TestStoreOnlineSkipsDepartedNodes(t *testing.T) {
	ctx := context.Background()
	st := memory.New(time.Minute)
	for _, r := range []store.NodeOnline{
		{Node: "a", Conns: 3, IPs: 2, Rooms: map[string]int32{"live://1": 2, "live://2": 1}},
		{Node: "b", Conns: 5, IPs: 5, Rooms: map[string]int32{"live://1": 5}},
		{Node: "dead", Conns: 7, IPs: 1, Rooms: map[string]int32{"live://1": 4, "live://3": 3}},
	} {
		if err := st.ReportOnline(ctx, r, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		live func(string) (bool, bool)
		want logic.Snapshot
	}{
		{"no registry view", nil, logic.Snapshot{Conns: 15, IPs: 8, Rooms: map[string]int32{"live://1": 11, "live://2": 1, "live://3": 3}}},
		{"registry not known yet", func(string) (bool, bool) { return false, false },
			logic.Snapshot{Conns: 15, IPs: 8, Rooms: map[string]int32{"live://1": 11, "live://2": 1, "live://3": 3}}},
		{"one node departed", func(n string) (bool, bool) { return n != "dead", true },
			logic.Snapshot{Conns: 8, IPs: 7, Rooms: map[string]int32{"live://1": 7, "live://2": 1}}},
		{"no node live", func(string) (bool, bool) { return false, true }, logic.Snapshot{Rooms: map[string]int32{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			so := &storeOnline{online: st, maxAge: time.Second, live: tt.live}
			got, err := so.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got.Conns != tt.want.Conns || got.IPs != tt.want.IPs || !maps.Equal(got.Rooms, tt.want.Rooms) {
				t.Fatalf("Snapshot = %+v, want %+v", got, tt.want)
			}
		})
	}
}
