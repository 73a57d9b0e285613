package main

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/heraldpush/herald/cluster"
	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/ingest"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/store/redisstore"
	"github.com/heraldpush/herald/push/stream"
	"github.com/heraldpush/herald/resilience"
)

//go:generate go test -run ^TestConfigReference$ -update-config-reference .

// EnvPrefix prefixes every environment variable; nested keys join with "__"
// (HERALD_LIMITS__MAX_EVENT_BYTES = limits.max_event_bytes).
const EnvPrefix = "HERALD_"

// Config is the whole node configuration. docs/configuration.md is
// generated from these structs (koanf tags, doc comments, defaults, serve
// flags) by `make config-docs`; every key needs a doc comment.
type Config struct {
	// Listen is the public API address (publish, stream, history).
	Listen string `koanf:"listen"`
	// TLSCertFile and TLSKeyFile, when both set, serve the public API over
	// TLS, which also enables HTTP/2 (no 6-streams-per-host browser limit).
	TLSCertFile string `koanf:"tls_cert_file"`
	// TLSKeyFile is the PEM private key of TLSCertFile.
	TLSKeyFile string `koanf:"tls_key_file"`
	// AdminListen is the admin address: health, readiness, /metrics, the
	// cluster and region admin API, protection state. Unauthenticated:
	// keep it private. "" disables it.
	AdminListen string `koanf:"admin_listen"`
	// AdminPprof exposes /debug/pprof on the admin listener (never on the public one).
	AdminPprof bool `koanf:"admin_pprof"`
	// PublicPages serves the demo page (/) and the log tail (/logs) on the
	// public listener; dev mode always serves them. The pages use the public
	// API with the visitor's own token, so they open nothing the API does
	// not. The admin listener always serves its status page at /.
	PublicPages bool `koanf:"public_pages"`
	// Redis is the store URL: redis://, rediss://, redis+sentinel://, redis+cluster://.
	// Empty runs on the embedded in-memory store (not durable).
	Redis string `koanf:"redis"`
	// RedisPrefix prefixes every Redis key and channel.
	RedisPrefix string `koanf:"redis_prefix"`
	// Dev disables authentication. Never in production.
	Dev bool `koanf:"dev"`
	// NodeName identifies this node; defaults to the host name.
	NodeName string `koanf:"node_name"`
	// Region is the origin name of events published here.
	Region string `koanf:"region"`
	// Zone is this node's availability zone (informational, in gossip).
	Zone string `koanf:"zone"`
	// AdvertiseURL is the public base URL peers redirect clients to; empty
	// means the listen address (only useful on one host).
	AdvertiseURL string `koanf:"advertise_url"`
	// GossipListen is the memberlist bind address (host:port, UDP and TCP);
	// empty runs a single node without a cluster.
	GossipListen string `koanf:"gossip_listen"`
	// GossipAdvertise is the gossip address peers use; empty means
	// GossipListen (set it behind NAT or with a 0.0.0.0 bind).
	GossipAdvertise string `koanf:"gossip_advertise"`
	// Join lists seed nodes (host:port; DNS names are re-resolved).
	Join []string `koanf:"join"`
	// GossipKey is the base64 AES key (16, 24 or 32 bytes) encrypting
	// gossip; required with a cluster unless dev.
	GossipKey string `koanf:"gossip_key"`
	// GossipOldKeys are still accepted for decryption during a rotation.
	GossipOldKeys []string `koanf:"gossip_old_keys"`
	// RemoteRedis lists the other regions' events as "NAME=URL": the local
	// replica of region NAME's primary (read-only here). Requires Redis.
	RemoteRedis []string `koanf:"remote_redis"`
	// RegionURL is the client-facing base URL of this region (its load
	// balancer), advertised to other regions' clients as an alternate
	// endpoint; empty means advertise_url, else the listen address.
	RegionURL string `koanf:"region_url"`
	// WANListen is the bind address (host:port) of the WAN pool that
	// federates regions; empty keeps this node out of it.
	WANListen string `koanf:"wan_listen"`
	// WANAdvertise is the WAN address other regions use; empty means
	// WANListen.
	WANAdvertise string `koanf:"wan_advertise"`
	// WANJoin lists WAN seeds (host:port of nodes in any region).
	WANJoin []string `koanf:"wan_join"`
	// WANKey is the base64 key encrypting the WAN pool; empty means
	// gossip_key. Every region's WAN nodes share it.
	WANKey string `koanf:"wan_key"`
	// SessionKey is the base64 key (at least 16 bytes) binding session ids
	// to the principal that created them (ADR 0014); every node that may
	// see a session's reconnect needs the same one. Empty derives it from
	// gossip_key (a region's nodes share sessions); set one key in every
	// region to keep sessions across regions. Without either, a random key:
	// sessions survive reconnects to this node only.
	SessionKey string `koanf:"session_key"`
	// SessionOldKeys still verify sessions during a session_key rotation.
	SessionOldKeys []string `koanf:"session_old_keys"`
	// Federation tunes multi-region behaviour.
	Federation FederationConfig `koanf:"federation"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `koanf:"log_level"`
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// IdempotencyWindow is how long a publish idempotency key is remembered.
	IdempotencyWindow time.Duration `koanf:"idempotency_window"`

	Cluster ClusterConfig `koanf:"cluster"`
	// Telemetry configures traces and metrics (OTLP, sampling).
	Telemetry observability.Config `koanf:"telemetry"`
	// Protection is the four protection layers' rules (reloaded on SIGHUP).
	Protection resilience.Config `koanf:"protection"`
	// TrustedProxies are proxy CIDRs/IPs whose X-Forwarded-For is believed
	// for the client IP; empty means the peer address is the client.
	TrustedProxies []string             `koanf:"trusted_proxies"`
	Retention      push.RetentionPolicy `koanf:"retention"`
	Limits         LimitsConfig         `koanf:"limits"`
	Stream         StreamConfig         `koanf:"stream"`
	Auth           auth.Config          `koanf:"auth"`
	CORS           server.CORSConfig    `koanf:"cors"`
	// Ingest configures NDJSON ingest for log shippers (POST /v1/ingest):
	// limits and per-API-key profiles (reloaded on SIGHUP).
	Ingest ingest.Config `koanf:"ingest"`
}

// ClusterConfig tunes membership, ownership and load balancing.
type ClusterConfig struct {
	// Label separates clusters sharing a network; default "herald/<region>".
	Label string `koanf:"label"`
	// Balance is the node's admission and balancing (connection_target,
	// redirect, rebalance_window).
	node.Balance `koanf:",squash"`
	// DrainWindow spreads stream closes on SIGTERM; it must be shorter than
	// shutdown_timeout.
	DrainWindow time.Duration `koanf:"drain_window"`
	// DeadGrace is how long session records of a dead node are kept.
	DeadGrace time.Duration `koanf:"dead_grace"`
	// RejoinInterval is how often seeds are re-resolved and re-joined.
	RejoinInterval time.Duration `koanf:"rejoin_interval"`
}

// FederationConfig tunes multi-region behaviour.
type FederationConfig struct {
	// Label separates WAN pools sharing a network; default "herald-wan".
	Label string `koanf:"label"`
	// Regions is the node's multi-region behaviour (interval,
	// replica_wait, evacuation_window, evacuation_catch_up).
	node.Regions `koanf:",squash"`
}

// remote is one parsed remote_redis entry.
type remote struct{ Name, URL string }

// Remotes parses remote_redis. Errors never repeat a password.
func (c Config) Remotes() ([]remote, error) {
	var out []remote
	seen := map[string]bool{}
	for _, r := range c.RemoteRedis {
		name, u, ok := strings.Cut(r, "=")
		if !ok || name == "" || u == "" {
			return nil, fmt.Errorf("remote_redis %q: want NAME=URL", redactPassword(r))
		}
		if err := push.ValidateOrigin(name); err != nil {
			return nil, fmt.Errorf("remote_redis %q: %w", redactPassword(r), err)
		}
		if name == c.Region {
			return nil, fmt.Errorf("remote_redis %s: this node's own region (its events are in redis)", name)
		}
		if seen[name] {
			return nil, fmt.Errorf("remote_redis: region %s given twice", name)
		}
		seen[name] = true
		if _, err := redisstore.ParseURL(u); err != nil {
			return nil, fmt.Errorf("remote_redis %s: %s", name, redactPassword(err.Error()))
		}
		out = append(out, remote{name, u})
	}
	return out, nil
}

// userinfoPassword matches the password of a URL's userinfo.
var userinfoPassword = regexp.MustCompile(`(//[^:@/\s]*):[^@/\s]*@`)

// redactPassword hides URL passwords in text bound for errors and logs.
func redactPassword(s string) string {
	return userinfoPassword.ReplaceAllString(s, "$1:xxxxx@")
}

// LimitsConfig bounds requests and the per-stream live queues.
type LimitsConfig struct {
	// Limits are the request bounds (max_event_bytes,
	// max_topics_per_stream, max_batch_events, body_timeout).
	server.Limits `koanf:",squash"`
	// QueueMaxEvents caps a stream's live queue in events; overflow
	// disconnects the stream, which resumes from its cursor.
	QueueMaxEvents int `koanf:"queue_max_events"`
	// QueueMaxBytes caps a stream's live queue in bytes (≥ max_event_bytes).
	QueueMaxBytes int `koanf:"queue_max_bytes"`
	// QueueMaxLag disconnects a stream as slow when its writes to the client
	// have stalled for longer while events wait in its queue (≥ 100ms); it
	// resumes from its cursor. Time the node takes to run the stream (CPU
	// starvation) does not count (ADR 0034).
	QueueMaxLag time.Duration `koanf:"queue_max_lag"`
}

// Queue is the per-stream live queue bound these limits give.
func (l LimitsConfig) Queue() hub.Limits {
	return hub.Limits{MaxEvents: l.QueueMaxEvents, MaxBytes: l.QueueMaxBytes, MaxLag: l.QueueMaxLag}
}

// StreamConfig tunes streams (SSE and WebSocket).
type StreamConfig struct {
	// Config is the streams' own tuning (heartbeat, retry_min, retry_max,
	// write_timeout, coalesce_window).
	stream.Config `koanf:",squash"`
	// SendBuffer fixes each public connection's socket send buffer (bytes;
	// 0 keeps the kernel's autotuning): bounds what a slow client can
	// leave queued in the kernel.
	SendBuffer int `koanf:"send_buffer"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	nd, cl := node.DefaultConfig(), cluster.DefaultConfig()
	return Config{
		Listen:            "127.0.0.1:8080",
		AdminListen:       "127.0.0.1:8081",
		RedisPrefix:       "herald",
		Region:            "local",
		LogLevel:          "info",
		Federation:        FederationConfig{Regions: nd.Regions},
		ShutdownTimeout:   30 * time.Second,
		IdempotencyWindow: 2 * time.Minute,
		Retention:         push.RetentionPolicy{Default: push.DefaultRetention},
		Protection:        defaultProtection(),
		Cluster: ClusterConfig{
			Balance:        nd.Balance,
			DrainWindow:    10 * time.Second,
			DeadGrace:      cl.DeadGrace,
			RejoinInterval: cl.RejoinInterval,
		},
		Limits: LimitsConfig{
			Limits:         server.DefaultLimits(),
			QueueMaxEvents: 4096,
			QueueMaxBytes:  4 << 20,
			QueueMaxLag:    2 * time.Second,
		},
		Stream: StreamConfig{Config: stream.DefaultConfig(), SendBuffer: 64 << 10},
		Auth:   auth.Config{CookieName: "herald_token", Leeway: 30 * time.Second},
		Ingest: ingest.Config{MaxLines: ingest.DefaultMaxLines, MaxBodyBytes: ingest.DefaultMaxBodyBytes},
	}
}

// registerServeFlags declares the serve flags; each has a HERALD_ env twin.
func registerServeFlags(fs *pflag.FlagSet) {
	d := DefaultConfig()
	fs.String("config", "", "YAML config file (env HERALD_CONFIG)")
	fs.String("listen", d.Listen, "public API address")
	fs.String("tls-cert-file", "", "PEM certificate for the public listener (enables TLS and HTTP/2)")
	fs.String("tls-key-file", "", "PEM private key for --tls-cert-file")
	fs.String("admin-listen", d.AdminListen, `admin address for health and metrics ("" disables)`)
	fs.String("redis", "", "Redis URL (redis://, rediss://, redis+sentinel://h:p,h:p/master, redis+cluster://h:p,h:p); empty = in-memory store, not durable")
	fs.Bool("dev", false, "development mode: no authentication")
	fs.Bool("admin-pprof", false, "serve /debug/pprof on the admin listener")
	fs.Bool("public-pages", false, "serve the demo page (/) and log tail (/logs) on the public listener (always on with --dev)")
	fs.String("node-name", "", "node name (default: host name)")
	fs.String("region", d.Region, "region (origin) name of events published here")
	fs.String("log-level", d.LogLevel, "debug, info, warn or error")
	fs.String("zone", "", "availability zone (informational)")
	fs.String("advertise-url", "", "public base URL peers redirect clients to")
	fs.String("gossip-listen", "", `gossip bind address host:port ("" = single node, no cluster)`)
	fs.String("gossip-advertise", "", "gossip address peers use (default: --gossip-listen)")
	fs.StringSlice("join", nil, "seed node host:port (repeatable; DNS names are re-resolved)")
	fs.String("gossip-key", "", "base64 gossip encryption key, 16/24/32 bytes (herald gossip-key makes one)")
	fs.Int("connection-target", 0, "streams this node aims to hold (0 = no target)")
	// An array, not a slice: Sentinel and Cluster URLs hold commas.
	fs.StringArray("remote-redis", nil, "NAME=URL: the local replica of region NAME's primary (repeatable)")
	fs.String("region-url", "", "client-facing base URL of this region, offered to other regions' clients (default --advertise-url)")
	fs.String("wan-listen", "", `WAN federation bind address host:port ("" = not in the WAN pool)`)
	fs.String("wan-advertise", "", "WAN address other regions use (default --wan-listen)")
	fs.StringSlice("wan-join", nil, "WAN seed host:port in any region (repeatable)")
	fs.String("wan-key", "", "base64 WAN encryption key (default --gossip-key)")
	fs.Duration("drain-window", d.Cluster.DrainWindow, "spread stream closes over this window on SIGTERM")
}

// listKeys are the keys whose environment values are comma-separated lists.
var listKeys = map[string]bool{"join": true, "gossip_old_keys": true, "session_old_keys": true, "cors.allowed_origins": true, "trusted_proxies": true,
	"wan_join": true, "auth.jwks_url": true, "auth.jwks_algorithms": true, "auth.issuers": true}

// remoteSep finds where a remote_redis entry starts in an environment value:
// at the start or after a comma or space, a region name followed by "=".
// Sentinel and Cluster URLs hold commas (h1:p1,h2:p2) that must not split
// them; a host never contains "=".
var remoteSep = regexp.MustCompile(`(?:^|[,\s]+)([a-z0-9][a-z0-9-]*=)`)

// splitRemotes splits HERALD_REMOTE_REDIS ("eu=redis+sentinel://a:1,b:2/m,us=redis://c:3")
// into its NAME=URL entries. Text before the first NAME= is kept as an entry
// of its own so that Validate names it.
func splitRemotes(v string) []string {
	var out []string
	idx := remoteSep.FindAllStringSubmatchIndex(v, -1)
	if len(idx) == 0 || idx[0][0] > 0 {
		end := len(v)
		if len(idx) > 0 {
			end = idx[0][0]
		}
		if s := strings.Trim(v[:end], ", \t\n"); s != "" {
			out = append(out, s)
		}
	}
	for i, m := range idx {
		end := len(v)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		out = append(out, strings.TrimRight(v[m[2]:end], ", \t\n"))
	}
	return out
}

// flagKeys maps flags that set nested keys.
var flagKeys = map[string]string{
	"connection-target": "cluster.connection_target",
	"drain-window":      "cluster.drain_window",
}

// nonConfigEnv are HERALD_ variables that are not configuration keys:
// HERALD_CONFIG names the file; HERALD_TOKEN and HERALD_API_KEY are the
// credentials the client commands and the banner's examples read, and may
// be exported in the shell that starts a node.
var nonConfigEnv = map[string]bool{"CONFIG": true, "TOKEN": true, "API_KEY": true}

// LoadConfig builds the configuration: defaults, then the YAML file, then
// HERALD_* environment variables, then flags that were set; then Validate.
// An unknown key in the file or the environment is an error. The error
// lists every problem found (errors.Join), each naming its key and, for
// the file, its path and line.
func LoadConfig(fs *pflag.FlagSet, environ func() []string) (Config, error) {
	return loadConfig(fs, environ, readConfigFile)
}

// maxConfigFileSize bounds the config file read (a config is a few KiB).
const maxConfigFileSize = 4 << 20

func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFileSize+1))
	if err == nil && len(b) > maxConfigFileSize {
		err = fmt.Errorf("larger than %d bytes", maxConfigFileSize)
	}
	return b, err
}

// configPath is the file named by --config, else HERALD_CONFIG.
func configPath(fs *pflag.FlagSet, environ func() []string) string {
	path, _ := fs.GetString("config")
	if path == "" {
		for _, kv := range environ() {
			if v, ok := strings.CutPrefix(kv, EnvPrefix+"CONFIG="); ok {
				path = v
			}
		}
	}
	return path
}

// bytesProvider is a koanf provider of an already-read file.
type bytesProvider []byte

func (b bytesProvider) ReadBytes() ([]byte, error) { return b, nil }
func (b bytesProvider) Read() (map[string]any, error) {
	return nil, errors.New("bytesProvider needs a parser")
}

func loadConfig(fs *pflag.FlagSet, environ func() []string, readFile func(string) ([]byte, error)) (Config, error) {
	keys := configKeys()
	var problems []error
	k := koanf.New(".")
	if err := k.Load(structs.Provider(DefaultConfig(), "koanf"), nil); err != nil {
		return Config{}, err
	}
	path := configPath(fs, environ)
	fileLines := map[string]int{} // key path -> line in the file
	if path != "" {
		data, err := readFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		// koanf's parser first: it refuses excessive YAML aliasing before
		// the key walk expands any alias.
		if err := k.Load(bytesProvider(data), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		var doc yamlv3.Node
		if err := yamlv3.Unmarshal(data, &doc); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		for _, p := range checkYAMLKeys(&doc, keys, fileLines) {
			problems = append(problems, fmt.Errorf("%s:%d:%d: %s", path, p.line, p.col, p.msg))
		}
	}
	envKeys := map[string]bool{}
	for _, kv := range environ() {
		name, _, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, EnvPrefix)
		if !ok || nonConfigEnv[rest] {
			continue
		}
		key := envKey(name)
		if msg := envKeyProblem(keys, key); msg != "" {
			problems = append(problems, fmt.Errorf("environment %s: %s", name, msg))
			continue
		}
		envKeys[key] = true
	}
	envp := env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: environ,
		TransformFunc: func(name, v string) (string, any) {
			key := envKey(name)
			if !envKeys[key] {
				return "", nil // reported above, or not a config key
			}
			if key == "remote_redis" {
				return key, splitRemotes(v)
			}
			if listKeys[key] {
				return key, strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
			}
			return key, v
		},
	})
	if err := k.Load(envp, nil); err != nil {
		return Config{}, err
	}
	flagSet := map[string]bool{}
	flags := posflag.ProviderWithFlag(fs, ".", nil, func(f *pflag.Flag) (string, any) {
		key := flagKey(f.Name)
		if key == "" {
			return "", nil
		}
		flagSet[key] = true
		return key, posflag.FlagVal(fs, f)
	})
	if err := k.Load(flags, nil); err != nil {
		return Config{}, err
	}
	// Decode over the defaults: a key that fails to decode keeps its
	// default, so Validate does not report it a second time.
	cfg := DefaultConfig()
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		for _, e := range decodeErrors(err) {
			if named, ok := e.(interface{ Name() string }); ok {
				if line, ok := fileLines[named.Name()]; ok && !envKeys[named.Name()] && !flagSet[named.Name()] {
					e = fmt.Errorf("%s:%d: %w", path, line, e)
				}
			}
			problems = append(problems, e)
		}
	}
	problems = append(problems, leafErrors(cfg.Validate())...)
	return cfg, errors.Join(problems...)
}

// envKey is the configuration key an environment variable sets:
// HERALD_LIMITS__MAX_EVENT_BYTES is limits.max_event_bytes.
func envKey(name string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, EnvPrefix)), "__", ".")
}

// flagKey is the configuration key a serve flag sets ("" for --config).
func flagKey(name string) string {
	if name == "config" {
		return ""
	}
	if key, ok := flagKeys[name]; ok {
		return key
	}
	return strings.ReplaceAll(name, "-", "_")
}

// decodeErrors splits a mapstructure error into one error per key (the
// errors with a Name, mapstructure's DecodeError), or returns err whole.
func decodeErrors(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if _, ok := e.(interface{ Name() string }); ok {
			out = append(out, e)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	walk(err)
	if len(out) == 0 {
		return []error{err}
	}
	return out
}

// leafErrors flattens errors.Join trees into their leaves.
func leafErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// Validate checks the whole configuration once, naming offending values.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen %q: %v", c.Listen, err)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		add("tls_cert_file and tls_key_file must be set together")
	} else if c.TLSCertFile != "" {
		if err := checkKeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			add("tls_cert_file/tls_key_file: %v", err)
		}
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			add("admin_listen %q: %v", c.AdminListen, err)
		}
	}
	if c.Redis != "" {
		if _, err := redisstore.ParseURL(c.Redis); err != nil {
			add("redis: %v", err)
		}
	}
	if err := push.ValidateOrigin(c.Region); err != nil {
		add("region: %v", err)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.ShutdownTimeout <= 0 {
		add("shutdown_timeout must be positive, got %s", c.ShutdownTimeout)
	}
	if c.IdempotencyWindow <= 0 {
		add("idempotency_window must be positive, got %s", c.IdempotencyWindow)
	}
	if err := c.Retention.Validate(); err != nil {
		add("%v", err)
	}
	l := c.Limits
	if l.MaxEventBytes < 1 || l.MaxEventBytes > 1<<20 {
		add("limits.max_event_bytes %d: want 1..1048576", l.MaxEventBytes)
	}
	if l.MaxTopicsPerStream < 1 || l.MaxTopicsPerStream > 256 {
		add("limits.max_topics_per_stream %d: want 1..256", l.MaxTopicsPerStream)
	}
	if l.BodyTimeout < time.Second || l.BodyTimeout > 5*time.Minute {
		add("limits.body_timeout %s: want 1s..5m", l.BodyTimeout)
	}
	if l.MaxBatchEvents < 1 || l.MaxBatchEvents > 10000 {
		add("limits.max_batch_events %d: want 1..10000", l.MaxBatchEvents)
	}
	if l.QueueMaxLag < 100*time.Millisecond {
		add("limits.queue_max_lag %s: want ≥ 100ms", l.QueueMaxLag)
	}
	if l.QueueMaxEvents < 1 || l.QueueMaxBytes < l.MaxEventBytes {
		add("limits.queue_max_events must be ≥ 1 and limits.queue_max_bytes ≥ max_event_bytes (%d, %d)", l.QueueMaxEvents, l.QueueMaxBytes)
	}
	s := c.Stream
	if s.Heartbeat < time.Second {
		add("stream.heartbeat %s: want ≥ 1s", s.Heartbeat)
	}
	if s.RetryMin <= 0 || s.RetryMax < s.RetryMin {
		add("stream.retry_min %s / retry_max %s: want 0 < min ≤ max", s.RetryMin, s.RetryMax)
	}
	if s.WriteTimeout <= 0 {
		add("stream.write_timeout must be positive")
	}
	if s.CoalesceWindow < 0 || s.CoalesceWindow > time.Second {
		add("stream.coalesce_window %s: want 0 (off) to 1s", s.CoalesceWindow)
	}
	if s.SendBuffer != 0 && (s.SendBuffer < 4<<10 || s.SendBuffer > 64<<20) {
		add("stream.send_buffer %d: want 0 (kernel autotuning) or 4096..67108864", s.SendBuffer)
	}
	if !c.Dev {
		if len(c.Auth.Keys) == 0 && len(c.Auth.APIKeys) == 0 && len(c.Auth.JWKSURLs) == 0 {
			add("auth: no JWT keys, JWKS URL or API keys configured; configure auth or run with --dev (no authentication)")
		} else if err := c.Auth.Validate(); err != nil {
			add("auth: %v", err)
		}
	}
	if err := c.CORS.Validate(); err != nil {
		add("%v", err)
	}
	c.validateIngest(add)
	c.validateCluster(add)
	c.validateFederation(add)
	if c.SessionKey == "" && len(c.SessionOldKeys) > 0 {
		add("session_old_keys: set session_key too (old keys only verify)")
	}
	for i, k := range append([]string{c.SessionKey}, c.SessionOldKeys...) {
		if k == "" && i == 0 {
			continue
		}
		if _, err := parseSessionKey(k); err != nil {
			add("session key #%d: %v", i, err)
		}
	}
	if err := c.Protection.Validate(); err != nil {
		add("protection: %v", err)
	}
	if err := c.Telemetry.Validate(); err != nil {
		add("telemetry: %v", err)
	}
	return errors.Join(errs...)
}

// checkKeyPair loads a TLS certificate and key as the server will, reading
// at most maxConfigFileSize of each (a mistyped path such as /dev/zero must
// not hang checkconfig).
func checkKeyPair(certFile, keyFile string) error {
	cert, err := readConfigFile(certFile)
	if err != nil {
		return fmt.Errorf("%s: %w", certFile, err)
	}
	key, err := readConfigFile(keyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", keyFile, err)
	}
	_, err = tls.X509KeyPair(cert, key)
	return err
}

// validateIngest checks the ingest limits and profiles, and that every
// profile names a configured API key.
func (c Config) validateIngest(add func(format string, a ...any)) {
	if err := c.Ingest.Validate(); err != nil {
		for _, e := range leafErrors(err) {
			add("%v", e)
		}
	}
	ids := map[string]bool{}
	for _, k := range c.Auth.APIKeys {
		ids[k.ID] = true
	}
	for _, id := range c.Ingest.KeyIDs() {
		if !ids[id] {
			add("ingest.profiles: api_key %q is not the id of an auth.api_keys entry (use \"*\" for every caller)", id)
		}
	}
}

func (c Config) validateCluster(add func(format string, a ...any)) {
	cl := c.Cluster
	if cl.ConnectionTarget < 0 {
		add("cluster.connection_target %d: must not be negative", cl.ConnectionTarget)
	}
	if cl.DrainWindow < 0 || cl.DrainWindow >= c.ShutdownTimeout {
		add("cluster.drain_window %s: want 0 ≤ drain_window < shutdown_timeout (%s)", cl.DrainWindow, c.ShutdownTimeout)
	}
	if cl.RebalanceWindow < 0 || cl.DeadGrace <= 0 || cl.RejoinInterval <= 0 {
		add("cluster: rebalance_window ≥ 0, dead_grace > 0 and rejoin_interval > 0 required (%s, %s, %s)",
			cl.RebalanceWindow, cl.DeadGrace, cl.RejoinInterval)
	}
	if c.AdvertiseURL != "" {
		if u, err := url.Parse(c.AdvertiseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("advertise_url %q: want http(s)://host[:port]", c.AdvertiseURL)
		}
	}
	if !validatePoolAddrs(add, "gossip_listen", c.GossipListen, "gossip_advertise", c.GossipAdvertise, "join", c.Join) {
		return
	}
	if c.GossipKey == "" && !c.Dev {
		add("gossip_key: required when gossip_listen is set (encrypts gossip); make one with `herald gossip-key`, or run with --dev")
	}
	for i, k := range append([]string{c.GossipKey}, c.GossipOldKeys...) {
		if k == "" && i == 0 {
			continue
		}
		if _, err := cluster.ParseKey(k); err != nil {
			add("gossip key #%d: %v", i, err)
		}
	}
}

func (c Config) validateFederation(add func(format string, a ...any)) {
	rs, err := c.Remotes()
	if err != nil {
		add("%v", err)
	}
	if len(rs) > 0 && c.Redis == "" {
		add("remote_redis needs redis: a multi-region node keeps its own region's events in Redis")
	}
	if len(rs)+1 > push.MaxCursorOrigins {
		add("remote_redis: at most %d regions in all", push.MaxCursorOrigins)
	}
	if c.RegionURL != "" {
		if u, err := url.Parse(c.RegionURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("region_url %q: want http(s)://host[:port]", c.RegionURL)
		}
	}
	f := c.Federation
	if f.Interval < 100*time.Millisecond || f.ReplicaWait < 0 || f.EvacuationWindow < 0 || f.EvacuationCatchUp < 0 {
		add("federation: interval ≥ 100ms and non-negative replica_wait, evacuation_window, evacuation_catch_up required")
	}
	if !validatePoolAddrs(add, "wan_listen", c.WANListen, "wan_advertise", c.WANAdvertise, "wan_join", c.WANJoin) {
		return
	}
	key := c.WANKey
	if key == "" {
		key = c.GossipKey
	}
	if key == "" && !c.Dev {
		add("wan_key (or gossip_key): required when wan_listen is set (encrypts the WAN pool), or run with --dev")
	} else if key != "" {
		if _, err := cluster.ParseKey(key); err != nil {
			add("wan_key: %v", err)
		}
	}
}

// validatePoolAddrs checks a gossip pool's bind and advertise addresses and
// seeds (keys named as in the configuration). It reports whether the pool is
// on (a bind address is set); seeds without one are an error.
func validatePoolAddrs(add func(format string, a ...any), listenKey, listen, advKey, adv, joinKey string, join []string) bool {
	if listen == "" {
		if len(join) > 0 {
			add("%s needs %s (this node has no address in that pool)", joinKey, listenKey)
		}
		return false
	}
	for _, a := range [][2]string{{listenKey, listen}, {advKey, adv}} {
		if a[1] == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a[1]); err != nil {
			add("%s %q: %v", a[0], a[1], err)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			add("%s %q: bad port", a[0], a[1])
		}
	}
	for _, j := range join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			add("%s %q: want host:port (%v)", joinKey, j, err)
		}
	}
	return true
}

// defaultProtection is resilience's defaults, which are derived from
// capacity measured on the reference machine (resilience.DefaultConfig).
func defaultProtection() resilience.Config {
	return resilience.DefaultConfig()
}

// parseSessionKey decodes a session_key value (standard base64, at least
// push.MinSessionKeyLen bytes).
func parseSessionKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not standard base64: %w", err)
	}
	if len(k) < push.MinSessionKeyLen {
		return nil, fmt.Errorf("decodes to %d bytes, want at least %d", len(k), push.MinSessionKeyLen)
	}
	return k, nil
}

// sessionBinder builds the session binder (ADR 0014) from session_key,
// else from the gossip keys (derived, never the gossip key itself), else a
// fixed public key in dev mode (no identities to protect there: every
// caller is the dev principal), else a random key for this process.
func sessionBinder(c Config) (b *push.SessionBinder, source string, err error) {
	var keys [][]byte
	switch {
	case c.SessionKey != "":
		for _, s := range append([]string{c.SessionKey}, c.SessionOldKeys...) {
			k, err := parseSessionKey(s)
			if err != nil {
				return nil, "", fmt.Errorf("session key: %w", err)
			}
			keys = append(keys, k)
		}
		source = "session_key"
	case c.GossipKey != "":
		for _, s := range append([]string{c.GossipKey}, c.GossipOldKeys...) {
			g, err := cluster.ParseKey(s)
			if err != nil {
				return nil, "", err
			}
			k, err := push.DeriveSessionKey(g)
			if err != nil {
				return nil, "", err
			}
			keys = append(keys, k)
		}
		source = "gossip_key"
	case c.Dev:
		k, err := push.DeriveSessionKey([]byte("herald dev mode: sessions are not bound"))
		if err != nil {
			return nil, "", err
		}
		keys, source = [][]byte{k}, "dev"
	default:
		return push.RandomSessionBinder(), "random", nil
	}
	b, err = push.NewSessionBinder(keys...)
	return b, source, err
}
