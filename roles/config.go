package roles

import "time"

// Config is the whole configuration file. Every field's yaml tag is its key;
// the environment variable IMCLOUD_<PATH> (path upper-cased, joined by "_")
// overrides it.
type Config struct {
	Node     NodeConfig     `yaml:"node"`
	Log      LogConfig      `yaml:"log"`
	Cloud    CloudConfig    `yaml:"cloud"`
	Job      JobConfig      `yaml:"job"`
	Logic    LogicConfig    `yaml:"logic"`
	Registry RegistryConfig `yaml:"registry"`
	Queue    QueueConfig    `yaml:"queue"`
	Store    StoreConfig    `yaml:"store"`
}

// NodeConfig identifies this process.
type NodeConfig struct {
	ID        string `yaml:"id"`         // default: hostname + ":" + gRPC port
	AdminAddr string `yaml:"admin_addr"` // /healthz /readyz /metrics; default: the role's own HTTP listener
	Region    string `yaml:"region"`
	Weight    int    `yaml:"weight"` // share of new clients in nodes/weighted; default 10
	// LameDuck is how long a stopping process answers /readyz 503 while
	// still serving, before its listeners close; 0: none.
	LameDuck time.Duration `yaml:"lame_duck"`
}

// LogConfig sets up zap.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or console
	// Sampling keeps 1 in 100 of a message logged more than 100 times in a
	// second, so per-connection events cannot flood the log.
	Sampling bool `yaml:"sampling"`
}

// CloudConfig configures the connection hub.
type CloudConfig struct {
	TCPAddr              string        `yaml:"tcp_addr"`
	WSAddr               string        `yaml:"ws_addr"` // WebSocket path /sub
	GRPCAddr             string        `yaml:"grpc_addr"`
	AdvertiseAddr        string        `yaml:"advertise_addr"` // gRPC address others dial; default grpc_addr
	HandshakeTimeout     time.Duration `yaml:"handshake_timeout"`
	HeartbeatTimeout     time.Duration `yaml:"heartbeat_timeout"`
	OnlineReportInterval time.Duration `yaml:"online_report_interval"`
	WriteTimeout         time.Duration `yaml:"write_timeout"`   // a write blocked longer closes the connection
	MaxBody              int           `yaml:"max_body"`        // inbound frame body limit, bytes
	SendQueue            int           `yaml:"send_queue"`      // queued frames per connection before it is dropped as slow
	Buckets              int           `yaml:"buckets"`         // hub shards
	WSOrigins            []string      `yaml:"ws_origins"`      // allowed Origin host patterns; empty: any
	WSSubprotocols       []string      `yaml:"ws_subprotocols"` // subprotocols selected when offered, by preference
	ParkReaders          bool          `yaml:"park_readers"`    // idle connections keep no reader goroutine (Linux)
	DedupWindow          time.Duration `yaml:"dedup_window"`    // repeats of a push id within it are dropped; 0: off
	PublicTCPAddr        string        `yaml:"public_tcp_addr"` // client address published in the registry; default tcp_addr
	PublicWSAddr         string        `yaml:"public_ws_addr"`  // default ws://ws_addr/sub
}

// JobConfig configures delivery.
type JobConfig struct {
	RoomBatchWindow time.Duration `yaml:"room_batch_window"` // longest a room message waits to be batched
	RoomBatchSize   int           `yaml:"room_batch_size"`   // messages that flush a room batch early
	NodeQueue       int           `yaml:"node_queue"`        // deliveries queued per cloud node
	MaxAge          time.Duration `yaml:"max_age"`           // older pushes are dropped, not delivered late
}

// LogicConfig configures the REST API.
type LogicConfig struct {
	HTTPAddr   string `yaml:"http_addr"`
	MaxMessage int    `yaml:"max_message"` // push body limit, bytes
	MaxIDs     int    `yaml:"max_ids"`     // mids/keys/rooms per request
}

// RegistryConfig picks and configures the registry backend.
type RegistryConfig struct {
	Backend string     `yaml:"backend"` // memory or etcd
	Etcd    EtcdConfig `yaml:"etcd"`
}

// EtcdConfig configures the etcd registry.
type EtcdConfig struct {
	Endpoints []string      `yaml:"endpoints"`
	Prefix    string        `yaml:"prefix"`
	TTL       time.Duration `yaml:"ttl"`
}

// QueueConfig picks and configures the queue backend.
type QueueConfig struct {
	Backend string      `yaml:"backend"` // memory or kafka
	Memory  MemoryQueue `yaml:"memory"`
	Kafka   KafkaConfig `yaml:"kafka"`
}

// MemoryQueue configures the in-process queue.
type MemoryQueue struct {
	Size int `yaml:"size"` // messages held before Publish answers full
}

// KafkaConfig configures the Kafka queue.
type KafkaConfig struct {
	Brokers    []string `yaml:"brokers"`
	Topic      string   `yaml:"topic"`
	Group      string   `yaml:"group"`
	Partitions int      `yaml:"partitions"`
}

// StoreConfig picks and configures the session store backend.
type StoreConfig struct {
	Backend string        `yaml:"backend"` // memory or redis
	TTL     time.Duration `yaml:"ttl"`     // session binding lifetime without a heartbeat
	Redis   RedisConfig   `yaml:"redis"`
}

// RedisConfig configures the Redis store.
type RedisConfig struct {
	Addr     string `yaml:"addr"`
	Prefix   string `yaml:"prefix"`
	Password string `yaml:"password"`
	DB       int    `yaml:"db"`
}

// Default returns the embedded defaults: every role on loopback, memory backends.
func Default() Config {
	return Config{
		Node: NodeConfig{Weight: 10},
		Log:  LogConfig{Level: "info", Format: "console", Sampling: true},
		Cloud: CloudConfig{
			TCPAddr:              "127.0.0.1:3101",
			WSAddr:               "127.0.0.1:3102",
			GRPCAddr:             "127.0.0.1:3109",
			HandshakeTimeout:     8 * time.Second,
			HeartbeatTimeout:     480 * time.Second,
			OnlineReportInterval: 5 * time.Second,
			ParkReaders:          true,
			WriteTimeout:         10 * time.Second,
			MaxBody:              4096,
			SendQueue:            1024,
			Buckets:              32,
			DedupWindow:          time.Minute,
		},
		Job: JobConfig{
			RoomBatchWindow: 5 * time.Millisecond,
			RoomBatchSize:   64,
			NodeQueue:       4096,
			MaxAge:          60 * time.Second,
		},
		Logic: LogicConfig{
			HTTPAddr:   "127.0.0.1:3111",
			MaxMessage: 64 * 1024,
			MaxIDs:     10000,
		},
		Registry: RegistryConfig{
			Backend: "memory",
			Etcd:    EtcdConfig{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/imcloud", TTL: 10 * time.Second},
		},
		Queue: QueueConfig{
			Backend: "memory",
			Memory:  MemoryQueue{Size: 65536},
			Kafka:   KafkaConfig{Brokers: []string{"127.0.0.1:9092"}, Topic: "imcloud-push", Group: "imcloud-job", Partitions: 8},
		},
		Store: StoreConfig{
			Backend: "memory",
			TTL:     20 * time.Minute,
			Redis:   RedisConfig{Addr: "127.0.0.1:6379", Prefix: "imcloud:"},
		},
	}
}
