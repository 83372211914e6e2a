package logic

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/imcloud/imcloud/registry"
)

func TestNodesInstances(t *testing.T) {
	for _, prefix := range []string{"/goim/", "/im/"} {
		e := newEnv(t, envOpts{})
		a := e.do(http.MethodGet, prefix+"nodes/instances", "", nil)
		if a.Status != http.StatusOK {
			t.Fatalf("%d %s", a.Status, a.Body)
		}
		var got []map[string]any
		if err := json.Unmarshal(a.Data, &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("instances %s", a.Data)
		}
		n1 := got[0]
		updated, _ := n1["updated"].(float64)
		if updated <= 0 || n1["latest_timestamp"] != updated*1e6 {
			t.Errorf("updated %v, latest_timestamp %v: want unix ms and the same in ns", n1["updated"], n1["latest_timestamp"])
		}
		delete(n1, "updated")
		delete(n1, "latest_timestamp")
		// goim's discovery record first, then imcloud's own fields.
		want := map[string]any{
			"region": "", "zone": "", "env": "", "appid": "imcloud.cloud", "hostname": "n1",
			"addrs": []any{"grpc://10.0.0.1:3109"}, "version": "",
			"metadata": map[string]any{"addrs": "10.0.0.1", "conn_count": "5", "ip_count": "0", "offline": "false", "weight": "10"},
			"id":       "n1", "role": "cloud", "grpc_addr": "10.0.0.1:3109",
			"clients": []any{map[string]any{"tcp": "10.0.0.1:3101", "ws": "ws://10.0.0.1:3102/sub"}},
			"weight":  float64(10), "conns": float64(5), "ips": float64(0),
		}
		if !reflect.DeepEqual(n1, want) {
			t.Errorf("instance n1:\n got %v\nwant %v", n1, want)
		}
		if got[1]["id"] != "n2" || got[1]["conns"] != float64(3) {
			t.Errorf("instance n2: %v", got[1])
		}
	}
	// No nodes: an empty list, not null.
	e := newEnv(t, envOpts{})
	for _, n := range liveNodes {
		_ = e.reg.Deregister(context.Background(), registry.RoleCloud, n.ID)
	}
	if a := e.do(http.MethodGet, "/goim/nodes/instances", "", nil); string(a.Data) != "[]" {
		t.Errorf("no nodes: data %s", a.Data)
	}
}

func TestNodesWeighted(t *testing.T) {
	e := newEnv(t, envOpts{cfg: Config{Domain: "conn.example.com", Heartbeat: 120 * time.Second}})
	ctx := context.Background()
	for _, n := range []registry.Node{
		// Nowhere to connect: left out.
		{ID: "n0", Role: registry.RoleCloud, Weight: 10},
		// Same host as n1, other ports, WS already a URL.
		{ID: "n3", Role: registry.RoleCloud, Addrs: []registry.Addr{{TCP: "10.0.0.1:4101", WS: "ws://10.0.0.1:4102/sub"}}, Weight: 10, Conns: 0},
	} {
		if err := e.reg.Register(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	// n1 5 conns, n2 3, n3 0 (equal weights): the emptiest first.
	want := `{"domain":"conn.example.com","tcp_port":4101,"ws_port":4102,"wss_port":0,"heartbeat":120,` +
		`"nodes":["10.0.0.1","10.0.0.2","10.0.0.1"],"backoff":{"max_delay":300,"base_delay":3,"factor":1.8,"jitter":0.3},"heartbeat_max":2,` +
		`"addrs":[{"tcp":"10.0.0.1:4101","ws":"ws://10.0.0.1:4102/sub"},{"tcp":"10.0.0.2:3101","ws":"ws://10.0.0.2:3102/sub"},{"tcp":"10.0.0.1:3101","ws":"ws://10.0.0.1:3102/sub"}]}`
	for _, target := range []string{"/goim/nodes/weighted?platform=web", "/im/nodes/weighted"} {
		a := e.do(http.MethodGet, target, "", nil)
		if string(a.Data) != want {
			t.Errorf("%s:\n got %s\nwant %s", target, a.Data, want)
		}
	}
	// Defaults: 240 s heartbeat, no domain, no nodes.
	e = newEnv(t, envOpts{})
	for _, n := range liveNodes {
		_ = e.reg.Deregister(ctx, registry.RoleCloud, n.ID)
	}
	want = `{"domain":"","tcp_port":0,"ws_port":0,"wss_port":0,"heartbeat":240,"nodes":[],` +
		`"backoff":{"max_delay":300,"base_delay":3,"factor":1.8,"jitter":0.3},"heartbeat_max":2,"addrs":[]}`
	if a := e.do(http.MethodGet, "/goim/nodes/weighted", "", nil); string(a.Data) != want {
		t.Errorf("no nodes:\n got %s\nwant %s", a.Data, want)
	}
}

func node(id string, weight int, conns int64) registry.Node {
	return registry.Node{ID: id, Role: registry.RoleCloud, Weight: weight, Conns: conns,
		Addrs: []registry.Addr{{TCP: id + ":3101"}}}
}

func ids(nodes []registry.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return out
}

// TestWeightedOrder with a pinned random source (0.5): nodes with headroom
// by headroom, then the others.
func TestWeightedOrder(t *testing.T) {
	tests := []struct {
		name  string
		nodes []registry.Node
		want  []string
	}{
		{"least loaded first", []registry.Node{node("a", 10, 100), node("b", 10, 0), node("c", 10, 50)}, []string{"b", "c", "a"}},
		{"weight counts", []registry.Node{node("a", 20, 100), node("b", 10, 50)}, []string{"a", "b"}},
		{"heavier node takes more", []registry.Node{node("a", 30, 60), node("b", 10, 30)}, []string{"a", "b"}},
		{"empty cluster: by weight, then id", []registry.Node{node("b", 10, 0), node("a", 10, 0), node("c", 20, 0)}, []string{"c", "a", "b"}},
		{"weight 0 drains: last", []registry.Node{node("a", 0, 0), node("b", 10, 500), node("c", 10, 400)}, []string{"c", "b", "a"}},
		{"all weights 0: equal", []registry.Node{node("a", 0, 10), node("b", 0, 2)}, []string{"b", "a"}},
		{"negative weight and conns are 0", []registry.Node{node("a", -5, -3), node("b", 10, 1)}, []string{"b", "a"}},
		{"no addrs left out", []registry.Node{{ID: "x", Weight: 100}, node("a", 10, 5)}, []string{"a"}},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			if got := ids(e.l.weightedOrder(tt.nodes)); !slices.Equal(got, tt.want) {
				t.Errorf("order %v, want %v", got, tt.want)
			}
		})
	}
}

