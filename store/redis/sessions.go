package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/imcloud/imcloud/store"
)

// The key binding's value is "<mid>@<node>": the node the key is on and the
// user it belongs to, so a Bind that gives the key to another user can take
// it out of the previous user's hash. The mid comes first and is digits, so
// the first '@' ends it whatever the node id holds.
//
// Scripts take KEYS[1] = <prefix>key:<key>, KEYS[2] = <prefix>mid:<mid> and
// ARGV = node, key, ttl in ms, <prefix>key:, mid, <prefix>mid:, and "1" if
// the mid is a user's (store.Identified; "0": anonymous, no mid binding).
const scriptLua = `
local value = ARGV[5] .. '@' .. ARGV[1]
local withMid = ARGV[7] == '1'

-- prune samples up to 8 fields of the mid hash and deletes those whose key
-- binding is gone or is no longer this mid's on that node. The hash has one
-- TTL for all its fields, so while one device keeps refreshing it a field
-- whose key expired would otherwise stay; every Bind and Refresh of the mid
-- cleans a sample, so stale fields do not pile up.
local function prune()
  local sample = redis.call('HRANDFIELD', KEYS[2], 8, 'WITHVALUES')
  for i = 1, #sample, 2 do
    local f = sample[i]
    if f ~= ARGV[2] and redis.call('GET', ARGV[4] .. f) ~= ARGV[5] .. '@' .. sample[i + 1] then
      redis.call('HDEL', KEYS[2], f)
    end
  end
end
`

var (
	// bindScript writes both bindings together; a key that was another
	// mid's leaves that mid's hash (if the field still names the node the
	// key was on).
	bindScript = goredis.NewScript(scriptLua + `
local old = redis.call('GET', KEYS[1])
if old and old ~= value then
  local at = string.find(old, '@', 1, true)
  if at and string.sub(old, 1, at - 1) ~= ARGV[5] then
    local prev = ARGV[6] .. string.sub(old, 1, at - 1)
    if redis.call('HGET', prev, ARGV[2]) == string.sub(old, at + 1) then
      redis.call('HDEL', prev, ARGV[2])
    end
  end
end
redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
if withMid then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  prune()
end
return 1
`)

	// refreshScript renews each binding that is the session's and re-creates
	// each one that is missing; it never takes a key another node or mid
	// holds, and answers 0 for one. A mid field whose key binding is gone is
	// stale (the two are written and deleted together) and is re-bound too.
	refreshScript = goredis.NewScript(scriptLua + `
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= value then
  return 0
end
redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
if withMid then
  local owner = redis.call('HGET', KEYS[2], ARGV[2])
  if (not owner) or owner == ARGV[1] or (not cur) then
    redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
  end
  prune()
end
return 1
`)

	// unbindScript is compare-and-delete: each binding goes only if it is
	// still the session's. It returns 1 if the key binding went.
	unbindScript = goredis.NewScript(scriptLua + `
local removed = 0
if redis.call('GET', KEYS[1]) == value then
  redis.call('DEL', KEYS[1])
  removed = 1
end
if withMid and redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return removed
`)
)

// Bind records sess (mid -> key -> node and key -> node) for the store's
// TTL in one script, replacing whatever the key was bound to.
func (s *Store) Bind(ctx context.Context, sess store.Session) error {
	_, err := s.runSession(ctx, "bind", bindScript, sess)
	return err
}

// Refresh renews sess's bindings for the store's TTL where they point at
// sess.Node, and re-binds them where they are missing (expired). A key
// another node holds is left alone: store.ErrMoved.
func (s *Store) Refresh(ctx context.Context, sess store.Session) error {
	n, err := s.runSession(ctx, "refresh", refreshScript, sess)
	if err == nil && n == 0 {
		return fmt.Errorf("store/redis: refresh %q on %s: %w", sess.Key, sess.Node, store.ErrMoved)
	}
	return err
}

// Unbind removes sess's bindings where they still point at sess.Node and
// reports whether the key binding was removed.
func (s *Store) Unbind(ctx context.Context, sess store.Session) (bool, error) {
	n, err := s.runSession(ctx, "unbind", unbindScript, sess)
	return n == 1, err
}

