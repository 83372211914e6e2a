package roles

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/imcloud/imcloud/queue/kafka"
	"github.com/imcloud/imcloud/transport/http1"
)

// EnvPrefix starts every environment variable that overrides a key:
// IMCLOUD_ + the key path upper-cased, joined by "_" (cloud.tcp_addr is
// IMCLOUD_CLOUD_TCP_ADDR).
const EnvPrefix = "IMCLOUD_"

// Roles accepted by Validate.
var validRoles = []string{"all", "cloud", "job", "logic", "client", "bench"}

var durationType = reflect.TypeFor[time.Duration]()

// Load returns Default() overridden by the YAML file at path (if path is not
// empty) and then by the IMCLOUD_* variables in env (os.Environ() format,
// "K=V"). A missing file, an unknown key, an unknown IMCLOUD_ variable and a
// value of the wrong type are errors that name the key; all of them are
// reported at once. Load does not check ranges or backends: call Validate.
//
// In the file, durations are Go duration strings ("8s", "5ms", "0"), lists
// are YAML sequences, and a section left empty ("cloud:") keeps its defaults
// while a key left empty ("advertise_addr:") is set to its zero value.
// In env, lists are comma-separated.
func Load(path string, env []string) (Config, error) {
	cfg := Default()
	var fileErr error
	if path != "" {
		fileErr = loadFile(path, &cfg)
	}
	if err := errors.Join(fileErr, applyEnv(env, &cfg)); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func loadFile(path string, cfg *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()

	// KnownFields has no effect when decoding into a yaml.Node; the walk in
	// decodeInto rejects unknown keys itself so that it can name the full
	// dotted path (yaml.v3 only names the field and the Go type).
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // empty file, or comments only
			return nil
		}
		return fmt.Errorf("config: %s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return fmt.Errorf("config: %s: %w", path, err)
		}
		return fmt.Errorf("config: %s line %d: more than one YAML document", path, extra.Line)
	}

	d := fileDecoder{path: path}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = root.Content[0]
	}
	d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	return errors.Join(d.errs...)
}

// fileDecoder walks a YAML node tree alongside a struct, collecting every
// problem with its dotted key path and line.
type fileDecoder struct {
	path string
	errs []error
}

func (d *fileDecoder) fail(n *yaml.Node, key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	d.errs = append(d.errs, fmt.Errorf("config: %s (%s line %d)", msg, d.path, n.Line))
}

func (d *fileDecoder) decode(n *yaml.Node, v reflect.Value, key string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if v.Kind() == reflect.Struct {
		d.decodeStruct(n, v, key)
		return
	}
	if isNull(n) {
		v.SetZero()
		return
	}
	t := v.Type()
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, key, "want a duration such as \"8s\", got %s", kindName(n))
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.fail(n, key, "invalid duration %q (use a Go duration such as \"8s\", \"5ms\", \"2m\")", n.Value)
			return
		}
		v.SetInt(int64(dur))
	case t.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, key, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case isInt(t.Kind()) || isUint(t.Kind()) || t.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, key, "want a single value, got %s", kindName(n))
			return
		}
		var err error
		switch n.ShortTag() {
		case "!!int", "!!bool": // YAML's own forms (0x10, 1_000, yes/no...)
			err = n.Decode(v.Addr().Interface())
		case "!!str": // quoted: parsed as an environment value would be
			err = setFromString(v, n.Value)
		default:
			err = errors.New("wrong type")
		}
		if err != nil {
			what := "integer"
			if t.Kind() == reflect.Bool {
				what = "boolean"
			}
			d.fail(n, key, "invalid %s %q", what, n.Value)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, key, "want a list such as [a, b], got %s", kindName(n))
			return
		}
		var list []string
		for _, item := range n.Content {
			for item.Kind == yaml.AliasNode && item.Alias != nil {
				item = item.Alias
			}
			if item.Kind != yaml.ScalarNode || isNull(item) {
				d.fail(item, key, "list items must be strings, got %s", kindName(item))
				continue
			}
			list = append(list, item.Value)
		}
		s := reflect.MakeSlice(t, len(list), len(list))
		for i, item := range list {
			s.Index(i).SetString(item)
		}
		if len(list) == 0 {
			s = reflect.Zero(t) // "[]" is the same as absent: nil
		}
		v.Set(s)
	default:
		d.fail(n, key, "unsupported field type %s", t)
	}
}

