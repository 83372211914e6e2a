package roles

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantErr fails unless err is non-nil and contains every substring.
func wantErr(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func TestLoadDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"nil env", nil},
		{"unrelated env", []string{"PATH=/bin", "HOME=/root", "IMCLOUDX=1", "imcloud_cloud_tcp_addr=x", "=C:=C:\\", "NOEQUALS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load("", tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, Default()) {
				t.Fatalf("Load(\"\") = %+v, want Default() %+v", got, Default())
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want func(c *Config)
	}{
		{"empty file", "", func(c *Config) {}},
		{"comments only", "# nothing here\n", func(c *Config) {}},
		{"empty section keeps defaults", "cloud:\njob: {}\n", func(c *Config) {}},
		{"string", "cloud:\n  tcp_addr: 0.0.0.0:4101\n", func(c *Config) { c.Cloud.TCPAddr = "0.0.0.0:4101" }},
		{"number as string key", "node:\n  id: 123\n", func(c *Config) { c.Node.ID = "123" }},
		{"durations", "cloud:\n  handshake_timeout: 3s\n  heartbeat_timeout: 2m30s\njob:\n  room_batch_window: 0\n",
			func(c *Config) {
				c.Cloud.HandshakeTimeout = 3 * time.Second
				c.Cloud.HeartbeatTimeout = 150 * time.Second
				c.Job.RoomBatchWindow = 0
			}},
		{"ints", "cloud:\n  max_body: 8192\nqueue:\n  kafka:\n    partitions: \"4\"\nstore:\n  redis:\n    db: 0x2\n", func(c *Config) {
			c.Cloud.MaxBody = 8192
			c.Queue.Kafka.Partitions = 4
			c.Store.Redis.DB = 2
		}},
		{"flow list", "registry:\n  etcd:\n    endpoints: [a:1, b:2]\n", func(c *Config) {
			c.Registry.Etcd.Endpoints = []string{"a:1", "b:2"}
		}},
		{"block list", "queue:\n  kafka:\n    brokers:\n      - k1:9092\n      - k2:9092\n", func(c *Config) {
			c.Queue.Kafka.Brokers = []string{"k1:9092", "k2:9092"}
		}},
		{"empty list is nil", "registry:\n  etcd:\n    endpoints: []\n", func(c *Config) { c.Registry.Etcd.Endpoints = nil }},
		{"null leaf is zero", "cloud:\n  tcp_addr:\n  handshake_timeout: ~\n", func(c *Config) {
			c.Cloud.TCPAddr = ""
			c.Cloud.HandshakeTimeout = 0
		}},
		{"alias", "cloud:\n  tcp_addr: &a 127.0.0.1:9\n  ws_addr: *a\n", func(c *Config) {
			c.Cloud.TCPAddr = "127.0.0.1:9"
			c.Cloud.WSAddr = "127.0.0.1:9"
		}},
		{"backends", "registry: {backend: etcd}\nqueue: {backend: kafka}\nstore: {backend: redis, redis: {addr: r:6379}}\n", func(c *Config) {
			c.Registry.Backend = "etcd"
			c.Queue.Backend = "kafka"
			c.Store.Backend = "redis"
			c.Store.Redis.Addr = "r:6379"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load(writeConfig(t, tc.yaml), nil)
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown key", "cloud:\n  tcp_addr: 127.0.0.1:1\n  tcp_adr: 127.0.0.1:2\n",
			[]string{`config: unknown key "cloud.tcp_adr"`, "line 3"}},
		{"unknown top-level key", "clod:\n  tcp_addr: x\n", []string{`unknown key "clod"`, "line 1"}},
		{"unknown nested key", "registry:\n  etcd:\n    endpoint: [a:1]\n", []string{`unknown key "registry.etcd.endpoint"`, "line 3"}},
		{"key case matters", "Cloud: {}\n", []string{`unknown key "Cloud"`}},
		{"bad duration", "cloud:\n  handshake_timeout: 8x\n",
			[]string{`cloud.handshake_timeout: invalid duration "8x"`, "line 2"}},
		{"plain integer is not a duration", "job:\n  max_age: 60\n", []string{`job.max_age: invalid duration "60"`}},
		{"list is not a duration", "job:\n  max_age: [1s]\n", []string{"job.max_age:", "want a duration"}},
		{"bad integer", "cloud:\n  max_body: big\n", []string{`cloud.max_body: invalid integer "big"`}},
		{"float integer", "cloud:\n  buckets: 1.5\n", []string{`cloud.buckets: invalid integer "1.5"`}},
		{"list for integer", "cloud:\n  buckets: [1]\n", []string{"cloud.buckets: want a single value"}},
		{"integer out of range", "store:\n  redis:\n    db: 99999999999999999999999\n", []string{"store.redis.db: invalid integer"}},
		{"scalar for list", "registry:\n  etcd:\n    endpoints: a:1,b:2\n", []string{"registry.etcd.endpoints: want a list"}},
		{"mapping in list", "queue:\n  kafka:\n    brokers: [{a: 1}]\n", []string{"queue.kafka.brokers: list items must be strings"}},
		{"list for string", "cloud:\n  tcp_addr: [a]\n", []string{"cloud.tcp_addr: want a string"}},
		{"scalar for section", "cloud: 5\n", []string{`cloud: want a mapping`}},
		{"top level list", "- a\n- b\n", []string{"top level must be a mapping"}},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", []string{`key "log.level" given twice`, "line 3"}},
		{"syntax error", "cloud:\n  tcp_addr: [a\n", []string{"config:", "yaml:"}},
		{"two documents", "log: {level: info}\n---\nlog: {level: debug}\n", []string{"more than one YAML document"}},
		{"every problem at once", "cloud:\n  tcp_adr: x\n  handshake_timeout: 8x\nlogic:\n  max_ids: many\n",
			[]string{`"cloud.tcp_adr"`, "cloud.handshake_timeout", "logic.max_ids"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.yaml)
			_, err := Load(path, nil)
			wantErr(t, err, tc.want...)
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("error %q does not start with config:", err)
			}
			if err != nil && !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file %s", err, path)
			}
		})
	}
}

