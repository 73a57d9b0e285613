package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"strconv"
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

// Config configures one cluster member. Every field's zero value means the
// documented default; New fills defaults in a copy and validates it.
type Config struct {
	// NodeName is this member's name, unique in the pool. Required.
	NodeName string
	// Region is the region this node serves. Required: it scopes the
	// default Label, so nodes of different regions never form one LAN pool.
	Region string
	// Zone is the availability zone, informational. Zero means none.
	Zone string

	// BindAddr is the gossip listen address (UDP and TCP). Zero means
	// "0.0.0.0". Ignored when Transport is set.
	BindAddr string
	// BindPort is the gossip listen port. Zero picks a free port; read it
	// back with Local().GossipAddr. Ignored when Transport is set.
	BindPort int
	// AdvertiseAddr is the address other members use to reach this node.
	// Zero means the bound address (or a private IP when bound to 0.0.0.0).
	AdvertiseAddr string
	// AdvertisePort is the advertised port. Zero means the bound port.
	AdvertisePort int

	// Join lists seeds as "host:port". IP seeds are joined at start and
	// re-tried every RejoinInterval while not a member; DNS names are
	// re-resolved every RejoinInterval and every resolved address that is
	// not a live member is joined (a Kubernetes headless service). Zero
	// means start a new cluster and wait to be joined. Failing to reach the
	// seeds is not fatal.
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
	// Required unless Dev.
	Keys [][]byte
	// Dev allows running without Keys (plain-text gossip). Never in
	// production.
	Dev bool
	// Label is memberlist's packet and stream label: nodes with another
	// label cannot join or talk to this pool. Zero means "herald/"+Region.
	Label string

	// HTTPURL is this node's public base URL, advertised in node metadata
	// (redirects, admin tooling). Zero means none.
	HTTPURL string
	// Version is the software version advertised in node metadata.
	Version string

	// Tuning holds the failure-detector and gossip timings. Zero fields
	// take the LAN preset values (see LANTuning).
	Tuning Tuning

	// HomeReplicas is how many home nodes keep a copy of each session's
	// ownership record besides its owner (ADR 0026): the live members with
	// the highest rendezvous score for the session. Zero means 1; more
	// keeps takeovers prompt through the loss of a home node, at a memory
	// cost of HomeReplicas/N of the pool's sessions per node.
	HomeReplicas int

	// DeadGrace is how long the ownership records of a dead or departed
	// node, and the tombstones of released sessions, are kept before being
	// forgotten. Zero means 30s.
	DeadGrace time.Duration

	// Transport replaces memberlist's NetTransport (BindAddr/BindPort are
	// then ignored). Used by tests to partition nodes (cluster/gossiptest).
	// Zero means memberlist's NetTransport on BindAddr:BindPort.
	Transport memberlist.Transport

	// Logger receives the cluster's logs (component=cluster) and
	// memberlist's own logs at debug level. Zero means discard.
	Logger *slog.Logger

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
	// dropped (Stats.QueueDrops) and push/pull and rehoming repair. In a
	// Federation it bounds the broadcast queue. Preset 65536.
	MaxQueuedBroadcasts int
	// InboxSize bounds the hand-off queue between memberlist callbacks and
	// the event loop; callbacks never block and count drops
	// (Stats.InboxDrops). Preset 4096.
	InboxSize int
	// DisableCompression turns off memberlist's LZW compression of packets
	// and streams. Zero (false) keeps memberlist's default, compressed.
	DisableCompression bool
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

const (
	defaultRejoinInterval = 30 * time.Second
	defaultDeadGrace      = 30 * time.Second
)

// withDefaults returns a copy of t with zero fields taken from LANTuning.
func (t Tuning) withDefaults() Tuning { return t.withPreset(LANTuning()) }

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

// withDefaults returns a validated copy of cfg with defaults filled in.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.NodeName == "" {
		return cfg, fmt.Errorf("%w: NodeName is required", ErrConfig)
	}
	if len(cfg.NodeName) > MaxNodeNameLen || !printable(cfg.NodeName) {
		return cfg, fmt.Errorf("%w: NodeName %q must be 1..%d printable bytes", ErrConfig, clip(cfg.NodeName), MaxNodeNameLen)
	}
	if cfg.Region == "" {
		return cfg, fmt.Errorf("%w: Region is required (node %q)", ErrConfig, cfg.NodeName)
	}
	if len(cfg.Region) > MaxRegionLen || !printable(cfg.Region) {
		return cfg, fmt.Errorf("%w: Region %q must be 1..%d printable bytes", ErrConfig, clip(cfg.Region), MaxRegionLen)
	}
	if len(cfg.Zone) > MaxRegionLen || !printable(cfg.Zone) {
		return cfg, fmt.Errorf("%w: Zone %q must be at most %d printable bytes", ErrConfig, clip(cfg.Zone), MaxRegionLen)
	}
	if len(cfg.HTTPURL) > MaxURLLen || !printable(cfg.HTTPURL) {
		return cfg, fmt.Errorf("%w: HTTPURL must be at most %d printable bytes, got %d", ErrConfig, MaxURLLen, len(cfg.HTTPURL))
	}
	if len(cfg.Version) > MaxVersionLen || !printable(cfg.Version) {
		return cfg, fmt.Errorf("%w: Version %q must be at most %d printable bytes", ErrConfig, clip(cfg.Version), MaxVersionLen)
	}
	if len(cfg.Keys) == 0 && !cfg.Dev {
		return cfg, fmt.Errorf("%w: Keys is empty: gossip encryption keys are required outside dev mode (set Dev for plain-text gossip)", ErrConfig)
	}
	for i, k := range cfg.Keys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return cfg, fmt.Errorf("%w: Keys[%d] is %d bytes, must be 16, 24 or 32", ErrConfig, i, n)
		}
	}
	if cfg.BindPort < 0 || cfg.BindPort > 65535 || cfg.AdvertisePort < 0 || cfg.AdvertisePort > 65535 {
		return cfg, fmt.Errorf("%w: BindPort %d / AdvertisePort %d out of range", ErrConfig, cfg.BindPort, cfg.AdvertisePort)
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	if cfg.AdvertisePort == 0 {
		cfg.AdvertisePort = cfg.BindPort
	}
	for _, s := range cfg.Join {
		if _, _, err := splitSeed(s); err != nil {
			return cfg, fmt.Errorf("%w: Join seed %q: %w", ErrConfig, s, err)
		}
	}
	if cfg.RejoinInterval < 0 || cfg.DeadGrace < 0 {
		return cfg, fmt.Errorf("%w: RejoinInterval (%v) and DeadGrace (%v) must not be negative", ErrConfig, cfg.RejoinInterval, cfg.DeadGrace)
	}
	if cfg.RejoinInterval == 0 {
		cfg.RejoinInterval = defaultRejoinInterval
	}
	if cfg.DeadGrace == 0 {
		cfg.DeadGrace = defaultDeadGrace
	}
	if cfg.HomeReplicas < 0 {
		return cfg, fmt.Errorf("%w: HomeReplicas (%d) must not be negative", ErrConfig, cfg.HomeReplicas)
	}
	if cfg.HomeReplicas == 0 {
		cfg.HomeReplicas = 1
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver.LookupHost
	}
	if cfg.Label == "" {
		cfg.Label = "herald/" + cfg.Region
	}
	if len(cfg.Label) > memberlist.LabelMaxSize {
		return cfg, fmt.Errorf("%w: Label is %d bytes, at most %d", ErrConfig, len(cfg.Label), memberlist.LabelMaxSize)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Tuning = cfg.Tuning.withDefaults()
	if err := cfg.Tuning.validate(); err != nil {
		return cfg, err
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
