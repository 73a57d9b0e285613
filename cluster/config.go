package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// Limits of the identifiers carried in node metadata and ownership records.
// They keep every record broadcast inside one UDP packet (topics may be
// trimmed, see Record) and node metadata inside memberlist's 512-byte limit.
const (
	MaxSessionLen  = 64  // bytes of a session id
	MaxTopics      = 256 // topics in one record
	MaxTopicLen    = 256 // bytes of one topic
	MaxTraceLen    = 256 // bytes of Record.Trace
	MaxNodeNameLen = 128 // bytes of Config.NodeName
	MaxRegionLen   = 64  // bytes of Config.Region and Config.Zone
	MaxURLLen      = 256 // bytes of Config.HTTPURL
	MaxVersionLen  = 32  // bytes of Config.Version
)

// PoolConfig is what one memberlist pool needs, written once for both
// pools a node may belong to: its region's LAN pool (Config) and the WAN
// pool that joins regions (FederationConfig), which embed it. Every field's
// zero value means the documented default; where the two pools' defaults
// differ (Label, Tuning), DefaultConfig and DefaultFederationConfig give
// them.
type PoolConfig struct {
	// NodeName is this member's name, unique in the pool; in the WAN pool
	// unique across all regions: use "<node>.<region>". Required, at most
	// MaxNodeNameLen printable bytes.
	NodeName string
	// Region is the region this node serves. Required, at most
	// MaxRegionLen printable bytes. It scopes the LAN pool's default
	// Label, so nodes of different regions never form one LAN pool.
	Region string

	// BindAddr is the gossip listen address (UDP and TCP). Zero means
	// "0.0.0.0". Ignored when Transport is set.
	BindAddr string
	// BindPort is the gossip listen port. Zero picks a free port; read it
	// back with Cluster.Local().GossipAddr or Federation.GossipAddr.
	// Ignored when Transport is set.
	BindPort int
	// AdvertiseAddr is the address other members use to reach this node
	// (in the WAN pool it must be routable from the other regions). Zero
	// means the bound address (or a private IP when bound to 0.0.0.0).
	AdvertiseAddr string
	// AdvertisePort is the advertised port. Zero means the bound port.
	AdvertisePort int

	// Join lists seeds as "host:port" (for the WAN pool, in any region).
	// IP seeds are joined at start and re-tried every RejoinInterval while
	// they are not live members; DNS names are re-resolved every
	// RejoinInterval and every resolved address that is not a live member
	// is joined (a Kubernetes headless service). Zero means start a new
	// pool and wait to be joined. Failing to reach the seeds is not fatal.
	Join []string
	// RejoinInterval is how often seeds are re-resolved and re-joined.
	// Zero means 30s.
	RejoinInterval time.Duration
	// Resolver resolves a seed host to IP addresses. Zero means
	// net.DefaultResolver.LookupHost. Tests inject their own.
	Resolver func(ctx context.Context, host string) ([]string, error)

	// Keys is the gossip keyring (AES-GCM, memberlist SecretKey): the first
	// key is the primary (used to encrypt), all keys are tried to decrypt,
	// which allows rotation. Each key is 16, 24 or 32 bytes (see ParseKey).
	// Required unless Dev. Give the WAN pool other keys than the LAN
	// pools'.
	Keys [][]byte
	// Dev allows running without Keys (plain-text gossip). Never in
	// production.
	Dev bool
	// Label is memberlist's packet and stream label: nodes with another
	// label cannot join or talk to this pool. Zero means "herald/"+Region
	// in a LAN pool and "herald-wan" in the WAN pool, whose label must not
	// start with "herald/": so a LAN node can never join the WAN pool nor a
	// WAN node a LAN pool, even with a shared key.
	Label string

	// Tuning holds the failure-detector and gossip timings. Zero fields
	// take the pool's preset: LANTuning in a LAN pool, WANTuning in the WAN
	// pool (which does not use MaxQueuedBroadcasts and InboxSize).
	Tuning Tuning

	// Transport replaces memberlist's NetTransport (BindAddr/BindPort are
	// then ignored). Used by tests to partition nodes or regions
	// (cluster/gossiptest). Zero means memberlist's NetTransport on
	// BindAddr:BindPort.
	Transport memberlist.Transport

	// Logger receives the pool's logs (component=cluster or
	// component=federation) and memberlist's own logs at debug level. Zero
	// means discard.
	Logger *slog.Logger
}

