package cluster

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Federation: one memberlist pool over the WAN that joins the regions
// (ADR 0007, step 4). It is separate from every region's LAN pool (own
// label, own timings, usually own key) and carries, per node, the region it
// serves, the region's client-facing URL, a serving state and, per origin
// region, the newest heartbeat this node has read from its copy of that
// origin's event store. From these, every node derives the status of every
// region (Regions) and the endpoints clients of this region can fail over
// to (Alternates). Session records stay in the LAN pools.
//
// Guarantees:
//   - A region is "down" once none of its members is alive: within the WAN
//     preset's detection time after the last one crashed (see WANTuning),
//     within a gossip round after the last one left (Leave). It stays
//     listed as down for Tuning.ReconnectTimeout, then is forgotten.
//   - Region Seen is a minimum over the region's alive members, so
//     "region R has seen origin O's heartbeat >= T" holds on every alive
//     node of R that reports O (a member that does not report O is not
//     counted; a region whose nodes report nothing for O has no entry).
//   - A member whose metadata does not decode (another version, garbage)
//     is listed by Members with Region "" and never counts for a region.
//   - State changes (SetState) are gossiped at once; Seen updates (SetSeen)
//     at most every Tuning.MetaInterval, coalesced, and the last value
//     always goes out.
//
// Node names are global to the WAN pool: the caller must make them unique
// across regions, e.g. "<node>.<region>" ("herald-0.eu-west"). Two nodes
// of different regions with the same name conflict in memberlist and one
// of them is not a member.

// Region states reported by RegionStatus.State, besides StateAlive and
// StateDraining, and the extra node state accepted by SetState.
const (
	// StateEvacuating: the node (or region) is being evacuated: clients
	// should move to another region (Alternates), not to another node of
	// this one.
	StateEvacuating = "evacuating"
	// StateDown: a region none of whose known members is alive.
	StateDown = "down"
)

// FederationConfig configures this node's membership in the WAN pool that
// joins regions. Every field's zero value means the documented default
// (DefaultFederationConfig); NewFederation fills defaults in a copy and
// validates it.
type FederationConfig struct {
	// PoolConfig is the WAN pool membership. Its NodeName must be unique
	// across all regions ("<node>.<region>"), its Label defaults to
	// "herald-wan" and must not start with "herald/" (the LAN pools'
	// labels), and its Tuning defaults to WANTuning.
	PoolConfig

	// RegionURL is the client-facing base URL of this region: what clients
	// of other regions fail over to. Zero means this node advertises no URL
	// (it still counts for its region's status). At most MaxURLLen bytes.
	RegionURL string
}

// DefaultFederationConfig returns the values that zero fields of a
// FederationConfig take, but for those derived from other fields
// (AdvertisePort is the bound port) or that are functions (Resolver,
// Logger).
func DefaultFederationConfig() FederationConfig {
	return FederationConfig{PoolConfig: defaultPool(WANTuning(), "herald-wan")}
}

// WANTuning returns the preset used for zero FederationConfig.Tuning
// fields: links between regions, with round trips up to ~300 ms
// (antipodal) and occasional loss.
//
// A crashed node is declared dead in about 5–15 s, versus ~41 s with
// memberlist's DefaultWANConfig (probe 5s/3s, SuspicionMult 6): a survivor
// probes it within about one ProbeInterval (1s), the probe fails after
// ProbeTimeout (600ms, twice the worst inter-region RTT) plus indirect and
// TCP fallback probes until the end of the interval, and the suspicion then
// runs for SuspicionMult*ProbeInterval = 4 s (pools of up to 10 nodes;
// ×log10(N) above) when enough other members confirm it, up to
// SuspicionMaxTimeoutMult times that (12 s) when they do not (e.g. the
// whole region died and only one other region observes it). A region that
// loses all its nodes therefore leaves the other regions' Alternates
// within ~6–14 s. Measured: 9.8 s for a crashed region of two nodes seen
// from a region of two (one confirmation, so the suspicion runs ~7 s), on
// loopback under -race (TestFederationWANPresetDetection).
//
// Why not faster: one lost probe across the WAN only starts a suspicion,
// which the node refutes within a gossip round or two (GossipInterval
// 200ms, plus an RTT); 4 s leaves room for ~a dozen gossip rounds and for
// a pause of a couple of seconds on a loaded node before a live region is
// wrongly marked down, and Lifeguard stretches timeouts further on a node
// that notices it is itself slow (AwarenessMaxMultiplier 8).
//
// The other numbers: GossipNodes 4 (as DefaultWANConfig: fewer, wider
// rounds), PushPullInterval 30s (anti-entropy: repairs metadata updates
// lost in transit), TCPTimeout 10s (join and push/pull over a long link),
// GossipToTheDeadTime 30s, DeadNodeReclaimTime 10s (a restarted pod with
// a new IP may rejoin under its name), ReconnectInterval 5s and
// ReconnectTimeout 30m (members seen dead are re-joined for this long, so
// two regions find each other again after a partition, and a dead region
// stays listed as down for as long), MetaInterval 500ms (SetSeen rate).
func WANTuning() Tuning {
	return Tuning{
		ProbeInterval:           time.Second,
		ProbeTimeout:            600 * time.Millisecond,
		IndirectChecks:          3,
		SuspicionMult:           4,
		SuspicionMaxTimeoutMult: 3,
		AwarenessMaxMultiplier:  8,
		GossipInterval:          200 * time.Millisecond,
		GossipNodes:             4,
		GossipToTheDeadTime:     30 * time.Second,
		RetransmitMult:          4,
		PushPullInterval:        30 * time.Second,
		TCPTimeout:              10 * time.Second,
		DeadNodeReclaimTime:     10 * time.Second,
		ReconnectInterval:       5 * time.Second,
		ReconnectTimeout:        30 * time.Minute,
		MetaInterval:            500 * time.Millisecond,
		MaxQueuedBroadcasts:     4096,
		InboxSize:               4096,
	}
}

