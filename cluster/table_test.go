package cluster

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster/gossiptest"
)

// TestHomedRecordHeap pins what a homed record costs in heap on a node
// serving nothing (issue 25: that node's RSS is about twice this times
// the records it homes, ~25,500 in deploy/local/scale.sh). Herald's
// records (16-hex session id, one topic, a traceparent, claim time =
// incarnation) are applied to a bare node of a two-member ring, where it
// is home of every session. ADR 0030's entries took ~164 B; the table of
// ADR 0031 takes its 64-byte entry and a map slot.
func TestHomedRecordHeap(t *testing.T) {
	const n = 40_000
	c := bareNode(t, 2)
	ring := c.ring()
	now := time.Now()
	apply := func(from, to int) {
		c.recMu.Lock()
		defer c.recMu.Unlock()
		for i := from; i < to; i++ {
			inc := uint64(now.UnixNano()) + uint64(i)
			c.applyLocked(Record{Session: fmt.Sprintf("%016x", uint64(i+1)*0x9e3779b97f4a7c15), Node: "n001", Region: "r",
				Incarnation: inc, Topics: []string{"load-0"}, Since: time.Unix(0, int64(inc)),
				Trace: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, false, ring, now)
		}
	}
	apply(0, 1) // interned owner and topic, first chunk, empty maps: not per record
	m0 := heapAfterGC()
	apply(1, n+1)
	m1 := heapAfterGC()
	if got := c.records.len(); got != n+1 {
		t.Fatalf("%d records held, want %d", got, n+1)
	}
	per := (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / n
	t.Logf("heap per homed record: %.1f B", per)
	if per > 110 {
		t.Fatalf("a homed record takes %.1f B of heap, want ≤ 110", per)
	}
	runtime.KeepAlive(c)
}

// TestJoiningHomeGetsEachRecordOnce: a node that joins and becomes home of
// an owner's records gets each of them once, from the owner's rehoming;
// the join's push/pull digest used to queue every one of them a second
// time (ADR 0031), doubling what homing cost both nodes.
func TestJoiningHomeGetsEachRecordOnce(t *testing.T) {
	const n = 2000
	nw := gossiptest.NewNetwork()
	a := startNode(t, "a", withNetwork(t, nw))
	b := startNode(t, "b", withNetwork(t, nw))
	for i := range n {
		a.Claim(fmt.Sprintf("%016x", uint64(i+1)*0x9e3779b97f4a7c15), []string{"t"}, "")
	}
	if _, err := b.ml.Join([]string{a.Local().GossipAddr}); err != nil {
		t.Fatalf("join: %v", err)
	}
	eventually(t, 30*time.Second, func() bool { return b.Stats().RecordsLive == n }, "b homes %d records, has %d", n, b.Stats().RecordsLive)
	// The rehoming is sent outside the forward queue: wait for it too.
	eventually(t, 30*time.Second, func() bool { return a.Stats().Rehomed == n }, "a rehomes its %d records to b, %d so far", n, a.Stats().Rehomed)
	quiet(t, a, b)
	eventually(t, 10*time.Second, func() bool { return len(b.inbox) == 0 && b.queuedStates.Load() == 0 }, "b's inbox drains")
	if got := b.Stats().RecordsReceived; got != n {
		t.Fatalf("b received %d records for the %d it homes (digest repairs %d)", got, n, a.Stats().DigestRepairs)
	}
}

// TestQueuedItemsEncodeAsTheirRecords: a batch encoded from queued entries
// (encodeItems) is byte for byte the batch of the records they stand for,
// so nodes that decode msgBatch see no difference.
func TestQueuedItemsEncodeAsTheirRecords(t *testing.T) {
	var in interner
	now := time.Unix(0, 1732240000999999999)
	recs := heraldRecords(20)
	odd := sampleRecord() // non-hex session, two topics
	noTrace := odd
	noTrace.Session, noTrace.Trace, noTrace.Since = "other", "opaque", time.Time{}
	recs = append(recs, odd, noTrace, recs[0])
	recs[len(recs)-1].Since = time.Unix(0, 5) // claim time ≠ incarnation
	parts := make([]bool, len(recs))
	parts[3] = true
	items := make([]fwdItem, len(recs))
	for i, r := range recs {
		items[i] = fwdItem{sidOf(r.Session), in.entry(r, parts[i], now)}
	}
	for _, budget := range []int{0, 300} {
		want, wl := encodeBatch("herald-0", recs, parts, budget)
		got, gl := encodeItems("herald-0", items, budget)
		if !bytes.Equal(got, want) || gl != wl {
			t.Fatalf("budget %d: items encode to %d bytes (%d left), records to %d (%d left)", budget, len(got), gl, len(want), wl)
		}
	}
}

// TestServedFlagFollowsTheClaim: the served claim (entServed, ADR 0031's
// session-13 amendment) is set by Claim, moves to a newer claim of the
// same session, survives the release of a claim already superseded, and
// ends with Release or a newer record of another node, which revokes it.
func TestServedFlagFollowsTheClaim(t *testing.T) {
	a := startNode(t, "a")
	const s = "0123456789abcdef"
	served := func() (uint64, bool) {
		a.recMu.RLock()
		defer a.recMu.RUnlock()
		return a.servedLocked(sidOf(s))
	}
	first := a.Claim(s, []string{"t"}, "")
	if inc, ok := served(); !ok || inc != first.Incarnation || a.Stats().Owned != 1 {
		t.Fatalf("after Claim: served %d %v, Owned %d", inc, ok, a.Stats().Owned)
	}
	second := a.Claim(s, []string{"t"}, "")
	if inc, ok := served(); !ok || inc != second.Incarnation {
		t.Fatalf("after a second Claim: served %d %v, want %d", inc, ok, second.Incarnation)
	}
	eventually(t, 5*time.Second, func() bool { return len(a.revs.forSession(s)) == 1 }, "the first claim is revoked")
	a.Release(s, first.Incarnation) // superseded: changes nothing
	if _, ok := served(); !ok || a.Stats().Owned != 1 {
		t.Fatalf("releasing the superseded claim ended the served one")
	}
	a.Release(s, second.Incarnation)
	if _, ok := served(); ok || a.Stats().Owned != 0 {
		t.Fatalf("still served after Release")
	}
	if r, _ := a.Lookup(s); !r.Ended {
		t.Fatalf("record after Release: %+v", r)
	}

	third := a.Claim(s, []string{"t"}, "")
	a.recMu.Lock()
	a.applyLocked(Record{Session: s, Node: "z", Incarnation: third.Incarnation + 1, Topics: []string{"t"}, Since: time.Now()}, false, a.ring(), time.Now())
	a.recMu.Unlock()
	if _, ok := served(); ok || a.Stats().Owned != 0 {
		t.Fatalf("still served after a newer claim of another node")
	}
	eventually(t, 5*time.Second, func() bool { return len(a.revs.forSession(s)) == 2 }, "the third claim is revoked")
	if r := a.revs.forSession(s)[1]; r.Incarnation != third.Incarnation || r.By != "z" {
		t.Fatalf("revocation %+v", r)
	}
}
