package cluster

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
)

// Placement of ownership records (ADR 0026, amended by ADR 0037). A
// session's record is kept by its owner and by its home nodes: the
// Config.HomeReplicas live members other than the owner with the highest
// rendezvous score score(session, member) — equivalently, the first
// HomeReplicas members of the top HomeReplicas+1 (lookupSlots) that are
// not the owner. Exactly HomeReplicas nodes besides the owner keep each
// record (one in a two-node pool: the record, and the trace link a resume
// continues, outlive the owner's death), and a reader that does not know
// the owner asks the top HomeReplicas+1 members, which hold every home and
// the owner when it ranks among them. Every node computes the same homes
// from the same member list and owner; a member joining or leaving moves
// only the records it wins or held (about 1/N of them), and no node stores
// records it is neither owner nor home of. The home set depends on the
// owner, so a takeover can move it: the new owner sends the record to its
// homes, and the old owner, which always hears of the takeover, sends it
// to its former homes that are homes no more, which drop their copy
// (applyLocked). Claims, releases and takeover notices are sent to the
// homes directly (forward.go); a node asked about a session it does not
// hold asks the top HomeReplicas+1 members (Find, PresenceAll).

// score is the rendezvous (highest random weight) score of member for
// session: FNV-1a 64 of both (a zero byte between them), finished with a
// 64-bit mixer so that names differing in their last byte spread well.
// Written out rather than through hash/fnv so that it allocates nothing: it
// runs for every record of a push/pull digest (digest.go).
func score(session, member string) uint64 { return scoreAt(fnvAdd(fnvOffset, session), member) }

// scoreAt is score with the session's FNV-1a (fnvAdd(fnvOffset, session),
// or sid.fnv) computed once for all members.
func scoreAt(sh uint64, member string) uint64 {
	h := (sh ^ 0) * fnvPrime
	return mix64(fnvAdd(h, member))
}

const (
	fnvOffset uint64 = 14695981039346656037
	fnvPrime  uint64 = 1099511628211
)