// withDefaults returns a validated copy of cfg with defaults filled in.
func (cfg FederationConfig) withDefaults() (FederationConfig, error) {
	pc, err := cfg.PoolConfig.withDefaults("federation ", DefaultFederationConfig().PoolConfig)
	if err != nil {
		return cfg, err
	}
	cfg.PoolConfig = pc
	if len(cfg.RegionURL) > MaxURLLen || !printable(cfg.RegionURL) {
		return cfg, fmt.Errorf("%w: federation RegionURL must be at most %d printable bytes, got %d", ErrConfig, MaxURLLen, len(cfg.RegionURL))
	}
	if strings.HasPrefix(cfg.Label, "herald/") {
		return cfg, fmt.Errorf("%w: federation Label %q must not start with \"herald/\" (the LAN pools' labels)", ErrConfig, clip(cfg.Label))
	}
	return cfg, nil
}

// Federation is this node's membership in the WAN pool that joins regions.
// Build it with NewFederation, stop it with Leave (graceful) and Close. All
// methods are safe for concurrent use.
//
// Goroutines, each started by goFunc, counted in wg and stopped by stopCh:
// the meta loop (UpdateNode) and the join loop (seeds, dead members, and
// forgetting members down for longer than ReconnectTimeout).
//
// The member table is written directly by memberlist's event callbacks
// (decode at most 512 bytes of metadata, one map update under memMu, one
// log line, as memberlist itself logs under its lock); memMu
// is never held while calling into memberlist, and readers hold it only to
// copy, so the callbacks never wait on anything slow and nothing is
// dropped. memMu and metaMu are never held together, nor across a
// memberlist call (NodeMeta takes metaMu inside UpdateNode).
type Federation struct {
	pool
	cfg FederationConfig

	metaMu      sync.Mutex
	meta        wanMeta
	seenDropped int // origins left out of the last SetSeen

	memMu   sync.RWMutex
	members map[string]*wanEntry // peers, not self

	joinAttempts, joinFailures atomic.Uint64 // seeds and dead members
}

// NewFederation validates cfg, creates the memberlist instance, starts the
// Federation's goroutines and makes one attempt to join the seeds. Failing
// to reach the seeds is not an error: it is logged and retried every
// RejoinInterval.
func NewFederation(cfg FederationConfig) (*Federation, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	f := &Federation{
		pool:    newPool("federation", cfg.Logger.With("component", "federation", "node", cfg.NodeName, "region", cfg.Region)),
		cfg:     cfg,
		meta:    wanMeta{V: 1, Region: cfg.Region, URL: cfg.RegionURL, State: StateAlive},
		members: make(map[string]*wanEntry),
	}
	if err := f.meta.checkSize(); err != nil {
		f.cancel()
		return nil, err
	}

	mc, err := cfg.memberlist(memberlist.DefaultWANConfig(), f.log)
	if err != nil {
		f.cancel()
		return nil, fmt.Errorf("%w: federation Keys: %w", ErrConfig, err)
	}
	mc.Delegate = fedDelegate{f}
	mc.Events = fedEvents{f}

	ml, err := memberlist.Create(mc)
	if err != nil {
		f.cancel()
		return nil, fmt.Errorf("cluster: starting WAN memberlist for node %q: %w", cfg.NodeName, err)
	}
	f.started(ml, cfg.joiner("WAN ", &f.joinAttempts, &f.joinFailures))

	f.goFunc(func() { f.metaLoop(cfg.Tuning.MetaInterval, func() { f.gossipMeta(cfg.Tuning.TCPTimeout) }) })
	if len(cfg.Join) > 0 {
		f.joinSeeds()
	}
	f.goFunc(f.joinLoop)
	f.log.Info("federation member started", "gossip_addr", f.localAddr, "url", cfg.RegionURL,
		"label", cfg.Label, "encrypted", len(cfg.Keys) > 0, "seeds", len(cfg.Join))
	return f, nil
}

