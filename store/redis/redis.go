package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/imcloud/imcloud/store"
)

// Defaults for the zero values of Config.
const (
	DefaultPrefix  = "imcloud:"
	DefaultTTL     = 20 * time.Minute
	DefaultTimeout = time.Second // DialTimeout, ReadTimeout and WriteTimeout
)

// Config configures a Store. Zero values mean the defaults; negative values
// are errors.
type Config struct {
	Addr     string // host:port of the Redis server; required
	Password string
	Prefix   string // prepended to every key; default DefaultPrefix
	DB       int

	// TTL is how long a binding lives after its last Bind or Refresh;
	// default DefaultTTL. Redis keeps it to the millisecond.
	TTL time.Duration

	// Timeouts of one connection attempt, one request write and one reply
	// read; default DefaultTimeout each. No call takes longer than their
	// sum, whatever its context.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration

	// PoolSize is the number of pooled connections; default go-redis's
	// (10 per GOMAXPROCS).
	PoolSize int
}

// Store is the Redis session store; see the package documentation.
type Store struct {
	client    *goredis.Client
	ttl       time.Duration
	ttlMillis int64
	opTimeout time.Duration

	prefix       string
	keyPrefix    string // <prefix>key:
	midPrefix    string // <prefix>mid:
	onlinePrefix string // <prefix>online:
	onlineNodes  string // <prefix>online-nodes
}

var (
	_ store.Sessions = (*Store)(nil)
	_ store.Online   = (*Store)(nil)
)

// New validates cfg and returns a Store. It does not touch the network:
// connections are made on first use, so New succeeds while Redis is down and
// the first calls then fail with store.ErrUnavailable (use Ping to check).
func New(cfg Config) (*Store, error) {
	if cfg.Addr == "" {
		return nil, errors.New("store/redis: config: addr is empty")
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"ttl", cfg.TTL}, {"dial_timeout", cfg.DialTimeout}, {"read_timeout", cfg.ReadTimeout}, {"write_timeout", cfg.WriteTimeout}} {
		if f.v < 0 {
			return nil, fmt.Errorf("store/redis: config: %s %v is negative", f.name, f.v)
		}
	}
	if cfg.DB < 0 {
		return nil, fmt.Errorf("store/redis: config: db %d is negative", cfg.DB)
	}
	if cfg.PoolSize < 0 {
		return nil, fmt.Errorf("store/redis: config: pool_size %d is negative", cfg.PoolSize)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	cfg.DialTimeout = orDefault(cfg.DialTimeout)
	cfg.ReadTimeout = orDefault(cfg.ReadTimeout)
	cfg.WriteTimeout = orDefault(cfg.WriteTimeout)

	client := goredis.NewClient(&goredis.Options{
		Addr:         cfg.Addr,
		Password:     cfg.Password,
		DB:           cfg.DB,
		Protocol:     2, // plain RESP2: no push notifications to process
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout,
		PoolSize:     cfg.PoolSize,
		// Respect the caller's deadline on the socket as well.
		ContextTimeoutEnabled: true,
		// One dial attempt and no command retries, so a call against a dead
		// server fails within its timeouts; callers (heartbeats, REST
		// clients) retry. After PoolSize failed dials go-redis fails fast
		// and redials in the background until Redis is back.
		DialerRetries:   1,
		MaxRetries:      -1,
		DisableIdentity: true, // no CLIENT SETINFO round trip per connection
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	return &Store{
		client:       client,
		ttl:          cfg.TTL,
		ttlMillis:    max(cfg.TTL.Milliseconds(), 1),
		opTimeout:    cfg.DialTimeout + cfg.WriteTimeout + cfg.ReadTimeout,
		prefix:       cfg.Prefix,
		keyPrefix:    cfg.Prefix + "key:",
		midPrefix:    cfg.Prefix + "mid:",
		onlinePrefix: cfg.Prefix + "online:",
		onlineNodes:  cfg.Prefix + "online-nodes",
	}, nil
}

func orDefault(d time.Duration) time.Duration {
	if d == 0 {
		return DefaultTimeout
	}
	return d
}

// Close closes the connection pool. Calls after Close fail with
// store.ErrUnavailable; a second Close returns an error.
func (s *Store) Close() error {
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("store/redis: close: %w", err)
	}
	return nil
}

// PoolStats are the connection pool's figures since New.
type PoolStats struct {
	Hits, Misses int64 // calls that found an idle connection / had to dial or wait
	Timeouts     int64 // calls that gave up waiting for a free connection
	Waits        int64 // calls that waited for a free connection
	TotalConns   int64 // connections open now
	IdleConns    int64 // of which idle
}

// PoolStats returns the connection pool's figures.
func (s *Store) PoolStats() PoolStats {
	p := s.client.PoolStats()
	return PoolStats{
		Hits: int64(p.Hits), Misses: int64(p.Misses), Timeouts: int64(p.Timeouts), Waits: int64(p.WaitCount),
		TotalConns: int64(p.TotalConns), IdleConns: int64(p.IdleConns),
	}
}

// Ping checks that Redis answers. Like every method's, its error wraps
// store.ErrUnavailable unless the caller cancelled ctx.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/redis: ping: %w", err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// opContext bounds one call by the sum of the timeouts, so nothing waits
// longer (for a pooled connection, a dial, a write and a read) whatever the
// caller's context.
func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// fail wraps err, from Redis or go-redis during a call with context ctx, so
// that it matches store.ErrUnavailable and still the original error, and
// ctx's error if ctx ended meanwhile (go-redis may report only the socket
// timeout). Only the caller's own cancellation is not a backend failure.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	cerr := ctx.Err()
	if d, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(d) {
		cerr = context.DeadlineExceeded // the socket deadline beat ctx's timer
	}
	if cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w: %w", cerr, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("store/redis: %s: %w", op, err)
	}
	return fmt.Errorf("%w: store/redis: %s: %w", store.ErrUnavailable, op, err)
}

// keyKey returns the Redis key of the binding of session key k.
func (s *Store) keyKey(k string) string { return s.keyPrefix + k }

// midKey returns the Redis key of mid's hash.
func (s *Store) midKey(mid int64) string {
	var buf [64]byte
	b := append(buf[:0], s.midPrefix...)
	return string(strconv.AppendInt(b, mid, 10))
}
