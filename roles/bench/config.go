package bench

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/imcloud/imcloud/protocol"
)

// Modes: what the clients authenticate as.
const (
	ModeRoom = "room" // client i joins room live://bench-<i mod K> (and is mid MidOffset+i)
	ModeMid  = "mid"  // client i is user MidOffset+i, in no room
)

// Push kinds.
const (
	PushRoom = "room"
	PushMid  = "mid"
	PushAll  = "all"
	PushNone = "none"
)

// RoomType and RoomPrefix name the bench rooms: room k is
// RoomType://RoomPrefix<k>, pushed as type=RoomType&room=RoomPrefix<k>.
const (
	RoomType   = "live"
	RoomPrefix = "bench-"
)

// maxPushes bounds rate x duration: every process keeps a 4-byte delivery
// counter per push.
const maxPushes = 50_000_000

// Config is one bench run. The zero value is not usable: start from Default.
type Config struct {
	Network string // "tcp" or "ws"
	TCPAddr string // host:port; a comma-separated list spreads client i over entry i mod n
	WSURL   string // ws://host:port/path; a list like TCPAddr
	HTTP    string // REST base URL, http://host:port

	Conns              int
	ConnectRate        float64 // connections/s over all processes; 0 = as fast as ConnectConcurrency allows
	ConnectConcurrency int     // dials + auths in flight, over all processes
	MaxConnectFailures int     // stop (and abort the run) after this many failures; 0 = never; <0 = 5% of Conns (at least 10)
	SourceIPs          []string
	PerProcess         int // connections one process holds; above it, worker processes hold them all

	Mode      string
	Rooms     int
	MidOffset int64
	Op        int32
	Accepts   []int32

	Push      string
	Rate      float64 // pushes/s
	Speed     int     // broadcasts: the speed parameter (sessions/s over the cluster); 0 = none
	Duration  time.Duration
	Size      int
	Grace     time.Duration
	HTTPConns int
	Settle    time.Duration

	Heartbeat time.Duration
	Timeout   time.Duration

	ServerPIDs []int

	// Exe is the binary started for worker processes (with the arguments
	// "bench worker"); empty means os.Executable().
	Exe string
	// Progress is the interval of the live line; 0 turns it off.
	Progress time.Duration
}

// Default returns the defaults the command line documents.
func Default() Config {
	return Config{
		Network:            "tcp",
		TCPAddr:            "127.0.0.1:3101",
		WSURL:              "ws://127.0.0.1:3102/sub",
		HTTP:               "http://127.0.0.1:3111",
		Conns:              1000,
		ConnectConcurrency: 256,
		MaxConnectFailures: -1,
		PerProcess:         19000,
		Mode:               ModeRoom,
		Rooms:              1,
		MidOffset:          1,
		Op:                 1000,
		Rate:               10,
		Duration:           10 * time.Second,
		Size:               100,
		Grace:              5 * time.Second,
		HTTPConns:          8,
		Settle:             time.Second,
		Heartbeat:          30 * time.Second,
		Timeout:            10 * time.Second,
		Progress:           time.Second,
	}
}