func TestLoadFileAndEnvErrorsTogether(t *testing.T) {
	path := writeConfig(t, "cloud:\n  tcp_adr: x\n")
	_, err := Load(path, []string{"IMCLOUD_CLOUD_WS_ADR=y"})
	wantErr(t, err, `"cloud.tcp_adr"`, "IMCLOUD_CLOUD_WS_ADR")
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path, nil)
	wantErr(t, err, path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v is not fs.ErrNotExist", err)
	}
}

func TestLoadEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want func(c *Config)
	}{
		{"string", []string{"IMCLOUD_STORE_REDIS_ADDR=redis:6379"}, func(c *Config) { c.Store.Redis.Addr = "redis:6379" }},
		{"string with =", []string{"IMCLOUD_STORE_REDIS_PASSWORD=a=b"}, func(c *Config) { c.Store.Redis.Password = "a=b" }},
		{"empty string", []string{"IMCLOUD_STORE_REDIS_PREFIX="}, func(c *Config) { c.Store.Redis.Prefix = "" }},
		{"key with underscores", []string{"IMCLOUD_CLOUD_TCP_ADDR=0.0.0.0:1", "IMCLOUD_NODE_ADMIN_ADDR=:9"}, func(c *Config) {
			c.Cloud.TCPAddr = "0.0.0.0:1"
			c.Node.AdminAddr = ":9"
		}},
		{"duration", []string{"IMCLOUD_CLOUD_HANDSHAKE_TIMEOUT=3s", "IMCLOUD_JOB_ROOM_BATCH_WINDOW=0"}, func(c *Config) {
			c.Cloud.HandshakeTimeout = 3 * time.Second
			c.Job.RoomBatchWindow = 0
		}},
		{"int", []string{"IMCLOUD_QUEUE_KAFKA_PARTITIONS=4", "IMCLOUD_STORE_REDIS_DB= 2 "}, func(c *Config) {
			c.Queue.Kafka.Partitions = 4
			c.Store.Redis.DB = 2
		}},
		{"list", []string{"IMCLOUD_REGISTRY_ETCD_ENDPOINTS=a:1,b:2"}, func(c *Config) { c.Registry.Etcd.Endpoints = []string{"a:1", "b:2"} }},
		{"list with spaces", []string{"IMCLOUD_QUEUE_KAFKA_BROKERS= k1:1 , k2:2,"}, func(c *Config) { c.Queue.Kafka.Brokers = []string{"k1:1", "k2:2"} }},
		{"empty list", []string{"IMCLOUD_REGISTRY_ETCD_ENDPOINTS="}, func(c *Config) { c.Registry.Etcd.Endpoints = nil }},
		{"last wins", []string{"IMCLOUD_LOG_LEVEL=debug", "IMCLOUD_LOG_LEVEL=warn"}, func(c *Config) { c.Log.Level = "warn" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load("", tc.env)
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestLoadEnvOverridesFile(t *testing.T) {
	path := writeConfig(t, "cloud:\n  tcp_addr: 127.0.0.1:1\n  ws_addr: 127.0.0.1:2\n")
	got, err := Load(path, []string{"IMCLOUD_CLOUD_TCP_ADDR=127.0.0.1:3"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Cloud.TCPAddr != "127.0.0.1:3" || got.Cloud.WSAddr != "127.0.0.1:2" {
		t.Fatalf("tcp_addr=%q ws_addr=%q, want env to win over the file", got.Cloud.TCPAddr, got.Cloud.WSAddr)
	}
}

func TestLoadEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"unknown variable", []string{"IMCLOUD_CLOUD_TCP_ADR=x"}, []string{"IMCLOUD_CLOUD_TCP_ADR", "matches no key"}},
		{"section is not a key", []string{"IMCLOUD_CLOUD=x"}, []string{"IMCLOUD_CLOUD", "matches no key"}},
		{"bad duration", []string{"IMCLOUD_CLOUD_HANDSHAKE_TIMEOUT=3x"},
			[]string{"IMCLOUD_CLOUD_HANDSHAKE_TIMEOUT", "cloud.handshake_timeout", `invalid duration "3x"`}},
		{"integer is not a duration", []string{"IMCLOUD_JOB_MAX_AGE=60"}, []string{"IMCLOUD_JOB_MAX_AGE", "job.max_age", "invalid duration"}},
		{"bad int", []string{"IMCLOUD_QUEUE_KAFKA_PARTITIONS=four"},
			[]string{"IMCLOUD_QUEUE_KAFKA_PARTITIONS", "queue.kafka.partitions", `invalid integer "four"`}},
		{"every problem at once", []string{"IMCLOUD_NOPE=1", "IMCLOUD_LOGIC_MAX_IDS=x"}, []string{"IMCLOUD_NOPE", "logic.max_ids"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("", tc.env)
			wantErr(t, err, tc.want...)
		})
	}
}

// Every key must have its own environment variable, and every field type
// must be one Load can set.
func TestEnvNames(t *testing.T) {
	seen := map[string]string{}
	for _, l := range leaves(reflect.TypeFor[Config]()) {
		if other, dup := seen[l.env]; dup {
			t.Errorf("%s and %s share the variable %s", other, l.key, l.env)
		}
		seen[l.env] = l.key
		if env, ok := EnvName(l.key); !ok || env != l.env {
			t.Errorf("EnvName(%q) = %q, %v", l.key, env, ok)
		}
		var c Config
		fv := reflect.ValueOf(&c).Elem().FieldByIndex(l.index)
		sample := "1"
		if fv.Type() == durationType {
			sample = "1s"
		}
		if err := setFromString(fv, sample); err != nil {
			t.Errorf("%s: %v", l.key, err)
		}
	}
	if env, ok := EnvName("store.redis.addr"); !ok || env != "IMCLOUD_STORE_REDIS_ADDR" {
		t.Errorf("EnvName(store.redis.addr) = %q, %v", env, ok)
	}
	if _, ok := EnvName("store.redis"); ok {
		t.Error("EnvName(store.redis) found a section")
	}
}

// shared returns Default() with backends that separate processes can share.
func shared() Config {
	c := Default()
	c.Registry.Backend = "etcd"
	c.Queue.Backend = "kafka"
	c.Store.Backend = "redis"
	return c
}

func TestValidateOK(t *testing.T) {
	def, sh, urls := Default(), shared(), shared()
	urls.Registry.Etcd.Endpoints = []string{"http://10.0.0.1:2379", "https://etcd2:2379", "etcd3:2379"}
	for _, tc := range []struct {
		role string
		cfg  *Config
	}{
		{"all", &def}, {"client", &def}, {"bench", &def},
		{"all", &sh}, {"cloud", &sh}, {"job", &sh}, {"logic", &sh}, {"client", &sh}, {"bench", &sh},
		{"job", &urls},
	} {
		if err := tc.cfg.Validate(tc.role); err != nil {
			t.Errorf("Validate(%q) on %s/%s/%s: %v", tc.role, tc.cfg.Registry.Backend, tc.cfg.Queue.Backend, tc.cfg.Store.Backend, err)
		}
	}
}

func TestValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		role   string
		mutate func(c *Config)
		want   []string
	}{
		{"unknown role", "cluod", func(c *Config) {}, []string{`unknown role "cluod"`}},
		{"log level", "client", func(c *Config) { c.Log.Level = "verbose" }, []string{"log.level", `"verbose"`}},
		{"log format", "bench", func(c *Config) { c.Log.Format = "text" }, []string{"log.format"}},
		{"admin addr", "job", func(c *Config) { c.Node.AdminAddr = "localhost" }, []string{"node.admin_addr", "host:port"}},
		{"node id with slash", "cloud", func(c *Config) { c.Node.ID = "a/b" }, []string{"node.id"}},
		{"negative weight", "cloud", func(c *Config) { c.Node.Weight = -1 }, []string{"node.weight"}},
		{"tcp addr", "cloud", func(c *Config) { c.Cloud.TCPAddr = "3101" }, []string{"cloud.tcp_addr", "host:port"}},
		{"ws addr port", "cloud", func(c *Config) { c.Cloud.WSAddr = "127.0.0.1:http" }, []string{"cloud.ws_addr"}},
		{"grpc addr port range", "cloud", func(c *Config) { c.Cloud.GRPCAddr = ":70000" }, []string{"cloud.grpc_addr"}},
		{"advertise port 0", "cloud", func(c *Config) { c.Cloud.AdvertiseAddr = "10.0.0.1:0" }, []string{"cloud.advertise_addr"}},
		{"public tcp", "cloud", func(c *Config) { c.Cloud.PublicTCPAddr = "host" }, []string{"cloud.public_tcp_addr"}},
		{"public ws", "cloud", func(c *Config) { c.Cloud.PublicWSAddr = "http://h:1/sub" }, []string{"cloud.public_ws_addr"}},
		{"handshake timeout", "cloud", func(c *Config) { c.Cloud.HandshakeTimeout = 0 }, []string{"cloud.handshake_timeout", "> 0"}},
		{"heartbeat timeout", "cloud", func(c *Config) { c.Cloud.HeartbeatTimeout = -time.Second }, []string{"cloud.heartbeat_timeout"}},
		{"report interval", "cloud", func(c *Config) { c.Cloud.OnlineReportInterval = 0 }, []string{"cloud.online_report_interval"}},
		{"write timeout", "cloud", func(c *Config) { c.Cloud.WriteTimeout = 0 }, []string{"cloud.write_timeout"}},
		{"max body small", "cloud", func(c *Config) { c.Cloud.MaxBody = 15 }, []string{"cloud.max_body"}},
		{"max body large", "cloud", func(c *Config) { c.Cloud.MaxBody = 16<<20 + 1 }, []string{"cloud.max_body"}},
		{"send queue", "cloud", func(c *Config) { c.Cloud.SendQueue = 0 }, []string{"cloud.send_queue"}},
		{"buckets 0", "cloud", func(c *Config) { c.Cloud.Buckets = 0 }, []string{"cloud.buckets"}},
		{"buckets large", "cloud", func(c *Config) { c.Cloud.Buckets = 4097 }, []string{"cloud.buckets"}},
		{"empty origin", "cloud", func(c *Config) { c.Cloud.WSOrigins = []string{"a.com", ""} }, []string{"cloud.ws_origins"}},
		{"bad subprotocol", "cloud", func(c *Config) { c.Cloud.WSSubprotocols = []string{"goim", "a b"} }, []string{"cloud.ws_subprotocols"}},
		{"batch window negative", "job", func(c *Config) { c.Job.RoomBatchWindow = -1 }, []string{"job.room_batch_window"}},
		{"batch window large", "job", func(c *Config) { c.Job.RoomBatchWindow = 11 * time.Second }, []string{"job.room_batch_window"}},
		{"batch size", "job", func(c *Config) { c.Job.RoomBatchSize = 0 }, []string{"job.room_batch_size"}},
		{"node queue", "job", func(c *Config) { c.Job.NodeQueue = 0 }, []string{"job.node_queue"}},
		{"max age", "job", func(c *Config) { c.Job.MaxAge = 0 }, []string{"job.max_age"}},
		{"http addr", "logic", func(c *Config) { c.Logic.HTTPAddr = "" }, []string{"logic.http_addr"}},
		{"max message", "logic", func(c *Config) { c.Logic.MaxMessage = 0 }, []string{"logic.max_message"}},
		{"max ids", "logic", func(c *Config) { c.Logic.MaxIDs = 0 }, []string{"logic.max_ids"}},
		{"memory queue size", "all", func(c *Config) { c.Queue.Backend = "memory"; c.Queue.Memory.Size = 0 }, []string{"queue.memory.size"}},
		{"max message over a Kafka record", "logic", func(c *Config) { c.Queue.Backend = "kafka"; c.Logic.MaxMessage = 1 << 20 }, []string{"logic.max_message", "at most 1032192 with queue.backend kafka"}},
		{"store ttl", "logic", func(c *Config) { c.Store.TTL = 999 * time.Millisecond }, []string{"store.ttl", "at least 1s"}},
		{"registry backend", "cloud", func(c *Config) { c.Registry.Backend = "consul" }, []string{"registry.backend", `"consul"`}},
		{"queue backend", "job", func(c *Config) { c.Queue.Backend = "nats" }, []string{"queue.backend", `"nats"`}},
		{"store backend", "logic", func(c *Config) { c.Store.Backend = "" }, []string{"store.backend"}},
		{"etcd endpoints", "job", func(c *Config) { c.Registry.Etcd.Endpoints = nil }, []string{"registry.etcd.endpoints"}},
		{"etcd endpoint empty", "job", func(c *Config) { c.Registry.Etcd.Endpoints = []string{"a:1", " "} }, []string{"registry.etcd.endpoints"}},
		{"etcd endpoint not an address", "job", func(c *Config) { c.Registry.Etcd.Endpoints = []string{"notanaddress"} }, []string{"registry.etcd.endpoints", `"notanaddress"`}},
		{"etcd endpoint bad URL", "logic", func(c *Config) { c.Registry.Etcd.Endpoints = []string{"http://[::1"} }, []string{"registry.etcd.endpoints"}},
		{"etcd endpoint URL without port", "cloud", func(c *Config) { c.Registry.Etcd.Endpoints = []string{"https://etcd1"} }, []string{"registry.etcd.endpoints"}},
		{"etcd ttl", "cloud", func(c *Config) { c.Registry.Etcd.TTL = 0 }, []string{"registry.etcd.ttl"}},
		{"kafka brokers", "job", func(c *Config) { c.Queue.Kafka.Brokers = nil }, []string{"queue.kafka.brokers"}},
		{"kafka broker not an address", "logic", func(c *Config) { c.Queue.Kafka.Brokers = []string{"k1:9092", "notanaddress"} }, []string{"queue.kafka.brokers", `"notanaddress"`}},
		{"kafka topic", "logic", func(c *Config) { c.Queue.Kafka.Topic = "" }, []string{"queue.kafka.topic"}},
		{"kafka group", "job", func(c *Config) { c.Queue.Kafka.Group = " " }, []string{"queue.kafka.group"}},
		{"kafka partitions", "job", func(c *Config) { c.Queue.Kafka.Partitions = 0 }, []string{"queue.kafka.partitions"}},
		{"redis addr", "cloud", func(c *Config) { c.Store.Redis.Addr = "" }, []string{"store.redis.addr"}},
		{"redis addr not an address", "logic", func(c *Config) { c.Store.Redis.Addr = "notanaddress" }, []string{"store.redis.addr", `"notanaddress"`}},
		{"redis db", "cloud", func(c *Config) { c.Store.Redis.DB = -1 }, []string{"store.redis.db"}},
		{"every problem at once", "all", func(c *Config) {
			c.Log.Level = "loud"
			c.Cloud.TCPAddr = "x"
			c.Job.MaxAge = 0
			c.Logic.MaxIDs = 0
			c.Store.Redis.Addr = ""
		}, []string{"log.level", "cloud.tcp_addr", "job.max_age", "logic.max_ids", "store.redis.addr"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := shared()
			tc.mutate(&c)
			wantErr(t, c.Validate(tc.role), tc.want...)
		})
	}
}