func (d *fileDecoder) decodeStruct(n *yaml.Node, v reflect.Value, key string) {
	if isNull(n) {
		return // "cloud:" with nothing under it keeps the defaults
	}
	if n.Kind != yaml.MappingNode {
		if key == "" {
			d.fail(n, "", "the top level must be a mapping of keys, got %s", kindName(n))
		} else {
			d.fail(n, key, "want a mapping of keys, got %s", kindName(n))
		}
		return
	}
	fields := structFields(v.Type())
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, key, "keys must be plain names, got %s", kindName(k))
			continue
		}
		full := joinKey(key, k.Value)
		idx, ok := fields[k.Value]
		if !ok {
			d.fail(k, "", "unknown key %q", full)
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.fail(k, "", "key %q given twice (first on line %d)", full, line)
			continue
		}
		seen[k.Value] = k.Line
		d.decode(val, v.Field(idx), full)
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	default:
		return "something else"
	}
}

func joinKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// structFields maps each yaml key of struct type t to its field index.
func structFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name, ok := yamlName(t.Field(i)); ok {
			m[name] = i
		}
	}
	return m
}

// yamlName is the key of a field: its yaml tag, or as yaml.v3 does, the
// lower-cased field name when there is no tag.
func yamlName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return "", false
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, true
}

// leaf is one settable key: its dotted path, its environment variable and
// the field's index path from Config.
type leaf struct {
	key   string
	env   string
	index []int
}

// leaves lists every non-struct key of t in field order.
func leaves(t reflect.Type) []leaf {
	var out []leaf
	var walk func(t reflect.Type, key string, index []int)
	walk = func(t reflect.Type, key string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, ok := yamlName(f)
			if !ok {
				continue
			}
			k := joinKey(key, name)
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, k, idx)
				continue
			}
			env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(k, ".", "_"))
			out = append(out, leaf{key: k, env: env, index: idx})
		}
	}
	walk(t, "", nil)
	return out
}

// EnvName returns the environment variable that overrides the dotted key
// (e.g. "store.redis.addr" -> "IMCLOUD_STORE_REDIS_ADDR"), and false if
// there is no such key.
func EnvName(key string) (string, bool) {
	for _, l := range leaves(reflect.TypeFor[Config]()) {
		if l.key == key {
			return l.env, true
		}
	}
	return "", false
}

func applyEnv(env []string, cfg *Config) error {
	var byEnv map[string]leaf
	var errs []error
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		if byEnv == nil {
			byEnv = make(map[string]leaf)
			for _, l := range leaves(reflect.TypeFor[Config]()) {
				byEnv[l.env] = l
			}
		}
		l, ok := byEnv[name]
		if !ok {
			errs = append(errs, fmt.Errorf("config: environment variable %s matches no key (keys are %s + the key path upper-cased, joined by \"_\", e.g. IMCLOUD_CLOUD_TCP_ADDR)", name, EnvPrefix))
			continue
		}
		fv := reflect.ValueOf(cfg).Elem().FieldByIndex(l.index)
		if err := setFromString(fv, value); err != nil {
			errs = append(errs, fmt.Errorf("config: %s (%s): %w", name, l.key, err))
		}
	}
	return errors.Join(errs...)
}

// setFromString parses an environment value into the field.
func setFromString(v reflect.Value, s string) error {
	t := v.Type()
	switch {
	case t == durationType:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("invalid duration %q (use a Go duration such as \"8s\", \"5ms\", \"2m\")", s)
		}
		v.SetInt(int64(d))
	case t.Kind() == reflect.String:
		v.SetString(s)
	case isInt(t.Kind()):
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, t.Bits())
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		v.SetInt(n)
	case isUint(t.Kind()):
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, t.Bits())
		if err != nil {
			return fmt.Errorf("invalid unsigned integer %q", s)
		}
		v.SetUint(n)
	case t.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("invalid boolean %q", s)
		}
		v.SetBool(b)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		var list []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		out := reflect.Zero(t)
		if len(list) > 0 {
			out = reflect.MakeSlice(t, len(list), len(list))
			for i, item := range list {
				out.Index(i).SetString(item)
			}
		}
		v.Set(out)
	default:
		return fmt.Errorf("unsupported field type %s", t)
	}
	return nil
}

func isInt(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Int64
}

func isUint(k reflect.Kind) bool {
	return k >= reflect.Uint && k <= reflect.Uint64
}