// Validate checks c and fills in what derives from other fields: Push
// defaults to the mode's kind, Accepts to [Op], SourceIPs to
// 127.0.0.2..127.0.0.9 for a loopback target (nil otherwise: the kernel picks).
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, a ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, a...)))
	}
	switch c.Network {
	case "tcp":
		if _, err := c.targets(); err != nil {
			bad("tcp-addr", "%v", err)
		}
	case "ws":
		if _, err := c.targets(); err != nil {
			bad("ws-url", "%v", err)
		}
	default:
		bad("network", "want tcp or ws, got %q", c.Network)
	}
	if c.Conns < 1 {
		bad("conns", "must be at least 1")
	}
	if !(c.ConnectRate >= 0) {
		bad("connect-rate", "must not be negative")
	}
	if c.ConnectConcurrency < 1 {
		bad("connect-concurrency", "must be at least 1")
	}
	if c.MaxConnectFailures < 0 {
		c.MaxConnectFailures = max(10, c.Conns/20)
	}
	if c.PerProcess < 1 {
		bad("per-process", "must be at least 1")
	}
	switch c.Mode {
	case ModeRoom:
		if c.Rooms < 1 {
			bad("rooms", "must be at least 1 in room mode")
		}
	case ModeMid:
	default:
		bad("mode", "want room or mid, got %q", c.Mode)
	}
	if c.MidOffset < 1 || c.MidOffset+int64(c.Conns) > 1<<32 {
		bad("mid-offset", "mids (offset + client index) must be in [1, 2^32): mid 0 is an anonymous connection")
	}
	if c.Op < protocol.MinBusinessOp {
		bad("op", "must be >= %d (a business op)", protocol.MinBusinessOp)
	}
	if len(c.Accepts) == 0 {
		c.Accepts = []int32{c.Op}
	} else if c.Push == PushMid || c.Push == PushAll || (c.Push == "" && c.Mode == ModeMid) {
		// Mid pushes and broadcasts reach only sessions that accept their
		// op: the run would report as lost what the clients declined.
		if !slices.Contains(c.Accepts, c.Op) {
			bad("accepts", "does not include --op %d, which mid pushes and broadcasts are filtered by", c.Op)
		}
	}
	if c.Push == "" {
		c.Push = c.Mode
		if c.Mode != ModeRoom && c.Mode != ModeMid {
			// --mode is refused above; a --push the user never gave
			// is not a second error.
			c.Push = PushNone
		}
	}
	switch c.Push {
	case PushRoom:
		if c.Mode != ModeRoom {
			bad("push", "room pushes need --mode room")
		}
	case PushMid, PushAll, PushNone:
	default:
		bad("push", "want room, mid, all or none, got %q", c.Push)
	}
	switch {
	case c.Speed < 0:
		bad("speed", "must be >= 0")
	case c.Speed > 0 && c.Push != PushAll:
		bad("speed", "paces broadcasts only (--push all)")
	}
	if c.Push != PushNone {
		if !(c.Rate > 0) || math.IsInf(c.Rate, 0) {
			bad("rate", "must be a finite number > 0 (or use --push none)")
		}
		if u, err := url.Parse(c.HTTP); err != nil || u.Scheme != "http" || u.Host == "" || u.RawQuery != "" {
			bad("http", "want http://host:port (https is not supported), got %q", c.HTTP)
		}
		if c.HTTPConns < 1 {
			bad("http-conns", "must be at least 1")
		}
		if c.pushCount() > maxPushes {
			bad("rate", "rate x duration is more than %d pushes", maxPushes)
		}
	}
	if c.Duration <= 0 {
		bad("duration", "must be > 0")
	}
	if c.Size < stampLen {
		bad("size", "must be at least %d (the stamp)", stampLen)
	} else if c.Size > 1<<20 {
		bad("size", "must be at most 1 MiB")
	}
	if c.Grace < 0 || c.Settle < 0 || c.Heartbeat < 0 {
		bad("grace/settle/heartbeat", "must not be negative")
	}
	if c.Timeout <= 0 {
		bad("timeout", "must be > 0")
	}
	for _, p := range c.ServerPIDs {
		if p <= 0 {
			bad("server-pids", "bad pid %d", p)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if c.SourceIPs == nil && c.targetIsLoopback() {
		for i := 2; i <= 9; i++ {
			c.SourceIPs = append(c.SourceIPs, fmt.Sprintf("127.0.0.%d", i))
		}
	}
	for _, s := range c.SourceIPs {
		if net.ParseIP(s) == nil {
			return fmt.Errorf("--source-ips: %q is not an IP address", s)
		}
	}
	return nil
}

// pushCount is the number of pushes scheduled: Rate x Duration, at least 1.
func (c *Config) pushCount() int64 {
	if c.Push == PushNone {
		return 0
	}
	// Rounded: 4.1/s for 30 s is 123 pushes, though the product in
	// floating point is 122.99999.
	return max(1, int64(math.Round(c.Rate*c.Duration.Seconds())))
}

// targets parses --tcp-addr or --ws-url (by Network): one entry per
// comma-separated element, client i going to entry i mod len.
func (c *Config) targets() ([]wsTarget, error) {
	list := c.TCPAddr
	if c.Network == "ws" {
		list = c.WSURL
	}
	var ts []wsTarget
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if c.Network != "ws" {
			if _, _, err := net.SplitHostPort(s); err != nil {
				return nil, err
			}
			ts = append(ts, wsTarget{hostPort: s})
			continue
		}
		u, err := parseWSURL(s)
		if err != nil {
			return nil, err
		}
		ts = append(ts, wsTarget{hostPort: u.Host, host: u.Host, path: u.RequestURI()})
	}
	if len(ts) == 0 {
		return nil, errors.New("no address given")
	}
	return ts, nil
}

// targetIsLoopback reports whether every target is an IPv4 loopback address,
// so that the 127.0.0.x source addresses can reach it.
func (c *Config) targetIsLoopback() bool {
	ts, err := c.targets()
	if err != nil {
		return false
	}
	for _, t := range ts {
		host, _, err := net.SplitHostPort(t.hostPort)
		if err != nil {
			return false
		}
		if host == "localhost" {
			continue
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			return false
		}
	}
	return true
}

func parseWSURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "ws" {
		return nil, fmt.Errorf("want ws://host:port/path, got %q (wss is not supported)", s)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "80")
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// roomOf is client i's room index in room mode.
func (c *Config) roomOf(i int) int { return i % c.Rooms }

// midOf is client i's user id.
func (c *Config) midOf(i int) int64 { return c.MidOffset + int64(i) }

// roomID is the id of room k as clients send it.
func roomID(k int) string { return fmt.Sprintf("%s://%s%d", RoomType, RoomPrefix, k) }