// Config configures one member of a region's LAN pool. Every field's zero
// value means the documented default (DefaultConfig); New fills defaults in
// a copy and validates it.
type Config struct {
	// PoolConfig is the LAN pool membership. Its Label defaults to
	// "herald/"+Region and its Tuning to LANTuning.
	PoolConfig

	// Zone is the availability zone, informational. Zero means none.
	Zone string

	// HTTPURL is this node's public base URL, advertised in node metadata
	// (redirects, admin tooling). Zero means none.
	HTTPURL string
	// Version is the software version advertised in node metadata.
	Version string

	// HomeReplicas is how many home nodes keep a copy of each session's
	// ownership record besides its owner (ADR 0026, 0037): the live members
	// other than the owner with the highest rendezvous score for the
	// session. Zero means 1; more keeps takeovers prompt through the loss
	// of a home node, at a memory cost of HomeReplicas/N of the pool's
	// sessions per node.
	HomeReplicas int

	// DeadGrace is how long the ownership records of a dead or departed
	// node, and the tombstones of released sessions, are kept before being
	// forgotten. Zero means 30s.
	DeadGrace time.Duration

	// OnRevoke is called when a session this node owns must stop being
	// served here: another claim superseded it ("takeover", including a
	// newer claim on this same node) or an admin asked to disconnect it
	// ("admin"). Calls are serial, from one goroutine owned by the Cluster,
	// never from a memberlist callback, and at most once per claim. It must
	// not block long (it delays later revocations) and must not call Close
	// (Close waits for that goroutine). It may call Release and Claim.
	// Zero means ignore.
	OnRevoke func(Revocation)
	// OnExpire, when set, is called with the number of live records just
	// forgotten because their owner left the cluster more than DeadGrace
	// ago (not tombstones of ended streams), from the Cluster's own
	// goroutine. It must be cheap (increment a metric).
	OnExpire func(n int)
}

// DefaultConfig returns the values that zero fields of a Config take, but
// for those derived from other fields (Label is "herald/"+Region,
// AdvertisePort the bound port) or that are functions (Resolver, Logger).
func DefaultConfig() Config {
	return Config{PoolConfig: defaultPool(LANTuning(), ""), HomeReplicas: 1, DeadGrace: 30 * time.Second}
}

// defaultPool is the part of the defaults both pools share.
func defaultPool(t Tuning, label string) PoolConfig {
	return PoolConfig{BindAddr: "0.0.0.0", RejoinInterval: 30 * time.Second, Label: label, Tuning: t}
}