// Checks belong to the roles that use the keys.
func TestValidateRoleScope(t *testing.T) {
	c := Default()
	c.Cloud.TCPAddr = "bad"
	c.Job.MaxAge = 0
	c.Logic.HTTPAddr = "bad"
	c.Registry.Backend = "etcd"
	c.Registry.Etcd.Endpoints = nil
	for _, tc := range []struct {
		role    string
		want    []string
		notWant []string
	}{
		{"client", nil, []string{"cloud.", "job.", "logic.", "registry."}},
		{"bench", nil, []string{"cloud.", "job.", "logic.", "registry."}},
		// One file may serve every role: a server role checks every role's section.
		{"cloud", []string{"cloud.tcp_addr", "job.max_age", "logic.http_addr", "registry.etcd.endpoints"}, nil},
		{"job", []string{"cloud.tcp_addr", "job.max_age", "logic.http_addr", "registry.etcd.endpoints"}, nil},
		{"logic", []string{"cloud.tcp_addr", "job.max_age", "logic.http_addr", "registry.etcd.endpoints"}, nil},
		{"all", []string{"cloud.tcp_addr", "job.max_age", "logic.http_addr", "registry.etcd.endpoints"}, nil},
	} {
		t.Run(tc.role, func(t *testing.T) {
			err := c.Validate(tc.role)
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			if len(tc.want) == 0 && err != nil {
				t.Fatalf("want no error, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(msg, nw) {
					t.Errorf("error %q contains %q", msg, nw)
				}
			}
		})
	}
}

