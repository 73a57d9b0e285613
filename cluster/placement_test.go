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
	holders := func(id string) []string { return holdersOf(nodes, id) }
	for _, id := range ids {
		// The owner plus HomeReplicas (default 1) other members.
		want := append([]string{"a"}, wantHomes(id, "a", ring, 1)...)
		slices.Sort(want)
		eventually(t, 5*time.Second, func() bool { return slices.Equal(holders(id), want) }, "%s held by %v, got %v", id, want, holders(id))
	}
	for _, x := range nodes[1:] {
		if s := x.Stats(); s.RecordsLive > n/3 {
			t.Fatalf("%s holds %d of %d records, want about 1/4", x.name, s.RecordsLive, n)
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
		if slices.Contains(wantHomes(id, "a", ring, 1), "b") {
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
		for _, home := range wantHomes(id, "a", ring2, 1) {
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
		if x.name != "a" && !slices.Contains(homesOf(id, ring2, 2), x.name) { // asks the homes
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

// wantHomes is the placement rule written out from homesOf (ADR 0037):
// the first r members of the top r+1 that are not the owner.
func wantHomes(session, owner string, ring []string, r int) []string {
	var out []string
	for _, m := range homesOf(session, ring, r+1) {
		if m != owner && len(out) < r {
			out = append(out, m)
		}
	}
	return out
}

// The homes of a session never include its owner: exactly r other members
// (all of them when fewer), the best-scored ones besides the owner, all
// among the top r+1 a reader that does not know the owner asks; homeAt
// agrees. In a two-node pool the other node is the home whoever owns the
// session.
func TestHomesExcludeTheOwner(t *testing.T) {
	for _, n := range []int{2, 3, 4, 7, 50} {
		ring := make([]string, n)
		for i := range ring {
			ring[i] = fmt.Sprintf("m%03d", i)
		}
		for i := range 300 {
			s := fmt.Sprintf("s%06d", i)
			sh := fnvAdd(fnvOffset, s)
			for _, r := range []int{1, 2, 3} {
				lookup := homesOf(s, ring, r+1)
				for _, owner := range append([]string{"gone"}, ring[:min(n, 8)]...) {
					others := slices.DeleteFunc(slices.Clone(ring), func(m string) bool { return m == owner })
					want := homesOf(s, others, r) // the r best members besides the owner
					got := homesFor(s, owner, ring, r)
					if !slices.Equal(got, want) || slices.Contains(got, owner) || len(got) != min(r, len(others)) {
						t.Fatalf("homesFor(%s, owner %s, %d members, %d) = %v, want %v", s, owner, n, r, got, want)
					}
					for _, h := range got {
						if !slices.Contains(lookup, h) {
							t.Fatalf("home %s of %s (owner %s) is not among the top %d %v", h, s, owner, r+1, lookup)
						}
					}
					if !slices.Equal(got, wantHomes(s, owner, ring, r)) {
						t.Fatalf("homesFor(%s, owner %s) = %v, not the first %d non-owners of %v", s, owner, got, r, lookup)
					}
					for _, m := range append([]string{"gone"}, ring...) {
						if homeAt(sh, m, owner, ring, r) != slices.Contains(got, m) {
							t.Fatalf("homeAt(%s, %s, owner %s, r=%d) disagrees with homesFor %v", s, m, owner, r, got)
						}
					}
					if n == 2 && owner != "gone" && (len(got) != 1 || got[0] == owner) {
						t.Fatalf("two-node pool: homes of %s owned by %s = %v", s, owner, got)
					}
				}
			}
		}
	}
}

// sessionWhere returns a session id starting with prefix whose top two
// members in ring satisfy ok.
func sessionWhere(ring []string, prefix string, ok func(t1, t2 string) bool) string {
	for i := 0; ; i++ {
		s := fmt.Sprintf("%s-%d", prefix, i)
		if top := homesOf(s, ring, 2); ok(top[0], top[1]) {
			return s
		}
	}
}

// A takeover moves a session's homes with its owner (ADR 0037): the
// record is held by the new owner and its one home only, the old owner
// becomes the home when it ranks there and drops the record otherwise, a
// former home that is no longer one drops its copy, and every node still
// finds the new owner.
func TestTakeoverMovesHomesWithTheOwner(t *testing.T) {
	nodes := startCluster(t, 4)
	byName := map[string]*testNode{}
	for _, n := range nodes {
		byName[n.name] = n
	}
	ring := nodes[0].ring()
	holders := func(id string) []string { return holdersOf(nodes, id) }
	others := func(not ...string) []string {
		var out []string
		for _, m := range ring {
			if !slices.Contains(not, m) {
				out = append(out, m)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		// pick returns the first and the second owner given the top two
		// members of the session.
		pick func(t1, t2 string) (string, string)
	}{
		// The old owner ranks first, its home second takes over: the old
		// owner becomes the home.
		{"home takes over from the first", func(t1, t2 string) (string, string) { return t1, t2 }},
		// The old owner ranks first, a member outside the top two takes
		// over: the old owner becomes the home, the old home drops it.
		{"outsider takes over from the first", func(t1, t2 string) (string, string) { return t1, others(t1, t2)[0] }},
		// The old owner ranks outside the top two, its home (first) takes
		// over: the second becomes the home, the old owner drops it.
		{"home takes over from an outsider", func(t1, t2 string) (string, string) { return others(t1, t2)[0], t1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := sessionWhere(ring, tc.name, func(string, string) bool { return true })
			top := homesOf(id, ring, 2)
			first, second := tc.pick(top[0], top[1])
			r1 := byName[first].Claim(id, []string{"mv"}, "")
			want := append([]string{first}, wantHomes(id, first, ring, 1)...)
			slices.Sort(want)
			eventually(t, 5*time.Second, func() bool { return slices.Equal(holders(id), want) }, "%s held by %v, got %v", id, want, holders(id))

			r2 := byName[second].Claim(id, []string{"mv"}, "")
			eventually(t, 5*time.Second, func() bool { return len(byName[first].revs.forSession(id)) == 1 }, "%s revokes %s", first, id)
			if got := byName[first].revs.forSession(id)[0]; got.Incarnation != r1.Incarnation || got.By != second {
				t.Fatalf("%s's revocation = %+v", first, got)
			}
			want = append([]string{second}, wantHomes(id, second, ring, 1)...)
			slices.Sort(want)
			quiet(t, nodes...)
			eventually(t, 5*time.Second, func() bool {
				for _, h := range want {
					if r, ok := byName[h].Lookup(id); !ok || r.Node != second || r.Incarnation != r2.Incarnation {
						return false
					}
				}
				return slices.Equal(holders(id), want)
			}, "%s held by %v with %s's claim, held by %v", id, want, second, holders(id))
			for _, n := range nodes {
				if o, inc := ownerOf(n, id); o != second || inc != r2.Incarnation {
					t.Fatalf("%s finds %s owned by %s (%d), want %s", n.name, id, o, inc, second)
				}
			}
		})
	}
}

// holdersOf returns the names of the nodes that hold a record of id.
func holdersOf(nodes []*testNode, id string) []string {
	var out []string
	for _, x := range nodes {
		if _, ok := x.Lookup(id); ok {
			out = append(out, x.name)
		}
	}
	return out
}
