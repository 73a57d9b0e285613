package cluster

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/memberlist"
)

// WANMember is one node of the WAN pool as this node currently knows it.
type WANMember struct {
	Name   string
	Region string // "" when the member's metadata did not decode
	URL    string // its region's client-facing URL; may be empty
	// State is the advertised state: StateAlive, StateDraining,
	// StateEvacuating, or "leaving" once it called Leave; the last known
	// one for a member that is not Alive; "" when metadata did not decode.
	State string
	// Alive is memberlist's view: false once the member was declared dead
	// or left. Down members are listed for Tuning.ReconnectTimeout.
	Alive bool
	// Addr is the member's gossip address, "ip:port".
	Addr string
	// Seen is the member's last advertised Seen map (see SetSeen); a copy.
	Seen map[string]int64
}

// RegionStatus is one region of the federation as this node sees it,
// derived from the metadata of the region's members.
type RegionStatus struct {
	Name string
	// URLs are the distinct RegionURLs of the region's alive members in
	// state StateAlive, sorted; nil when none.
	URLs []string
	// Alive counts the region's alive members, whatever their state.
	Alive int
	// Serving counts the region's alive members in state StateAlive.
	Serving int
	// State is StateAlive if Serving > 0; otherwise StateEvacuating if an
	// alive member is evacuating, StateDraining if the region has alive
	// members (all draining, leaving, or in a state this version does not
	// know), StateDown if it has none. A region whose members all went
	// down stays listed as down for Tuning.ReconnectTimeout.
	State string
	// Seen is, per origin region, the minimum Seen value over the region's
	// alive members that report that origin: every alive node of the region
	// that reports origin O has read O's heartbeat up to at least Seen[O].
	// nil when no alive member reports anything.
	Seen map[string]int64
}

// wanMeta is the JSON node metadata of the WAN pool (at most
// memberlist.MetaMaxSize = 512 bytes; see SetSeen for how Seen is kept
// within it).
type wanMeta struct {
	V      int              `json:"v"`
	Region string           `json:"r"`
	URL    string           `json:"u,omitempty"`
	State  string           `json:"s"`
	Seen   map[string]int64 `json:"h,omitempty"` // encoding/json sorts the keys
}

func (m wanMeta) encode() []byte { return marshalCompact(m) }

// maxWANStateLen bounds the state string accepted from peers; the longest
// state this version sends is StateEvacuating.
const maxWANStateLen = 32

// checkSize fails when Region and RegionURL alone, with the longest state,
// exceed memberlist's metadata limit.
func (m wanMeta) checkSize() error {
	m.State, m.Seen = StateEvacuating, nil
	if n := len(m.encode()); n > memberlist.MetaMaxSize {
		return fmt.Errorf("%w: federation node metadata (Region, RegionURL) encodes to %d bytes, memberlist allows %d",
			ErrConfig, n, memberlist.MetaMaxSize)
	}
	return nil
}

// validOrigin reports whether s can be a region name in Seen.
func validOrigin(s string) bool {
	return s != "" && len(s) <= MaxRegionLen && printable(s)
}

// fitSeen returns the origins of seen that fit in base's metadata (with the
// longest state, so that a later SetState cannot overflow), keeping valid
// origins in name order, and how many were left out. The result is a new
// map, nil when empty.
func fitSeen(base wanMeta, seen map[string]int64) (map[string]int64, int) {
	keys := make([]string, 0, len(seen))
	for k := range seen {
		if validOrigin(k) {
			keys = append(keys, k)
		}
	}
	dropped := len(seen) - len(keys)
	slices.Sort(keys)
	base.State = StateEvacuating
	prefix := func(n int) map[string]int64 {
		if n == 0 {
			return nil
		}
		m := make(map[string]int64, n)
		for _, k := range keys[:n] {
			m[k] = seen[k]
		}
		return m
	}
	fits := func(n int) bool {
		base.Seen = prefix(n)
		return len(base.encode()) <= memberlist.MetaMaxSize
	}
	n := len(keys)
	if !fits(n) {
		// fits(0) holds (checkSize in NewFederation); size grows with n.
		n = sort.Search(len(keys)+1, func(i int) bool { return !fits(i) }) - 1
	}
	return prefix(n), dropped + len(keys) - n
}