func TestValidateSharedBackends(t *testing.T) {
	const (
		reg   = "registry.backend"
		queue = "queue.backend"
		store = "store.backend"
	)
	all := []string{reg, queue, store}
	for _, tc := range []struct {
		role                   string
		registry, queue, store string
		want                   []string // keys that must be rejected as memory
	}{
		{"all", "memory", "memory", "memory", nil},
		{"cloud", "memory", "memory", "memory", []string{reg, store}}, // cloud does not use the queue
		{"cloud", "etcd", "memory", "redis", nil},
		{"job", "memory", "memory", "memory", []string{reg, queue}}, // job does not use the store
		{"job", "etcd", "kafka", "memory", nil},
		{"logic", "memory", "memory", "memory", []string{reg, queue, store}},
		{"logic", "etcd", "kafka", "memory", []string{store}},
		{"client", "memory", "memory", "memory", nil},
		{"bench", "memory", "memory", "memory", nil},
	} {
		t.Run(tc.role+"/"+tc.registry+"/"+tc.queue+"/"+tc.store, func(t *testing.T) {
			c := Default()
			c.Registry.Backend, c.Queue.Backend, c.Store.Backend = tc.registry, tc.queue, tc.store
			err := c.Validate(tc.role)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			for _, key := range all {
				line := key + `: "memory" cannot be shared between separate processes`
				has := err != nil && strings.Contains(err.Error(), line)
				if has != slices.Contains(tc.want, key) {
					t.Errorf("%s rejected=%v, want %v; error: %v", key, has, !has, err)
				}
			}
		})
	}
}

