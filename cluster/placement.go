package cluster

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
)

// Placement of ownership records (ADR 0026). A session's record is kept by
// its owner and by its home nodes: the Config.HomeReplicas+1 live members
// (this node included; one more in case the owner is among them, see
// homeSlots) with the highest rendezvous score
// score(session, member). Every node computes the same homes from the same
// member list, a member joining or leaving moves only the records it wins
// or held (about 1/N of them), and no node stores records it is neither
// owner nor home of. Claims, releases and takeover notices are sent to the
// homes directly (forward.go); a node asked about a session it does not
// hold asks the homes (Find, PresenceAll).

// score is the rendezvous (highest random weight) score of member for
// session: FNV-1a 64 of both (a zero byte between them), finished with a
// 64-bit mixer so that names differing in their last byte spread well.
// Written out rather than through hash/fnv so that it allocates nothing: it
// runs for every record of a push/pull digest (digest.go).
func score(session, member string) uint64 {
	h := fnvAdd(fnvOffset, session)
	h = (h ^ 0) * fnvPrime
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

// sessionHash identifies a session in a push/pull digest (digest.go).
func sessionHash(session string) uint64 { return mix64(fnvAdd(fnvOffset, session)) }

// inHomes reports whether member is among the k homes of session in ring
// (as homesOf would place it) without allocating: fewer than k members
// outrank it.
func inHomes(session, member string, ring []string, k int) bool {
	if !slices.Contains(ring, member) {
		return false
	}
	above := 0
	for _, m := range ring {
		if m != member && cmpScore(session, m, member) < 0 {
			above++
			if above >= k {
				return false
			}
		}
	}
	return true
}

// homesOf returns the k members of ring with the highest score for
// session, best first (ties, which need a 64-bit collision, by name).
func homesOf(session string, ring []string, k int) []string {
	if k >= len(ring) {
		out := slices.Clone(ring)
		slices.SortFunc(out, func(a, b string) int { return cmpScore(session, a, b) })
		return out
	}
	out := make([]string, 0, k+1)
	for _, m := range ring {
		i, _ := slices.BinarySearchFunc(out, m, func(e, t string) int { return cmpScore(session, e, t) })
		if i >= k {
			continue
		}
		out = slices.Insert(out, i, m)
		if len(out) > k {
			out = out[:k]
		}
	}
	return out
}

// cmpScore orders members by descending score for session, then by name.
func cmpScore(session, a, b string) int {
	sa, sb := score(session, a), score(session, b)
	switch {
	case sa > sb:
		return -1
	case sa < sb:
		return 1
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ring returns the names of the live members, this node included, sorted.
// Caller may hold recMu; ring takes memMu.
func (c *Cluster) ring() []string {
	c.memMu.RLock()
	out := make([]string, 0, len(c.members)+1)
	out = append(out, c.cfg.NodeName)
	for name, e := range c.members {
		if !e.down {
			out = append(out, name)
		}
	}
	c.memMu.RUnlock()
	slices.Sort(out)
	return out
}

// isHome reports whether self is among the homes of session in ring.
func (c *Cluster) isHome(session string, ring []string) bool {
	return inHomes(session, c.cfg.NodeName, ring, c.homeSlots())
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

// homeSlots is how many top-scored members hold a session's record: the
// HomeReplicas homes besides the owner, plus one in case the owner itself
// scores among them, so that at least HomeReplicas other nodes keep it and
// the record (and the trace link a resume continues) outlives the owner's
// death even in a two-node pool.
func (c *Cluster) homeSlots() int { return c.cfg.HomeReplicas + 1 }