// Validate checks the configuration for the given role and returns every
// problem at once (errors.Join), each naming its key. role is one of "all",
// "cloud", "job", "logic", "client" or "bench" (the last two have no
// role-specific checks). A server role checks the cloud, job and logic
// sections alike, since one file may serve every role and a mistake should
// show at the first start, not at the start of another role; the backends
// it checks are those it uses. Separate cloud, job and logic processes
// cannot share a memory registry, queue or store, so those roles reject a
// memory backend for what they share; "all" accepts any backend.
func (c *Config) Validate(role string) error {
	v := validator{}
	var cloud, job, logic bool
	switch role {
	case "all":
		cloud, job, logic = true, true, true
	case "cloud":
		cloud = true
	case "job":
		job = true
	case "logic":
		logic = true
	case "client", "bench":
	default:
		return fmt.Errorf("config: unknown role %q (want one of %s)", role, strings.Join(validRoles, ", "))
	}

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "console", "json")

	server := cloud || job || logic
	// Which shared backends each role uses.
	usesRegistry := server
	usesQueue := job || logic
	usesStore := cloud || logic
	separate := role != "all"
	if server {
		cloud, job, logic = true, true, true
	}
	if c.Node.LameDuck < 0 || c.Node.LameDuck > 5*time.Minute {
		v.addf("node.lame_duck", "must be between 0 and 5m, got %s", c.Node.LameDuck)
	}
	if server && c.Node.AdminAddr != "" {
		v.listenAddr("node.admin_addr", c.Node.AdminAddr)
	}
	if server && strings.ContainsAny(c.Node.ID, "/ \t\r\n") {
		v.addf("node.id", "%q must not contain \"/\" or spaces (it is part of the registry key)", c.Node.ID)
	}

	if cloud {
		cc := &c.Cloud
		v.listenAddr("cloud.tcp_addr", cc.TCPAddr)
		v.listenAddr("cloud.ws_addr", cc.WSAddr)
		v.listenAddr("cloud.grpc_addr", cc.GRPCAddr)
		if cc.AdvertiseAddr != "" {
			v.dialAddr("cloud.advertise_addr", cc.AdvertiseAddr)
		}
		if cc.PublicTCPAddr != "" {
			v.dialAddr("cloud.public_tcp_addr", cc.PublicTCPAddr)
		}
		if cc.PublicWSAddr != "" {
			u, err := url.Parse(cc.PublicWSAddr)
			if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
				v.addf("cloud.public_ws_addr", "%q is not a ws:// or wss:// URL such as ws://host:3102/sub", cc.PublicWSAddr)
			}
		}
		v.positive("cloud.handshake_timeout", cc.HandshakeTimeout)
		v.positive("cloud.heartbeat_timeout", cc.HeartbeatTimeout)
		v.positive("cloud.online_report_interval", cc.OnlineReportInterval)
		v.positive("cloud.write_timeout", cc.WriteTimeout)
		v.intRange("cloud.max_body", cc.MaxBody, 16, 16<<20)
		v.atLeast("cloud.send_queue", cc.SendQueue, 1)
		v.intRange("cloud.buckets", cc.Buckets, 1, 4096)
		v.atLeastDur("cloud.dedup_window", cc.DedupWindow, 0)
		for _, o := range cc.WSOrigins {
			if strings.TrimSpace(o) == "" {
				v.addf("cloud.ws_origins", "empty pattern in the list")
			}
		}
		for _, p := range cc.WSSubprotocols {
			if !http1.IsToken([]byte(p)) {
				v.addf("cloud.ws_subprotocols", "%q is not a protocol name (an HTTP token: letters, digits and !#$%%&'*+-.^_`|~)", p)
			}
		}
		v.atLeast("node.weight", c.Node.Weight, 0)
	}
	if job {
		jc := &c.Job
		if jc.RoomBatchWindow < 0 || jc.RoomBatchWindow > 10*time.Second {
			v.addf("job.room_batch_window", "must be between 0 and 10s, got %s", jc.RoomBatchWindow)
		}
		v.atLeast("job.room_batch_size", jc.RoomBatchSize, 1)
		v.atLeast("job.node_queue", jc.NodeQueue, 1)
		v.positive("job.max_age", jc.MaxAge)
	}
	if logic {
		lc := &c.Logic
		v.listenAddr("logic.http_addr", lc.HTTPAddr)
		v.atLeast("logic.max_message", lc.MaxMessage, 1)
		v.atLeast("logic.max_ids", lc.MaxIDs, 1)
	}

	if usesRegistry {
		r := &c.Registry
		switch r.Backend {
		case "memory":
			if separate {
				v.shared("registry.backend", role, "etcd")
			}
		case "etcd":
			v.list("registry.etcd.endpoints", r.Etcd.Endpoints)
			for _, e := range r.Etcd.Endpoints {
				v.endpoint("registry.etcd.endpoints", e)
			}
			v.atLeastDur("registry.etcd.ttl", r.Etcd.TTL, time.Second)
		default:
			v.addf("registry.backend", "%q is not a registry backend (want memory or etcd)", r.Backend)
		}
	}
	if usesQueue {
		q := &c.Queue
		switch q.Backend {
		case "memory":
			if separate {
				v.shared("queue.backend", role, "kafka")
			}
			v.atLeast("queue.memory.size", q.Memory.Size, 1)
		case "kafka":
			v.list("queue.kafka.brokers", q.Kafka.Brokers)
			for _, b := range q.Kafka.Brokers {
				v.dialAddr("queue.kafka.brokers", b)
			}
			v.nonEmpty("queue.kafka.topic", q.Kafka.Topic)
			v.nonEmpty("queue.kafka.group", q.Kafka.Group)
			v.atLeast("queue.kafka.partitions", q.Kafka.Partitions, 1)
			// A push's message and its other fields (id, room, keys) share
			// one Kafka record; keys beyond what is left answer 413.
			if limit := kafka.MaxRecordBytes - 16<<10; logic && c.Logic.MaxMessage > limit {
				v.addf("logic.max_message", "%d is more than a Kafka record holds beside a push's other fields: at most %d with queue.backend kafka", c.Logic.MaxMessage, limit)
			}
		default:
			v.addf("queue.backend", "%q is not a queue backend (want memory or kafka)", q.Backend)
		}
	}
	if usesStore {
		s := &c.Store
		v.atLeastDur("store.ttl", s.TTL, time.Second)
		switch s.Backend {
		case "memory":
			if separate {
				v.shared("store.backend", role, "redis")
			}
		case "redis":
			v.dialAddr("store.redis.addr", s.Redis.Addr)
			v.atLeast("store.redis.db", s.Redis.DB, 0)
		default:
			v.addf("store.backend", "%q is not a store backend (want memory or redis)", s.Backend)
		}
	}
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) addf(key, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
}