// Tuning holds memberlist timings and this package's own loop intervals.
// Zero fields take the LAN preset values; see LANTuning for the numbers and
// their reasons.
type Tuning struct {
	// ProbeInterval is the failure-detector period: one random member is
	// probed per interval. Preset 400ms (memberlist LAN default 1s).
	ProbeInterval time.Duration
	// ProbeTimeout is the wait for a direct probe ack before indirect
	// probes. Preset 200ms (LAN default 500ms).
	ProbeTimeout time.Duration
	// IndirectChecks is the number of members asked to probe indirectly.
	// Preset 3.
	IndirectChecks int
	// SuspicionMult scales the suspicion timeout: a suspected member is
	// declared dead after SuspicionMult*max(1,log10(N))*ProbeInterval once
	// enough members confirm. Preset 4 (1.6s for N<=10).
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds the suspicion timeout without
	// confirmations to this multiple of the minimum. Preset 3 (4.8s).
	SuspicionMaxTimeoutMult int
	// AwarenessMaxMultiplier caps Lifeguard's back-off of probe timeouts on
	// a slow (overloaded) local node. Preset 8.
	AwarenessMaxMultiplier int
	// GossipInterval is the period of UDP gossip (broadcast delivery).
	// Preset 100ms (LAN default 200ms).
	GossipInterval time.Duration
	// GossipNodes is the number of members gossiped to per interval.
	// Preset 3.
	GossipNodes int
	// GossipToTheDeadTime is how long dead members still receive gossip,
	// which lets a node that was wrongly declared dead learn it and refute.
	// Preset 15s.
	GossipToTheDeadTime time.Duration
	// RetransmitMult sets how many times each broadcast is sent:
	// RetransmitMult*ceil(log10(N+1)). Preset 4.
	RetransmitMult int
	// PushPullInterval is the period of full-state anti-entropy with one
	// random member (scaled up by memberlist above 32 members). It bounds
	// convergence when broadcasts were lost without anyone being declared
	// dead. Preset 10s (LAN default 30s).
	PushPullInterval time.Duration
	// TCPTimeout bounds push/pull, reliable messages and joins. Preset 5s.
	TCPTimeout time.Duration
	// DeadNodeReclaimTime lets a dead member's name be reused from another
	// address after this long (a StatefulSet pod restarted with a new IP).
	// Preset 5s.
	DeadNodeReclaimTime time.Duration
	// ReconnectInterval is how often this node tries to re-join members it
	// saw die (not those that left), so that both sides of a healed
	// partition find each other again; memberlist alone never re-probes a
	// member it declared dead. Preset 1s.
	ReconnectInterval time.Duration
	// ReconnectTimeout is how long a dead member is remembered (listed as
	// "dead" by Members) and re-tried. Preset 10m; at least 2*DeadGrace.
	ReconnectTimeout time.Duration
	// MetaInterval rate-limits metadata re-gossip caused by SetLoad; calls
	// in between are coalesced. SetDraining is not rate-limited.
	// Preset 500ms.
	MetaInterval time.Duration
	// MaxQueuedBroadcasts bounds the ownership records queued for their
	// home nodes and takeover notices (ADR 0026); beyond it records are
	// dropped (Stats.QueueDrops) and push/pull and rehoming repair. Not
	// used by the Federation. Preset 65536.
	MaxQueuedBroadcasts int
	// InboxSize bounds the hand-off queue between memberlist callbacks and
	// the event loop; callbacks never block and count drops
	// (Stats.InboxDrops). Preset 4096.
	InboxSize int
}

// LANTuning returns the preset used for zero Tuning fields: a LAN pool in
// one region, tuned to detect a crashed node in about 2–3 s (measured
// 2–3 s with 3 nodes in this package's tests on 2 loaded cores under -race,
// versus ~5 s with memberlist's DefaultLANConfig) while tolerating pauses
// of about one second on a loaded node: a member is only declared dead after
// it failed a probe (ProbeTimeout 200ms plus indirect probes within the
// 400ms interval) and then did not refute the suspicion for 1.6–4.8 s.
// Lifeguard (AwarenessMaxMultiplier) stretches probe timeouts further on a
// node that notices it is itself slow. The more aggressive numbers measured
// while planning (200ms/100ms, SuspicionMult 2: ~0.7 s) leave no margin for
// a GC or scheduling stall on two busy cores.
func LANTuning() Tuning {
	return Tuning{
		ProbeInterval:           400 * time.Millisecond,
		ProbeTimeout:            200 * time.Millisecond,
		IndirectChecks:          3,
		SuspicionMult:           4,
		SuspicionMaxTimeoutMult: 3,
		AwarenessMaxMultiplier:  8,
		GossipInterval:          100 * time.Millisecond,
		GossipNodes:             3,
		GossipToTheDeadTime:     15 * time.Second,
		RetransmitMult:          4,
		PushPullInterval:        10 * time.Second,
		TCPTimeout:              5 * time.Second,
		DeadNodeReclaimTime:     5 * time.Second,
		ReconnectInterval:       time.Second,
		ReconnectTimeout:        10 * time.Minute,
		MetaInterval:            500 * time.Millisecond,
		MaxQueuedBroadcasts:     65536,
		InboxSize:               4096,
	}
}