// decodeWANMeta decodes a peer's metadata; false for anything that is not
// well-formed metadata of this format (such a member is ignored for region
// status). Invalid origin names in Seen are dropped.
func decodeWANMeta(b []byte) (wanMeta, bool) {
	var m wanMeta
	if len(b) == 0 || len(b) > memberlist.MetaMaxSize || json.Unmarshal(b, &m) != nil || m.V < 1 ||
		!validOrigin(m.Region) || len(m.URL) > MaxURLLen || !printable(m.URL) ||
		len(m.State) > maxWANStateLen || !printable(m.State) {
		return wanMeta{}, false
	}
	for k := range m.Seen {
		if !validOrigin(k) {
			delete(m.Seen, k)
		}
	}
	if len(m.Seen) == 0 {
		m.Seen = nil
	}
	return m, true
}

// wanEntry is this node's view of one WAN peer; written by memberlist's
// event callbacks and the join loop under Federation.memMu.
type wanEntry struct {
	name      string
	addr      string
	meta      wanMeta
	metaOK    bool // meta decoded
	alive     bool
	left      bool // down after announcing "leaving"
	downSince time.Time
}

// expired reports whether the entry has been down for at least ttl.
func (e *wanEntry) expired(now time.Time, ttl time.Duration) bool {
	return !e.alive && !e.downSince.IsZero() && now.Sub(e.downSince) >= ttl
}

func (e *wanEntry) public() WANMember {
	m := WANMember{Name: e.name, Alive: e.alive, Addr: e.addr}
	if e.metaOK {
		m.Region, m.URL, m.State, m.Seen = e.meta.Region, e.meta.URL, e.meta.State, maps.Clone(e.meta.Seen)
	}
	return m
}

// Local returns this node as a WANMember (always Alive), with the metadata
// it currently advertises.
func (f *Federation) Local() WANMember {
	f.metaMu.Lock()
	m := f.meta
	seen := maps.Clone(m.Seen)
	f.metaMu.Unlock()
	return WANMember{Name: f.cfg.NodeName, Region: m.Region, URL: m.URL, State: m.State,
		Alive: true, Addr: f.localAddr, Seen: seen}
}

// Members returns every WAN member this node knows, itself included, sorted
// by name. Members that are down are listed for Tuning.ReconnectTimeout.
func (f *Federation) Members() []WANMember {
	out := []WANMember{f.Local()}
	now := time.Now()
	f.memMu.RLock()
	for _, e := range f.members {
		if !e.expired(now, f.cfg.Tuning.ReconnectTimeout) {
			out = append(out, e.public())
		}
	}
	f.memMu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Regions returns every region known, this node's included, sorted by name.
func (f *Federation) Regions() []RegionStatus { return regionStatuses(f.Members()) }

// Alternates returns the client-facing URLs of the other regions that are
// serving (Serving > 0), deduplicated, ordered by region name then URL:
// where clients of this region fail over to.
func (f *Federation) Alternates() []string {
	var out []string
	seen := make(map[string]bool)
	for _, r := range f.Regions() {
		if r.Name == f.cfg.Region || r.Serving == 0 {
			continue
		}
		for _, u := range r.URLs {
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

// regionStatuses aggregates members by region; members with Region "" are
// ignored.
func regionStatuses(ms []WANMember) []RegionStatus {
	byName := make(map[string]*RegionStatus)
	evacuating := make(map[string]bool)
	for _, m := range ms {
		if m.Region == "" {
			continue
		}
		r := byName[m.Region]
		if r == nil {
			r = &RegionStatus{Name: m.Region}
			byName[m.Region] = r
		}
		if !m.Alive {
			continue
		}
		r.Alive++
		switch m.State {
		case StateAlive:
			r.Serving++
			if m.URL != "" && !slices.Contains(r.URLs, m.URL) {
				r.URLs = append(r.URLs, m.URL)
			}
		case StateEvacuating:
			evacuating[m.Region] = true
		}
		for o, v := range m.Seen {
			if r.Seen == nil {
				r.Seen = make(map[string]int64)
			}
			if cur, ok := r.Seen[o]; !ok || v < cur {
				r.Seen[o] = v
			}
		}
	}
	out := make([]RegionStatus, 0, len(byName))
	for _, r := range byName {
		switch {
		case r.Serving > 0:
			r.State = StateAlive
		case r.Alive == 0:
			r.State = StateDown
		case evacuating[r.Name]:
			r.State = StateEvacuating
		default:
			r.State = StateDraining
		}
		slices.Sort(r.URLs)
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