// GossipAddr returns this node's gossip address, "ip:port": the advertised
// address, with the port actually bound when BindPort was 0.
func (f *Federation) GossipAddr() string { return f.localAddr }

// SetState advertises this node's serving state: StateAlive (the default),
// StateDraining (this node is closing its streams; its region may still
// serve) or StateEvacuating (the region is being evacuated: clients go to
// other regions). It is gossiped at once, not rate-limited. Other values
// are logged and ignored, as are calls after Leave.
func (f *Federation) SetState(state string) {
	switch state {
	case StateAlive, StateDraining, StateEvacuating:
	default:
		f.log.Error("SetState: unknown state ignored", "state", clip(state))
		return
	}
	f.metaMu.Lock()
	changed := f.meta.State != state && f.meta.State != metaLeaving
	if changed {
		f.meta.State = state
	}
	f.metaMu.Unlock()
	if changed {
		f.log.Info("federation state changed", "state", state)
		f.kickMeta(true)
	}
}

// SetSeen advertises, per origin region, the newest heartbeat (unix ms)
// this node has read from its copy of that origin's event store. The map is
// copied. Re-gossip is coalesced and happens at most every
// Tuning.MetaInterval; the last value set is always gossiped.
//
// Node metadata is limited to 512 bytes (memberlist.MetaMaxSize): origins
// are kept in name order while they fit (with the longest state, so a later
// SetState never overflows), and the rest are left out and logged. With a
// 40-byte RegionURL, a 9-byte Region and 13-digit millisecond values, 15
// origins of 10 bytes fit (each costs its name plus 17 bytes). Origins that are not
// valid region names (empty, longer than MaxRegionLen, not printable) are
// left out too. Local().Seen shows what is advertised.
func (f *Federation) SetSeen(seen map[string]int64) {
	f.metaMu.Lock()
	kept, dropped := fitSeen(f.meta, seen)
	changed := !maps.Equal(f.meta.Seen, kept)
	f.meta.Seen = kept
	warn := dropped > 0 && dropped != f.seenDropped
	f.seenDropped = dropped
	f.metaMu.Unlock()
	if warn {
		f.log.Warn("SetSeen: origins left out of node metadata (512-byte limit or invalid names)",
			"dropped", dropped, "kept", len(kept))
	}
	if changed {
		f.kickMeta(false)
	}
}

// Leave announces a graceful departure: state "leaving" in metadata, then
// memberlist's Leave, waiting at most timeout for it to be gossiped. Peers
// list the member as not alive within a gossip round. The "leaving" state
// is best effort: memberlist's leave message replaces the metadata update
// in its queue, so a peer that had not received the update yet (a loaded
// node, a lost packet) takes the departure for a crash and re-tries the
// member for ReconnectTimeout (harmless: the joins fail). Close must still
// be called.
func (f *Federation) Leave(timeout time.Duration) error {
	return f.leave(timeout, func() {
		f.metaMu.Lock()
		f.meta.State = metaLeaving
		f.metaMu.Unlock()
	})
}

// Close shuts memberlist down (without Leave: peers see a crash) and stops
// every goroutine of the Federation, waiting for them. Idempotent.
func (f *Federation) Close() error { return f.close() }

// fedDelegate implements memberlist.Delegate: node metadata only; the
// federation sends no user messages and no push/pull state of its own.
type fedDelegate struct{ f *Federation }

// fedEvents implements memberlist.EventDelegate.
type fedEvents struct{ f *Federation }

var (
	_ memberlist.Delegate      = fedDelegate{}
	_ memberlist.EventDelegate = fedEvents{}
)

func (d fedDelegate) NodeMeta(limit int) []byte {
	d.f.metaMu.Lock()
	b := d.f.meta.encode()
	d.f.metaMu.Unlock()
	if len(b) > limit { // cannot happen: SetSeen keeps it within MetaMaxSize
		return nil
	}
	return b
}