// withPreset returns a copy of t with zero fields taken from p.
func (t Tuning) withPreset(p Tuning) Tuning {
	setD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setI := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setD(&t.ProbeInterval, p.ProbeInterval)
	setD(&t.ProbeTimeout, p.ProbeTimeout)
	setI(&t.IndirectChecks, p.IndirectChecks)
	setI(&t.SuspicionMult, p.SuspicionMult)
	setI(&t.SuspicionMaxTimeoutMult, p.SuspicionMaxTimeoutMult)
	setI(&t.AwarenessMaxMultiplier, p.AwarenessMaxMultiplier)
	setD(&t.GossipInterval, p.GossipInterval)
	setI(&t.GossipNodes, p.GossipNodes)
	setD(&t.GossipToTheDeadTime, p.GossipToTheDeadTime)
	setI(&t.RetransmitMult, p.RetransmitMult)
	setD(&t.PushPullInterval, p.PushPullInterval)
	setD(&t.TCPTimeout, p.TCPTimeout)
	setD(&t.DeadNodeReclaimTime, p.DeadNodeReclaimTime)
	setD(&t.ReconnectInterval, p.ReconnectInterval)
	setD(&t.ReconnectTimeout, p.ReconnectTimeout)
	setD(&t.MetaInterval, p.MetaInterval)
	setI(&t.MaxQueuedBroadcasts, p.MaxQueuedBroadcasts)
	setI(&t.InboxSize, p.InboxSize)
	return t
}

func (t Tuning) validate() error {
	durs := []struct {
		name string
		v    time.Duration
	}{
		{"ProbeInterval", t.ProbeInterval}, {"ProbeTimeout", t.ProbeTimeout},
		{"GossipInterval", t.GossipInterval}, {"GossipToTheDeadTime", t.GossipToTheDeadTime},
		{"PushPullInterval", t.PushPullInterval}, {"TCPTimeout", t.TCPTimeout},
		{"DeadNodeReclaimTime", t.DeadNodeReclaimTime}, {"ReconnectInterval", t.ReconnectInterval},
		{"ReconnectTimeout", t.ReconnectTimeout}, {"MetaInterval", t.MetaInterval},
	}
	for _, d := range durs {
		if d.v <= 0 {
			return fmt.Errorf("%w: Tuning.%s must be > 0, got %v", ErrConfig, d.name, d.v)
		}
	}
	ints := []struct {
		name string
		v    int
	}{
		{"IndirectChecks", t.IndirectChecks}, {"SuspicionMult", t.SuspicionMult},
		{"SuspicionMaxTimeoutMult", t.SuspicionMaxTimeoutMult},
		{"AwarenessMaxMultiplier", t.AwarenessMaxMultiplier}, {"GossipNodes", t.GossipNodes},
		{"RetransmitMult", t.RetransmitMult}, {"MaxQueuedBroadcasts", t.MaxQueuedBroadcasts},
		{"InboxSize", t.InboxSize},
	}
	for _, i := range ints {
		if i.v <= 0 {
			return fmt.Errorf("%w: Tuning.%s must be > 0, got %d", ErrConfig, i.name, i.v)
		}
	}
	if t.ProbeTimeout >= t.ProbeInterval {
		return fmt.Errorf("%w: Tuning.ProbeTimeout (%v) must be shorter than Tuning.ProbeInterval (%v)",
			ErrConfig, t.ProbeTimeout, t.ProbeInterval)
	}
	return nil
}