// config.yaml at the module root is the dev config: it must write out every
// key and load to exactly Default().
func TestConfigYAMLIsDefault(t *testing.T) {
	const path = "../config.yaml"
	got, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Fatalf("Load(%s) differs from Default():\ngot  %+v\nwant %+v", path, got, Default())
	}
	if err := got.Validate("all"); err != nil {
		t.Fatalf("Validate(all): %v", err)
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{}
	var walk func(n *yaml.Node, key string)
	walk = func(n *yaml.Node, key string) {
		if n.Kind != yaml.MappingNode {
			written[key] = true
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walk(n.Content[i+1], joinKey(key, n.Content[i].Value))
		}
	}
	walk(doc.Content[0], "")
	for _, l := range leaves(reflect.TypeFor[Config]()) {
		if !written[l.key] {
			t.Errorf("%s does not write out %s", path, l.key)
		}
	}
}

func TestNodeIDAndAdvertiseAddr(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	c := Default()
	if id, err := c.NodeID(); err != nil || id != host+":3109" {
		t.Errorf("NodeID() = %q, %v; want %q", id, err, host+":3109")
	}
	c.Node.ID = "n1"
	if id, err := c.NodeID(); err != nil || id != "n1" {
		t.Errorf("NodeID() = %q, %v; want n1", id, err)
	}
	c.Node.ID = ""
	c.Cloud.GRPCAddr = "nope"
	if _, err := c.NodeID(); err == nil || !strings.Contains(err.Error(), "cloud.grpc_addr") {
		t.Errorf("NodeID() with a bad grpc_addr: err = %v", err)
	}
	if c.Node.ID != "" {
		t.Error("NodeID changed the config")
	}

	c = Default()
	if got := c.AdvertiseAddr(); got != "127.0.0.1:3109" {
		t.Errorf("AdvertiseAddr() = %q, want grpc_addr", got)
	}
	c.Cloud.AdvertiseAddr = "10.0.0.5:3109"
	if got := c.AdvertiseAddr(); got != "10.0.0.5:3109" {
		t.Errorf("AdvertiseAddr() = %q, want advertise_addr", got)
	}
}