func (fedDelegate) NotifyMsg([]byte)                           {}
func (fedDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (fedDelegate) LocalState(join bool) []byte                { return nil }
func (fedDelegate) MergeRemoteState(buf []byte, join bool)     {}

func (e fedEvents) NotifyJoin(n *memberlist.Node) {
	e.f.onAlive(n.Name, n.Address(), n.Meta, time.Now())
}

func (e fedEvents) NotifyUpdate(n *memberlist.Node) {
	e.f.onAlive(n.Name, n.Address(), n.Meta, time.Now())
}

// NotifyLeave must not read n.State (stale in memberlist v0.7.0); the event
// itself means dead or left.
func (e fedEvents) NotifyLeave(n *memberlist.Node) {
	e.f.onDown(n.Name, time.Now())
}

// onAlive records that memberlist sees name alive (join or metadata
// update). raw is memberlist's memory: it is only decoded here.
func (f *Federation) onAlive(name, addr string, raw []byte, now time.Time) {
	if name == f.cfg.NodeName {
		return
	}
	meta, ok := decodeWANMeta(raw)
	f.memMu.Lock()
	e := f.members[name]
	fresh, back := e == nil, e != nil && !e.alive
	if fresh {
		e = &wanEntry{name: name}
		f.members[name] = e
	}
	prevState := e.meta.State
	e.addr, e.meta, e.metaOK = addr, meta, ok
	e.alive, e.left, e.downSince = true, false, time.Time{}
	f.memMu.Unlock()
	switch {
	case !ok:
		f.log.Warn("WAN member metadata does not decode; member ignored for region status",
			"member", name, "addr", addr, "bytes", len(raw))
	case fresh || back:
		f.log.Info("WAN member up", "member", name, "addr", addr, "member_region", meta.Region, "state", meta.State)
	case prevState != meta.State:
		f.log.Info("WAN member state changed", "member", name, "member_region", meta.Region, "state", meta.State)
	}
}

// onDown records that memberlist declared name dead or departed. A member
// whose last metadata said "leaving" has left and is not reconnected.
func (f *Federation) onDown(name string, now time.Time) {
	if name == f.cfg.NodeName {
		return
	}
	f.memMu.Lock()
	e := f.members[name]
	if e == nil {
		e = &wanEntry{name: name}
		f.members[name] = e
	} else if !e.alive && !e.downSince.IsZero() {
		f.memMu.Unlock()
		return
	}
	e.alive, e.left, e.downSince = false, e.meta.State == metaLeaving, now
	region, left := e.meta.Region, e.left
	f.memMu.Unlock()
	f.log.Info("WAN member down", "member", name, "member_region", region, "left", left)
}

// joinLoop re-joins seeds every RejoinInterval; every ReconnectInterval it
// re-joins members that died (not those that left) and forgets members
// down for longer than ReconnectTimeout.
func (f *Federation) joinLoop() {
	seeds := time.NewTicker(f.cfg.RejoinInterval)
	defer seeds.Stop()
	dead := time.NewTicker(f.cfg.Tuning.ReconnectInterval)
	defer dead.Stop()
	for {
		select {
		case <-f.stopCh:
			return
		case <-seeds.C:
			if len(f.cfg.Join) > 0 {
				f.joinSeeds()
			}
		case now := <-dead.C:
			f.forget(now)
			f.reconnectDead(now)
		}
	}
}

// joinSeeds joins the WAN seeds that are not live members (nor this node).
func (f *Federation) joinSeeds() {
	known := map[string]bool{f.localAddr: true}
	f.memMu.RLock()
	for _, e := range f.members {
		if e.alive {
			known[e.addr] = true
		}
	}
	f.memMu.RUnlock()
	f.join.joinSeeds(f.ctx, known)
}

// reconnectDead tries to join WAN members that died (not those that left)
// less than ReconnectTimeout ago, so two regions find each other again
// after a partition.
func (f *Federation) reconnectDead(now time.Time) {
	var addrs []string
	f.memMu.RLock()
	for _, e := range f.members {
		if !e.alive && !e.left && e.addr != "" && now.Sub(e.downSince) < f.cfg.Tuning.ReconnectTimeout {
			addrs = append(addrs, e.addr)
		}
	}
	f.memMu.RUnlock()
	f.join.reconnect(addrs)
}

// forget deletes members down for at least ReconnectTimeout.
func (f *Federation) forget(now time.Time) {
	f.memMu.Lock()
	defer f.memMu.Unlock()
	for name, e := range f.members {
		if e.expired(now, f.cfg.Tuning.ReconnectTimeout) {
			delete(f.members, name)
		}
	}
}