// withDefaults returns a validated copy of p with zero fields taken from
// d, the pool's defaults (Label filled in). what starts error messages: ""
// for the LAN pool, "federation " for the WAN pool.
func (p PoolConfig) withDefaults(what string, d PoolConfig) (PoolConfig, error) {
	if p.NodeName == "" {
		return p, fmt.Errorf("%w: %sNodeName is required", ErrConfig, what)
	}
	if len(p.NodeName) > MaxNodeNameLen || !printable(p.NodeName) {
		return p, fmt.Errorf("%w: %sNodeName %q must be 1..%d printable bytes", ErrConfig, what, clip(p.NodeName), MaxNodeNameLen)
	}
	if p.Region == "" {
		return p, fmt.Errorf("%w: %sRegion is required (node %q)", ErrConfig, what, p.NodeName)
	}
	if len(p.Region) > MaxRegionLen || !printable(p.Region) {
		return p, fmt.Errorf("%w: %sRegion %q must be 1..%d printable bytes", ErrConfig, what, clip(p.Region), MaxRegionLen)
	}
	if len(p.Keys) == 0 && !p.Dev {
		return p, fmt.Errorf("%w: %sKeys is empty: gossip encryption keys are required outside dev mode (set Dev for plain-text gossip)", ErrConfig, what)
	}
	for i, k := range p.Keys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return p, fmt.Errorf("%w: %sKeys[%d] is %d bytes, must be 16, 24 or 32", ErrConfig, what, i, n)
		}
	}
	if p.BindPort < 0 || p.BindPort > 65535 || p.AdvertisePort < 0 || p.AdvertisePort > 65535 {
		return p, fmt.Errorf("%w: %sBindPort %d / AdvertisePort %d out of range", ErrConfig, what, p.BindPort, p.AdvertisePort)
	}
	if p.BindAddr == "" {
		p.BindAddr = d.BindAddr
	}
	if p.AdvertisePort == 0 {
		p.AdvertisePort = p.BindPort
	}
	for _, s := range p.Join {
		if _, _, err := splitSeed(s); err != nil {
			return p, fmt.Errorf("%w: %sJoin seed %q: %w", ErrConfig, what, s, err)
		}
	}
	if p.RejoinInterval < 0 {
		return p, fmt.Errorf("%w: %sRejoinInterval (%v) must not be negative", ErrConfig, what, p.RejoinInterval)
	}
	if p.RejoinInterval == 0 {
		p.RejoinInterval = d.RejoinInterval
	}
	if p.Resolver == nil {
		p.Resolver = net.DefaultResolver.LookupHost
	}
	if p.Label == "" {
		p.Label = d.Label
	}
	if len(p.Label) > memberlist.LabelMaxSize {
		return p, fmt.Errorf("%w: %sLabel is %d bytes, at most %d", ErrConfig, what, len(p.Label), memberlist.LabelMaxSize)
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	p.Tuning = p.Tuning.withPreset(d.Tuning)
	if err := p.Tuning.validate(); err != nil {
		return p, err
	}
	return p, nil
}

