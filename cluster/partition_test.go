package cluster

import (
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster/gossiptest"
)

// Claims on both sides of a short partition (nobody declared dead, the
// broadcasts lost in the cut) converge to the highest incarnation by
// push/pull once healed, and the loser is revoked.
func TestPartitionConvergence(t *testing.T) {
	nw := gossiptest.NewNetwork()
	nodes := startCluster(t, 3, withNetwork(t, nw), func(c *Config) { c.Tuning.PushPullInterval = time.Second })
	a, b, c := nodes[0], nodes[1], nodes[2]

	nw.Partition([]string{"a"}, []string{"b", "c"})
	ra := a.Claim("p1", []string{"t"}, "trace-a")
	a.Claim("pa", []string{"t"}, "")
	c.Claim("pc", []string{"t"}, "")
	eventually(t, 5*time.Second, func() bool { n, _ := ownerOf(b, "pc"); return n == "c" }, "b learns pc inside its side")
	rb := b.Claim("p1", []string{"t"}, "trace-b")
	if rb.Incarnation <= ra.Incarnation {
		t.Fatalf("b's later claim has incarnation %d <= a's %d", rb.Incarnation, ra.Incarnation)
	}
	if _, ok := find(b, "pa"); ok {
		t.Fatalf("the partition leaked a's claim to b")
	}
	if n, _ := ownerOf(a, "p1"); n != "a" || len(a.revs.forSession("p1")) != 0 {
		t.Fatalf("a learned b's claim through the partition")
	}

	nw.Heal()
	healed := time.Now()
	for _, n := range nodes {
		eventually(t, 10*time.Second, func() bool {
			node, inc := ownerOf(n, "p1")
			_, okA := find(n, "pa")
			_, okC := find(n, "pc")
			return node == "b" && inc == rb.Incarnation && okA && okC
		}, "%s converges", n.name)
	}
	eventually(t, 5*time.Second, func() bool { return len(a.revs.forSession("p1")) > 0 }, "a revokes p1")
	revAt, _ := a.revs.firstAt("p1")
	t.Logf("after heal: a revoked p1 in %v, all converged in %v (dropped %d packets, refused %d dials)",
		revAt.Sub(healed).Round(time.Millisecond), time.Since(healed).Round(time.Millisecond), nw.Dropped(), nw.Refused())
	quiet(t, nodes...)
	if revs := a.revs.forSession("p1"); len(revs) != 1 || revs[0] != (Revocation{Session: "p1", Incarnation: ra.Incarnation, Reason: ReasonTakeover, By: "b"}) {
		t.Fatalf("a's revocations = %+v", revs)
	}
	for _, n := range []*testNode{b, c} {
		if len(n.revs.forSession("p1")) != 0 {
			t.Fatalf("%s revoked p1", n.name)
		}
	}
}

// A node cut off long enough to be declared dead (the SIGSTOP/SIGCONT case)
// learns, when it comes back, that its sessions were taken over meanwhile —
// including a claim the others never heard of — and revokes them promptly:
// by push/pull at rejoin, not by the periodic push/pull (10s here).
func TestRejoinAfterDeclaredDeadRevokesPromptly(t *testing.T) {
	nw := gossiptest.NewNetwork()
	nodes := startCluster(t, 3, withNetwork(t, nw))
	a, b, c := nodes[0], nodes[1], nodes[2]
	preset := LANTuning()

	a.Claim("r1", []string{"t"}, "")
	for _, n := range []*testNode{b, c} {
		eventually(t, 5*time.Second, func() bool { o, _ := ownerOf(n, "r1"); return o == "a" }, "%s learns r1", n.name)
	}
	cut := time.Now()
	nw.Partition([]string{"a"}, []string{"b", "c"})
	a.Claim("r2", []string{"t"}, "") // never reaches b or c before the heal
	eventually(t, 20*time.Second, func() bool {
		return stateOf(b, "a") == StateDead && stateOf(c, "a") == StateDead &&
			stateOf(a, "b") == StateDead && stateOf(a, "c") == StateDead
	}, "both sides declare the other dead")
	t.Logf("both sides declared dead %v after the cut", time.Since(cut).Round(time.Millisecond))
	rb1 := b.Claim("r1", []string{"t"}, "") // takeover while a is dead
	rb2 := b.Claim("r2", []string{"t"}, "") // b does not know a's claim
	quiet(t, a, b, c)                       // no broadcast left to deliver after the heal: only the rejoin can tell a
	if len(a.revs.forSession("r1"))+len(a.revs.forSession("r2")) != 0 {
		t.Fatalf("a revoked through the partition")
	}
	merges := a.Stats().Merges

	nw.Heal()
	healed := time.Now()
	var back time.Time // when b first sees a alive again
	eventually(t, 10*time.Second, func() bool {
		if stateOf(b, "a") == StateAlive {
			back = time.Now()
			return true
		}
		return false
	}, "b sees a back")
	eventually(t, 10*time.Second, func() bool {
		return len(a.revs.forSession("r1")) > 0 && len(a.revs.forSession("r2")) > 0
	}, "a revokes r1 and r2")
	at1, _ := a.revs.firstAt("r1")
	at2, _ := a.revs.firstAt("r2")
	last := max(at1.Sub(healed), at2.Sub(healed))
	t.Logf("after heal: b saw a back in %v; a revoked r1 in %v, r2 in %v", back.Sub(healed).Round(time.Millisecond),
		at1.Sub(healed).Round(time.Millisecond), at2.Sub(healed).Round(time.Millisecond))
	if a.Stats().Merges == merges {
		t.Fatalf("no push/pull merge on a after the heal")
	}
	if limit := back.Sub(healed) + preset.ProbeInterval; last > limit {
		t.Fatalf("revocations %v after heal, more than one probe interval after the rejoin (%v)", last, limit)
	}
	for _, n := range nodes {
		eventually(t, 5*time.Second, func() bool {
			o1, i1 := ownerOf(n, "r1")
			o2, i2 := ownerOf(n, "r2")
			return o1 == "b" && i1 == rb1.Incarnation && o2 == "b" && i2 == rb2.Incarnation
		}, "%s converges to b's claims", n.name)
	}
	quiet(t, nodes...)
	for _, s := range []string{"r1", "r2"} {
		if revs := a.revs.forSession(s); len(revs) != 1 || revs[0].By != "b" || revs[0].Reason != ReasonTakeover {
			t.Fatalf("a's revocations of %s = %+v", s, revs)
		}
	}
	waitMembers(t, nodes, 10*time.Second)
}
