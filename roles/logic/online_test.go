package logic

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestOnline(t *testing.T) {
	tests := []struct {
		name   string
		target string
		status int
		want   string // data, or the error message
	}{
		{"goim top", "/goim/online/top?type=live&limit=10", 200, `[{"room_id":"2","count":9},{"room_id":"3","count":9},{"room_id":"1000","count":7}]`},
		{"im top limited", "/im/online/top?type=live&limit=2", 200, `[{"room_id":"2","count":9},{"room_id":"3","count":9}]`},
		{"top of a type with no rooms", "/goim/online/top?type=none&limit=5", 200, `[]`},
		{"top of a type that prefixes another", "/goim/online/top?type=tes&limit=5", 200, `[]`},
		{"top missing type", "/goim/online/top?limit=5", 400, "type: required"},
		{"top missing limit", "/goim/online/top?type=live", 400, "limit: required (an integer from 1 to 1000)"},
		{"top limit 0", "/im/online/top?type=live&limit=0", 400, `limit: must be an integer from 1 to 1000, got "0"`},
		{"top limit 1001", "/im/online/top?type=live&limit=1001", 400, `limit: must be an integer from 1 to 1000, got "1001"`},
		{"top limit bad", "/im/online/top?type=live&limit=ten", 400, `limit: must be an integer from 1 to 1000, got "ten"`},
		{"goim room", "/goim/online/room?type=live&rooms=1000&rooms=2", 200, `{"1000":7,"2":9}`},
		{"im room unknown is 0", "/im/online/room?type=live&rooms=1000,nope", 200, `{"1000":7,"nope":0}`},
		{"room php style, dupes", "/goim/online/room?type=test&rooms[]=1&rooms[]=1", 200, `{"1":4}`},
		{"room missing rooms", "/goim/online/room?type=live", 400, "rooms: at least one is required"},
		{"room missing type", "/goim/online/room?rooms=1", 400, "type: required"},
		{"top type not UTF-8", "/goim/online/top?type=%FF&limit=5", 400, "type: room id is not UTF-8 (or holds U+FFFD)"},
		{"room not UTF-8", "/goim/online/room?type=live&rooms=ok,%FF%FE", 400, `type and rooms: "\xff\xfe": room id is not UTF-8 (or holds U+FFFD)`},
		{"room too many", "/goim/online/room?type=live&rooms=1,2,3,4", 400, "rooms: at most 3 distinct values allowed per request"},
		{"room malformed query", "/goim/online/room?type=live&rooms=1%2", 400, `query string: invalid URL escape "%2"`},
		{"goim total", "/goim/online/total", 200, `{"conn_count":20,"ip_count":3}`},
		{"im total", "/im/online/total", 200, `{"conn_count":20,"ip_count":3}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{cfg: Config{MaxIDs: 3}})
			a := e.do(http.MethodGet, tt.target, "", nil)
			if a.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.Status, tt.status, a.Body)
			}
			got := string(a.Data)
			if tt.status != http.StatusOK {
				got = a.Message
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestOnlineTopMax: limit caps a long list, ties ordered by room id.
func TestOnlineTopMax(t *testing.T) {
	e := newEnv(t, envOpts{})
	rooms := map[string]int32{}
	for i := range 1500 {
		rooms[fmt.Sprintf("big://%04d", i)] = int32(i % 10)
	}
	e.online.snap.Rooms = rooms
	a := e.do(http.MethodGet, "/goim/online/top?type=big&limit=1000", "", nil)
	if a.Status != http.StatusOK {
		t.Fatalf("%d %s", a.Status, a.Body)
	}
	// 1350 rooms have a count > 0 (i%10 != 0); 1000 are answered, the 150
	// with count 9 first.
	if n := strings.Count(string(a.Data), `"room_id"`); n != 1000 {
		t.Errorf("%d rooms, want 1000", n)
	}
	if !strings.HasPrefix(string(a.Data), `[{"room_id":"0009","count":9},{"room_id":"0019","count":9}`) {
		t.Errorf("first entry: %.60s", a.Data)
	}
}
