package cluster

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/hashicorp/memberlist"
)

// Member states reported by Member.State.
const (
	StateAlive    = "alive"    // member of the pool, accepting streams
	StateDraining = "draining" // alive, but closing streams and refusing new ones (SetDraining, Leave)
	StateSuspect  = "suspect"  // reserved: memberlist v0.7.0 reports no suspicion event, so it is never set
	StateDead     = "dead"     // declared failed by the failure detector
	StateLeft     = "left"     // departed gracefully (Leave)
)

// Member is one node of the pool as this node currently knows it.
type Member struct {
	Name    string
	Region  string
	Zone    string
	URL     string // advertised public HTTP URL
	Version string
	// State is StateAlive, StateDraining, StateDead or StateLeft.
	State string
	// Streams and Target are the load last advertised by SetLoad.
	Streams, Target int
	// GossipAddr is the member's gossip address, "ip:port".
	GossipAddr string
	// Health is memberlist's local health score (0 is best; higher means
	// the node observed itself being slow), as last advertised.
	Health int
}

// metadata states; "leaving" is set by Leave just before memberlist's Leave so
// that peers can tell a departure from a crash (memberlist v0.7.0 does not).
const (
	metaAlive    = "alive"
	metaDraining = "draining"
	metaLeaving  = "leaving"
)

// maxLoad clamps advertised load figures so node metadata has a fixed
// worst-case size (checked in New against memberlist.MetaMaxSize).
const maxLoad = math.MaxInt32

// nodeMeta is the JSON node metadata gossiped by memberlist (at most
// memberlist.MetaMaxSize = 512 bytes).
type nodeMeta struct {
	V       int    `json:"v"`
	W       int    `json:"w,omitempty"` // wire features: wireBinaryBatches
	Region  string `json:"r"`
	Zone    string `json:"z,omitempty"`
	URL     string `json:"u,omitempty"`
	Version string `json:"ver,omitempty"`
	State   string `json:"s"`
	Streams int    `json:"n"`
	Target  int    `json:"t"`
	Health  int    `json:"h"`
}

func (m nodeMeta) encode() []byte { return marshalCompact(m) }

// checkSize fails when the metadata could exceed memberlist's limit once the
// load figures grow to their maximum.
func (m nodeMeta) checkSize() error {
	m.State, m.Streams, m.Target, m.Health = metaDraining, maxLoad, maxLoad, maxLoad
	if n := len(m.encode()); n > memberlist.MetaMaxSize {
		return fmt.Errorf("%w: node metadata (Region, Zone, HTTPURL, Version) encodes to %d bytes, memberlist allows %d",
			ErrConfig, n, memberlist.MetaMaxSize)
	}
	return nil
}

func decodeMeta(b []byte) (nodeMeta, bool) {
	var m nodeMeta
	if len(b) == 0 || len(b) > memberlist.MetaMaxSize || json.Unmarshal(b, &m) != nil || m.V < 1 {
		return nodeMeta{}, false
	}
	return m, true
}

// memberEntry is this node's view of one peer; owned by the event loop,
// read under Cluster.memMu.
type memberEntry struct {
	name      string
	addr      string
	meta      nodeMeta
	raw       []byte // meta as gossiped, to detect changes in reconcile
	down      bool   // dead or left
	left      bool   // down after announcing metaLeaving
	downSince time.Time
}

func (e *memberEntry) state() string {
	switch {
	case e.down && e.left:
		return StateLeft
	case e.down:
		return StateDead
	case e.meta.State == metaDraining || e.meta.State == metaLeaving:
		return StateDraining
	default:
		return StateAlive
	}
}

func (e *memberEntry) public() Member {
	return Member{
		Name: e.name, Region: e.meta.Region, Zone: e.meta.Zone, URL: e.meta.URL,
		Version: e.meta.Version, State: e.state(), Streams: e.meta.Streams,
		Target: e.meta.Target, GossipAddr: e.addr, Health: e.meta.Health,
	}
}

// Members returns every member this node knows, itself included, sorted by
// name. Dead members are listed for Tuning.ReconnectTimeout, departed ones
// for 2*DeadGrace.
func (c *Cluster) Members() []Member {
	out := []Member{c.Local()}
	c.memMu.RLock()
	for _, e := range c.members {
		out = append(out, e.public())
	}
	c.memMu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Local returns this node as a Member.
func (c *Cluster) Local() Member {
	c.metaMu.Lock()
	m := c.meta
	c.metaMu.Unlock()
	e := memberEntry{name: c.cfg.NodeName, meta: m, addr: c.localAddr}
	pub := e.public()
	pub.Health = c.ml.GetHealthScore()
	return pub
}

// HealthScore returns memberlist's local health score (Lifeguard awareness):
// 0 is healthy; it rises when this node misses probes or must refute
// suspicion, i.e. when it is itself slow or its network is lossy.
func (c *Cluster) HealthScore() int { return c.ml.GetHealthScore() }

// SetLoad advertises this node's load. The metadata update is coalesced and
// re-gossiped at most every Tuning.MetaInterval by the Cluster's meta loop.
func (c *Cluster) SetLoad(streams, target int) {
	streams = min(max(streams, 0), maxLoad)
	target = min(max(target, 0), maxLoad)
	c.metaMu.Lock()
	changed := c.meta.Streams != streams || c.meta.Target != target
	c.meta.Streams, c.meta.Target = streams, target
	c.metaMu.Unlock()
	if changed {
		c.kickMeta(false)
	}
}

// SetDraining advertises state "draining" (the node closes its streams and
// accepts no new ones). It is gossiped at once, not rate-limited.
func (c *Cluster) SetDraining() {
	c.metaMu.Lock()
	changed := c.meta.State == metaAlive
	if changed {
		c.meta.State = metaDraining
	}
	c.metaMu.Unlock()
	if changed {
		c.kickMeta(true)
	}
}

// updateMeta refreshes the health figure and gossips the metadata. The
// wait for the broadcast is short: it only confirms transmission.
func (c *Cluster) updateMeta() {
	h := c.ml.GetHealthScore()
	c.metaMu.Lock()
	c.meta.Health = min(h, maxLoad)
	c.metaMu.Unlock()
	c.gossipMeta(c.cfg.Tuning.TCPTimeout)
}