// memberlist fills base (memberlist's LAN or WAN defaults) with the pool's
// name, addresses, label, timings and keyring, and log. The keyring's first
// key encrypts, all decrypt; without keys gossip is plain text (Dev).
func (p PoolConfig) memberlist(base *memberlist.Config, log *slog.Logger) (*memberlist.Config, error) {
	mc, t := base, p.Tuning
	mc.Name = p.NodeName
	mc.BindAddr, mc.BindPort = p.BindAddr, p.BindPort
	mc.AdvertiseAddr, mc.AdvertisePort = p.AdvertiseAddr, p.AdvertisePort
	mc.Transport = p.Transport
	mc.Label = p.Label
	mc.Logger = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	mc.ProbeInterval, mc.ProbeTimeout = t.ProbeInterval, t.ProbeTimeout
	mc.IndirectChecks = t.IndirectChecks
	mc.SuspicionMult, mc.SuspicionMaxTimeoutMult = t.SuspicionMult, t.SuspicionMaxTimeoutMult
	mc.AwarenessMaxMultiplier = t.AwarenessMaxMultiplier
	mc.GossipInterval, mc.GossipNodes = t.GossipInterval, t.GossipNodes
	mc.GossipToTheDeadTime = t.GossipToTheDeadTime
	mc.RetransmitMult = t.RetransmitMult
	mc.PushPullInterval = t.PushPullInterval
	mc.TCPTimeout = t.TCPTimeout
	mc.DeadNodeReclaimTime = t.DeadNodeReclaimTime
	if len(p.Keys) > 0 {
		kr, err := memberlist.NewKeyring(p.Keys, p.Keys[0])
		if err != nil {
			return nil, err
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	return mc, nil
}

// joiner is the pool's seed joiner; pool ("" or "WAN ") starts its log
// messages, attempts and failures count its joins.
func (p PoolConfig) joiner(pool string, attempts, failures *atomic.Uint64) joiner {
	return joiner{seeds: p.Join, resolve: p.Resolver, timeout: p.Tuning.TCPTimeout, every: p.RejoinInterval,
		pool: pool, attempts: attempts, failures: failures}
}

// withDefaults returns a validated copy of cfg with defaults filled in.
func (cfg Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	d.Label = "herald/" + cfg.Region
	pc, err := cfg.PoolConfig.withDefaults("", d.PoolConfig)
	if err != nil {
		return cfg, err
	}
	cfg.PoolConfig = pc
	if len(cfg.Zone) > MaxRegionLen || !printable(cfg.Zone) {
		return cfg, fmt.Errorf("%w: Zone %q must be at most %d printable bytes", ErrConfig, clip(cfg.Zone), MaxRegionLen)
	}
	if len(cfg.HTTPURL) > MaxURLLen || !printable(cfg.HTTPURL) {
		return cfg, fmt.Errorf("%w: HTTPURL must be at most %d printable bytes, got %d", ErrConfig, MaxURLLen, len(cfg.HTTPURL))
	}
	if len(cfg.Version) > MaxVersionLen || !printable(cfg.Version) {
		return cfg, fmt.Errorf("%w: Version %q must be at most %d printable bytes", ErrConfig, clip(cfg.Version), MaxVersionLen)
	}
	if cfg.DeadGrace < 0 {
		return cfg, fmt.Errorf("%w: DeadGrace (%v) must not be negative", ErrConfig, cfg.DeadGrace)
	}
	if cfg.DeadGrace == 0 {
		cfg.DeadGrace = d.DeadGrace
	}
	if cfg.HomeReplicas < 0 {
		return cfg, fmt.Errorf("%w: HomeReplicas (%d) must not be negative", ErrConfig, cfg.HomeReplicas)
	}
	if cfg.HomeReplicas == 0 {
		cfg.HomeReplicas = d.HomeReplicas
	}
	if floor := 2 * cfg.DeadGrace; cfg.Tuning.ReconnectTimeout < floor {
		cfg.Tuning.ReconnectTimeout = floor
	}
	return cfg, nil
}

// splitSeed splits "host:port" and validates the port.
func splitSeed(s string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 || n > 65535 {
		return "", 0, fmt.Errorf("port %q must be 1..65535", p)
	}
	if h == "" {
		return "", 0, fmt.Errorf("empty host")
	}
	return h, n, nil
}

// ParseKey decodes a gossip key given as standard base64 of 16, 24 or 32
// bytes (AES-128/192/256), as printed by GenerateKey.
func ParseKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: gossip key is not standard base64: %w", ErrConfig, err)
	}
	if n := len(k); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("%w: gossip key decodes to %d bytes, must be 16, 24 or 32", ErrConfig, n)
	}
	return k, nil
}

// GenerateKey returns a new random 32-byte gossip key in the form ParseKey
// accepts.
func GenerateKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never returns an error (Go 1.24+).
	return base64.StdEncoding.EncodeToString(k)
}

// printable reports whether s is valid UTF-8 without ASCII control
// characters. Valid UTF-8 matters: JSON would silently rewrite invalid bytes,
// so an identifier could change in transit.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// clip shortens s for error messages.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