func fnvAdd(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// scored is a member and its score for one session.
type scored struct {
	score uint64
	name  string
}

// before orders by descending score, then by name.
func (a scored) before(b scored) bool {
	return a.score > b.score || (a.score == b.score && a.name < b.name)
}

// sessionHash identifies a session in a push/pull digest (digest.go).
func sessionHash(session string) uint64 { return mix64(fnvAdd(fnvOffset, session)) }

// hash is sessionHash of the session k stands for.
func (k sid) hash() uint64 { return mix64(k.fnv()) }

// inHomes reports whether member is among the k best-scored members of
// ring for session (as homesOf would place it) without allocating.
func inHomes(session, member string, ring []string, k int) bool {
	return homeAt(fnvAdd(fnvOffset, session), member, "", ring, k)
}

// inHomesAt is inHomes of the session whose FNV-1a is sh.
func inHomesAt(sh uint64, member string, ring []string, k int) bool {
	return homeAt(sh, member, "", ring, k)
}

// homeAt reports whether member is one of the r homes of the session whose
// FNV-1a is sh when owner owns it (homesFor): member is in ring, is not
// the owner, and fewer than r members other than the owner outrank it.
// An owner that is not in ring (a dead owner's record; "" for none)
// excludes nobody. No allocation: each member is scored once, and the scan
// stops at the r-th member found above it — most sessions are not homed at
// a given member, and for them the scan is short (about 2 ln N scores on
// average for r = 2). mergeDigest asks this for every record held, at
// every push/pull.
func homeAt(sh uint64, member, owner string, ring []string, r int) bool {
	if member == owner {
		return false
	}
	me := scored{scoreAt(sh, member), member}
	above := 0
	for _, m := range ring {
		if m != member && m != owner && (scored{scoreAt(sh, m), m}).before(me) {
			above++
			if above >= r {
				return false
			}
		}
	}
	return slices.Contains(ring, member)
}

// homesFor returns the r homes of session when owner owns it: the r
// best-scored members of ring other than owner, best first.
func homesFor(session, owner string, ring []string, r int) []string {
	var buf [4]scored
	top := homeSetAt(fnvAdd(fnvOffset, session), owner, ring, r, buf[:0])
	out := make([]string, len(top))
	for i, t := range top {
		out[i] = t.name
	}
	return out
}

// homeSetAt is homesFor of the session whose FNV-1a is sh, as scored
// members in buf's memory when it has the capacity (no allocation:
// summarySums places every record held): the first r members of the top
// r+1 that are not owner.
func homeSetAt(sh uint64, owner string, ring []string, r int, buf []scored) []scored {
	top := topAt(sh, ring, r+1, buf)
	out := top[:0]
	for _, t := range top {
		if t.name != owner && len(out) < r {
			out = append(out, t)
		}
	}
	return out
}

// homesOf returns the k members of ring with the highest score for
// session, best first (ties, which need a 64-bit collision, by name). Each
// member is scored once: O(len(ring)) hashes and no allocation but the
// result's.
func homesOf(session string, ring []string, k int) []string {
	return homesAt(fnvAdd(fnvOffset, session), ring, k)
}

// homesAt is homesOf of the session whose FNV-1a is sh.
func homesAt(sh uint64, ring []string, k int) []string {
	var buf [4]scored
	top := topAt(sh, ring, k, buf[:0])
	out := make([]string, len(top))
	for i, t := range top {
		out[i] = t.name
	}
	return out
}

// topAt returns the k best-scored members of ring for the session whose
// FNV-1a is sh, best first, in buf's memory when it has the capacity (no
// allocation: summarySums places every record held).
func topAt(sh uint64, ring []string, k int, buf []scored) []scored {
	k = min(k, len(ring))
	if k <= 0 {
		return nil
	}
	top := buf[:0]
	if k > cap(buf) {
		top = make([]scored, 0, k)
	}
	for _, m := range ring {
		c := scored{scoreAt(sh, m), m}
		if len(top) == k && !c.before(top[k-1]) {
			continue
		}
		i := len(top)
		if i < k {
			top = append(top, c)
		} else {
			i = k - 1
		}
		for ; i > 0 && c.before(top[i-1]); i-- {
			top[i] = top[i-1]
		}
		top[i] = c
	}
	return top
}

// ring returns the names of the live members, this node included, sorted.
// The slice is shared and must not be modified: it is computed once per
// change of the live members (every claim and every received message
// places sessions on it, and sorting N names each time cost more than the
// placement). Caller may hold recMu; ring takes memMu.
func (c *Cluster) ring() []string {
	c.memMu.RLock()
	r := c.ringCache
	c.memMu.RUnlock()
	if r != nil {
		return r
	}
	c.memMu.Lock()
	defer c.memMu.Unlock()
	if c.ringCache != nil {
		return c.ringCache
	}
	out := make([]string, 0, len(c.members)+1)
	out = append(out, c.cfg.NodeName)
	for name, e := range c.members {
		if !e.down {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	c.ringCache = out
	return out
}

// isHome reports whether self is among the homes of session k, owned by
// owner, in ring.
func (c *Cluster) isHome(k sid, owner string, ring []string) bool {
	return homeAt(k.fnv(), c.cfg.NodeName, owner, ring, c.cfg.HomeReplicas)
}

// ringID is a fingerprint of a ring, to notice membership changes cheaply.
func ringID(ring []string) uint64 {
	h := fnv.New64a()
	var n [8]byte
	for _, m := range ring {
		binary.LittleEndian.PutUint64(n[:], uint64(len(m)))
		_, _ = h.Write(n[:])
		_, _ = h.Write([]byte(m))
	}
	return h.Sum64()
}

// lookupSlots is how many top-scored members a reader that does not know
// a session's owner asks (Find): the HomeReplicas homes are among them
// whoever the owner is, and so is the owner when it ranks there.
func (c *Cluster) lookupSlots() int { return c.cfg.HomeReplicas + 1 }