// TestWeightedSpread: with a real random source, a node's chance of coming
// first is proportional to its headroom, so a burst of clients spreads over
// the under-loaded nodes and none goes to an over-loaded one.
func TestWeightedSpread(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := rand.New(rand.NewPCG(1, 2))
	e.l.rand = r.Float64
	// 300 conns, horizon 330, fair share 110 each: headroom a 10, b 30,
	// c none (over its share).
	nodes := []registry.Node{node("a", 10, 100), node("b", 10, 80), node("c", 10, 120)}
	first := map[string]int{}
	const rounds = 20000
	for range rounds {
		order := e.l.weightedOrder(nodes)
		first[order[0].ID]++
		if order[2].ID != "c" {
			t.Fatalf("over-loaded node not last: %v", ids(order))
		}
	}
	if first["c"] != 0 {
		t.Errorf("over-loaded node first %d times", first["c"])
	}
	if got := float64(first["b"]) / rounds; got < 0.72 || got > 0.78 {
		t.Errorf("b first in %.3f of the rounds, want about 0.75", got)
	}
}

func TestClientAddr(t *testing.T) {
	tests := []struct {
		in        registry.Addr
		ws        string
		host      string
		tcp       int
		wsP, wssP int
	}{
		{registry.Addr{TCP: "h:1", WS: "h:2"}, "ws://h:2/sub", "h", 1, 2, 0},
		{registry.Addr{WS: "wss://secure.example.com/sub"}, "wss://secure.example.com/sub", "secure.example.com", 0, 0, 443},
		{registry.Addr{WS: "ws://[::1]:3102/sub"}, "ws://[::1]:3102/sub", "::1", 0, 3102, 0},
		{registry.Addr{TCP: "[::1]:3101"}, "", "::1", 3101, 0, 0},
		{registry.Addr{WS: "ws://plain/sub"}, "ws://plain/sub", "plain", 0, 80, 0},
	}
	for _, tt := range tests {
		a := clientAddr(tt.in)
		wsP, wssP := wsPorts(a.WS)
		if a.WS != tt.ws || addrHost(a) != tt.host || tcpPort(a.TCP) != tt.tcp || wsP != tt.wsP || wssP != tt.wssP {
			t.Errorf("%+v: ws %q host %q tcp %d ws %d wss %d", tt.in, a.WS, addrHost(a), tcpPort(a.TCP), wsP, wssP)
		}
	}
}