func (v *validator) oneOf(key, got string, want ...string) {
	for _, w := range want {
		if got == w {
			return
		}
	}
	v.addf(key, "%q is not one of %s", got, strings.Join(want, ", "))
}

func (v *validator) nonEmpty(key, got string) {
	if strings.TrimSpace(got) == "" {
		v.addf(key, "must not be empty")
	}
}

func (v *validator) list(key string, got []string) {
	if len(got) == 0 {
		v.addf(key, "must list at least one address")
		return
	}
	for _, s := range got {
		if strings.TrimSpace(s) == "" {
			v.addf(key, "empty entry in the list")
			return
		}
	}
}

func (v *validator) positive(key string, got time.Duration) {
	if got <= 0 {
		v.addf(key, "must be > 0, got %s", got)
	}
}

func (v *validator) atLeastDur(key string, got, min time.Duration) {
	if got < min {
		v.addf(key, "must be at least %s, got %s", min, got)
	}
}

func (v *validator) atLeast(key string, got, min int) {
	if got < min {
		v.addf(key, "must be at least %d, got %d", min, got)
	}
}

func (v *validator) intRange(key string, got, min, max int) {
	if got < min || got > max {
		v.addf(key, "must be between %d and %d, got %d", min, max, got)
	}
}

// listenAddr accepts host:port with a numeric port 0..65535 (0: any free
// port); the host may be empty (all interfaces).
func (v *validator) listenAddr(key, addr string) {
	if _, err := splitPort(addr, 0); err != nil {
		v.addf(key, "%q is not host:port (%v)", addr, err)
	}
}

// dialAddr is an address other processes dial: the port must not be 0.
func (v *validator) dialAddr(key, addr string) {
	if _, err := splitPort(addr, 1); err != nil {
		v.addf(key, "%q is not host:port (%v)", addr, err)
	}
}

// endpoint is an etcd endpoint: host:port, or an http(s) URL with one.
func (v *validator) endpoint(key, e string) {
	if !strings.Contains(e, "://") {
		v.dialAddr(key, e)
		return
	}
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Hostname() == "" {
		v.addf(key, "%q is not host:port or an http(s)://host:port URL", e)
	}
}

func (v *validator) shared(key, role, use string) {
	v.addf(key, "\"memory\" cannot be shared between separate processes (role %q); use %s, or run role \"all\"", role, use)
}

func splitPort(addr string, min int) (string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < min || n > 65535 {
		return "", fmt.Errorf("port %q must be a number from %d to 65535", port, min)
	}
	return port, nil
}

// NodeID returns node.id, or when it is empty the default: the host name +
// ":" + the port of cloud.grpc_addr (e.g. "box1:3109"). It does not change c.
func (c *Config) NodeID() (string, error) {
	if c.Node.ID != "" {
		return c.Node.ID, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("config: node.id is empty and the host name is unknown: %w", err)
	}
	port, err := splitPort(c.Cloud.GRPCAddr, 0)
	if err != nil {
		return "", fmt.Errorf("config: node.id is empty and cloud.grpc_addr %q has no port: %w", c.Cloud.GRPCAddr, err)
	}
	return host + ":" + port, nil
}

// AdvertiseAddr returns the gRPC address other processes dial to reach this
// node: cloud.advertise_addr, or cloud.grpc_addr when that is empty.
func (c *Config) AdvertiseAddr() string {
	if c.Cloud.AdvertiseAddr != "" {
		return c.Cloud.AdvertiseAddr
	}
	return c.Cloud.GRPCAddr
}