// UnbindMany is Unbind for each of ss in one pipelined round trip: a mass
// disconnect (thousands of sessions closing within a second) then costs
// Redis a few round trips instead of one per session, which the client's
// connection pool could not keep up with.
func (s *Store) UnbindMany(ctx context.Context, ss []store.Session) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/redis: unbind %d sessions: %w", len(ss), err)
	}
	for _, sess := range ss {
		if sess.Key == "" || sess.Node == "" {
			return fmt.Errorf("store/redis: unbind: session of mid %d needs a key and a node", sess.Mid)
		}
	}
	if len(ss) == 0 {
		return nil
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	run := func(eval bool) error {
		pipe := s.client.Pipeline()
		for _, sess := range ss {
			keys, args := s.scriptArgs(sess)
			if eval {
				unbindScript.Eval(ctx, pipe, keys, args...)
			} else {
				unbindScript.EvalSha(ctx, pipe, keys, args...)
			}
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	err := run(false)
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		err = run(true) // Redis lost its script cache (a restart)
	}
	if err != nil {
		return s.fail(ctx, fmt.Sprintf("unbind %d sessions", len(ss)), err)
	}
	return nil
}

// runSession validates sess and runs script on its two keys (EVALSHA, EVAL
// when Redis lost the script cache).
func (s *Store) runSession(ctx context.Context, op string, script *goredis.Script, sess store.Session) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("store/redis: %s %q: %w", op, sess.Key, err)
	}
	if sess.Key == "" || sess.Node == "" {
		return 0, fmt.Errorf("store/redis: %s: session of mid %d needs a key and a node", op, sess.Mid)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	keys, args := s.scriptArgs(sess)
	n, err := script.Run(ctx, s.client, keys, args...).Int64()
	if err != nil {
		return 0, s.fail(ctx, fmt.Sprintf("%s %q", op, sess.Key), err)
	}
	return n, nil
}

// scriptArgs returns the KEYS and ARGV of the session scripts for sess.
func (s *Store) scriptArgs(sess store.Session) ([]string, []any) {
	withMid := "0"
	if store.Identified(sess.Mid) {
		withMid = "1"
	}
	return []string{s.keyKey(sess.Key), s.midKey(sess.Mid)},
		[]any{sess.Node, sess.Key, s.ttlMillis, s.keyPrefix, strconv.FormatInt(sess.Mid, 10), s.midPrefix, withMid}
}

// KeysByMids returns, per mid, its keys and their nodes; mids without any
// are absent. It reads every mid's hash in one pipelined round trip.
func (s *Store) KeysByMids(ctx context.Context, mids []int64) (map[int64]map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store/redis: keys by mids: %w", err)
	}
	out := make(map[int64]map[string]string, len(mids))
	if len(mids) == 0 {
		return out, nil
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	pipe := s.client.Pipeline()
	cmds := make([]*goredis.MapStringStringCmd, len(mids))
	for i, mid := range mids {
		cmds[i] = pipe.HGetAll(ctx, s.midKey(mid))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.fail(ctx, fmt.Sprintf("keys by mids (%d mids)", len(mids)), err)
	}
	for i, cmd := range cmds {
		if keys := cmd.Val(); len(keys) > 0 {
			out[mids[i]] = keys
		}
	}
	return out, nil
}

// NodesByKeys returns the node of each bound key; others are absent. It is
// one MGET.
func (s *Store) NodesByKeys(ctx context.Context, keys []string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store/redis: nodes by keys: %w", err)
	}
	out := make(map[string]string, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	rkeys := make([]string, len(keys))
	for i, k := range keys {
		rkeys[i] = s.keyKey(k)
	}
	vals, err := s.client.MGet(ctx, rkeys...).Result()
	if err != nil {
		return nil, s.fail(ctx, fmt.Sprintf("nodes by keys (%d keys)", len(keys)), err)
	}
	for i, v := range vals {
		if value, ok := v.(string); ok && i < len(keys) {
			out[keys[i]] = nodeOf(value)
		}
	}
	return out, nil
}

// nodeOf returns the node of a key binding's value, "<mid>@<node>".
func nodeOf(value string) string {
	if _, node, ok := strings.Cut(value, "@"); ok {
		return node
	}
	return value
}
