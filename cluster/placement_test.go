package cluster

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"testing"
	"time"
)

// homedAt returns a session id starting with prefix whose first home, in
// n's current ring, is n.
func homedAt(n *testNode, prefix string) string {
	ring := n.ring()
	for i := 0; ; i++ {
		s := fmt.Sprintf("%s-%d", prefix, i)
		if homesOf(s, ring, n.cfg.HomeReplicas)[0] == n.name {
			return s
		}
	}
}

func TestHomesOfIsStableAndSpreads(t *testing.T) {
	ring := []string{"n0", "n1", "n2", "n3", "n4"}
	count := map[string]int{}
	moved := 0
	const sessions = 5000
	for i := range sessions {
		s := fmt.Sprintf("%016x", i*2654435761)
		h := homesOf(s, ring, 2)
		if len(h) != 2 || h[0] == h[1] {
			t.Fatalf("homesOf(%s) = %v", s, h)
		}
		if got := homesOf(s, slices.Clone(ring), 2); !slices.Equal(got, h) {
			t.Fatalf("homesOf not deterministic: %v vs %v", got, h)
		}
		count[h[0]]++
		// Removing a member moves only the sessions it was home of.
		without := homesOf(s, []string{"n0", "n1", "n2", "n3"}, 2)
		if !slices.Contains(h, "n4") && !slices.Equal(without, h) {
			t.Fatalf("removing n4 moved %s: %v -> %v", s, h, without)
		}
		if slices.Contains(h, "n4") {
			moved++
		}
		if all := homesOf(s, ring, 9); len(all) != len(ring) || all[0] != h[0] || all[1] != h[1] {
			t.Fatalf("homesOf(k > n) = %v, want all members led by %v", all, h)
		}
	}
	for _, m := range ring {
		if c := count[m]; c < sessions/5*8/10 || c > sessions/5*12/10 {
			t.Fatalf("first homes %v: not within 20%% of even", count)
		}
	}
	if moved < sessions*2/5*8/10 || moved > sessions*2/5*12/10 {
		t.Fatalf("%d of %d sessions had n4 as a home, want about 2/5", moved, sessions)
	}
}

// Records are held by their owner and their home node only; every node
// still finds them, presence still lists them everywhere, and when a home
// node leaves its records are rehomed by their owners.
func TestRecordsLiveOnOwnerAndHomesOnly(t *testing.T) {
	nodes := startCluster(t, 5, func(c *Config) { c.DeadGrace = time.Second })
	a := nodes[0]
	const n = 200
	var ids []string
	for i := range n {
		id := fmt.Sprintf("h%03d", i)
		ids = append(ids, id)
		a.Claim(id, []string{"ht"}, "")
	}
	quiet(t, nodes...)
	ring := a.ring()
	holders := func(id string) []string {
		var out []string
		for _, x := range nodes {
			if _, ok := x.Lookup(id); ok {
				out = append(out, x.name)
			}
		}
		return out
	}
	for _, id := range ids {
		// The owner plus the top HomeReplicas+1 (default 2) members.
		want := append([]string{"a"}, homesOf(id, ring, 2)...)
		slices.Sort(want)
		want = slices.Compact(want)
		eventually(t, 5*time.Second, func() bool { return slices.Equal(holders(id), want) }, "%s held by %v, got %v", id, want, holders(id))
	}
	for _, x := range nodes[1:] {
		if s := x.Stats(); s.RecordsLive > n/2 {
			t.Fatalf("%s holds %d of %d records", x.name, s.RecordsLive, n)
		}
	}
	e := nodes[4]
	for _, id := range ids[:20] {
		if o, _ := ownerOf(e, id); o != "a" {
			t.Fatalf("e finds %s owned by %q", id, o)
		}
	}
	if p := presence(e, "ht"); len(p) != n {
		t.Fatalf("e's PresenceAll = %d sessions, want %d", len(p), n)
	}

	// b leaves: the sessions it was home of move to new homes.
	b := nodes[1]
	var onB []string
	for _, id := range ids {
		if slices.Contains(homesOf(id, ring, 2), "b") {
			onB = append(onB, id)
		}
	}
	if err := b.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	rest := []*testNode{nodes[0], nodes[2], nodes[3], nodes[4]}
	waitMembers(t, rest, 10*time.Second)
	ring2 := a.ring()
	for _, id := range onB {
		for _, home := range homesOf(id, ring2, 2) {
			if home == "a" {
				continue
			}
			h := nodes[slices.IndexFunc(nodes, func(x *testNode) bool { return x.name == home })]
			eventually(t, 5*time.Second, func() bool { _, ok := h.Lookup(id); return ok }, "%s rehomed to %s", id, home)
		}
	}
	if a.Stats().Rehomed == 0 {
		t.Fatalf("a rehomed nothing")
	}
	// A takeover from a node that is neither owner nor home reaches a
	// through the home node.
	id := ids[0]
	for _, x := range rest {
		if x.name != "a" && !slices.Contains(homesOf(id, ring2, 2), x.name) {
			x.Claim(id, []string{"ht"}, "")
			break
		}
	}
	eventually(t, 5*time.Second, func() bool { return len(a.revs.forSession(id)) == 1 }, "a revokes %s", id)
}

// refScore is the placement score as first written, with hash/fnv
// (TestScoreAndInHomes pins score to it).
func refScore(session, member string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(session))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(member))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// homesOf picks the same members, in the same order, as sorting the whole
// ring by (score descending, name).
func TestHomesOfMatchesFullSort(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 50, 200} {
		ring := make([]string, n)
		for i := range ring {
			ring[i] = fmt.Sprintf("m%03d", i)
		}
		for i := range 300 {
			s := fmt.Sprintf("s%06d", i)
			all := slices.Clone(ring)
			slices.SortFunc(all, func(a, b string) int {
				sa, sb := refScore(s, a), refScore(s, b)
				switch {
				case sa > sb:
					return -1
				case sa < sb:
					return 1
				}
				return strings.Compare(a, b)
			})
			for _, k := range []int{1, 2, 3, 5, 9} {
				want := all[:min(k, n)]
				if got := homesOf(s, ring, k); !slices.Equal(got, want) {
					t.Fatalf("homesOf(%s, %d members, %d) = %v, want %v", s, n, k, got, want)
				}
			}
		}
	}
}
