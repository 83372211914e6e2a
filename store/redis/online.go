package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/imcloud/imcloud/store"
)

// Both scripts use the Redis server's clock (TIME), so clock skew between
// the hosts that report and read does not matter.
var (
	// reportScript stores one node's report under KEYS[1] =
	// <prefix>online:<node> for ARGV[3] ms and scores the node in the index
	// KEYS[2] = <prefix>online-nodes by the report's expiry (unix ms).
	// ARGV = report JSON, node, ttl in ms.
	reportScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
return 1
`)

	// allOnlineScript drops expired nodes from the index KEYS[1] and returns
	// node, report pairs of the live ones; ARGV[1] = <prefix>online:.
	allOnlineScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local nodes = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local out = {}
for _, node in ipairs(nodes) do
  local r = redis.call('GET', ARGV[1] .. node)
  if r then
    out[#out + 1] = node
    out[#out + 1] = r
  else
    redis.call('ZREM', KEYS[1], node)
  end
end
return out
`)
)

// onlineReport is the JSON stored under online:<node>.
type onlineReport struct {
	Conns int64            `json:"conns"`
	IPs   int64            `json:"ips"`
	Rooms map[string]int32 `json:"rooms,omitempty"`
}

// ReportOnline replaces r.Node's report; it expires after ttl (kept to the
// millisecond) unless renewed.
func (s *Store) ReportOnline(ctx context.Context, r store.NodeOnline, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/redis: report online %s: %w", r.Node, err)
	}
	if r.Node == "" {
		return errors.New("store/redis: report online: report needs a node")
	}
	if ttl <= 0 {
		return fmt.Errorf("store/redis: report online %s: ttl %v is not positive", r.Node, ttl)
	}
	body, err := json.Marshal(onlineReport{Conns: r.Conns, IPs: r.IPs, Rooms: r.Rooms})
	if err != nil {
		return fmt.Errorf("store/redis: report online %s: %w", r.Node, err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	keys := []string{s.onlinePrefix + r.Node, s.onlineNodes}
	if err := reportScript.Run(ctx, s.client, keys, body, r.Node, max(ttl.Milliseconds(), 1)).Err(); err != nil {
		return s.fail(ctx, "report online "+r.Node, err)
	}
	return nil
}

// AllOnline returns every unexpired report, sorted by node. It is one script
// call, which also forgets expired nodes.
func (s *Store) AllOnline(ctx context.Context) ([]store.NodeOnline, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store/redis: all online: %w", err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	res, err := allOnlineScript.Run(ctx, s.client, []string{s.onlineNodes}, s.onlinePrefix).StringSlice()
	if err != nil {
		return nil, s.fail(ctx, "all online", err)
	}
	out := make([]store.NodeOnline, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		var rep onlineReport
		if err := json.Unmarshal([]byte(res[i+1]), &rep); err != nil {
			return nil, fmt.Errorf("store/redis: all online: report of %s: %w", res[i], err)
		}
		out = append(out, store.NodeOnline{Node: res[i], Conns: rep.Conns, IPs: rep.IPs, Rooms: rep.Rooms})
	}
	slices.SortFunc(out, func(a, b store.NodeOnline) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}
