package cluster

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// benchHome builds a bare Cluster (no memberlist) named n000 in a ring of
// members live members, holding the records of sessions it is home of out
// of total sessions owned by the other members: the state of one node of a
// large pool, for benchmarks of the ownership bookkeeping.
func benchHome(tb testing.TB, members, total int) *Cluster {
	tb.Helper()
	c := bareNode(tb, members)
	ring := c.ring()
	now := time.Now()
	c.recMu.Lock()
	for i := range total {
		s := fmt.Sprintf("s%07d", i)
		owner := fmt.Sprintf("n%03d", 1+i%(members-1))
		c.applyLocked(Record{Session: s, Node: owner, Region: "r", Incarnation: uint64(i + 1),
			Topics: []string{"t"}, Since: now}, false, ring, now)
	}
	c.recMu.Unlock()
	return c
}

// bareNode is a Cluster named n000 without memberlist, in a ring of members
// live members n000…, whose forward queue nobody sends.
func bareNode(tb testing.TB, members int) *Cluster {
	tb.Helper()
	cfg, err := Config{PoolConfig: PoolConfig{NodeName: "n000", Region: "r", Dev: true}}.withDefaults()
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{pool: newPool("cluster", cfg.Logger), cfg: cfg, members: make(map[string]*memberEntry), records: newTable(),
		byTopic: make(map[string]*sidSet),
		fwd:     make(map[string][]fwdItem), fwdKick: make(chan struct{}, 1)}
	for i := 1; i < members; i++ {
		name := fmt.Sprintf("n%03d", i)
		c.members[name] = &memberEntry{name: name, addr: fmt.Sprintf("127.0.0.1:%d", 10000+i)}
	}
	c.cfg.Tuning.MaxQueuedBroadcasts = 1 << 30
	ring := c.ring()
	c.rehomed.Store(&ring) // as if the forward loop had rehomed for it
	return c
}

// BenchmarkOwnershipState measures the ownership state of one node of a
// pool of N members sharing S sessions evenly (ADR 0026): the node claims
// S/N sessions itself (each with a topic and a 55-byte trace, as a stream
// has) and stores the records of the others' sessions it is a home of.
// It reports the records held, the Go heap they take (after a collection;
// the forward queue is emptied first, as the forward loop would), that
// heap per record, and the size of the node's push/pull state (the digest of
// its own and homed records, ADR 0030). Sizes are the capacity model's per-node points:
// 100k sessions on 3 nodes (every node holds every record), 1M on 30 and 1M
// on 200 (10M on 300 holds as many records per node as 1M on 30).
func BenchmarkOwnershipState(b *testing.B) {
	for _, sz := range []struct{ sessions, nodes int }{{100_000, 3}, {1_000_000, 30}, {1_000_000, 200}} {
		b.Run(fmt.Sprintf("sessions=%d/nodes=%d", sz.sessions, sz.nodes), func(b *testing.B) {
			for range b.N {
				ownershipState(b, sz.sessions, sz.nodes)
			}
		})
	}
}

func ownershipState(b *testing.B, sessions, members int) {
	trace := "00-" + strings.Repeat("a", 32) + "-" + strings.Repeat("b", 16) + "-01"
	h0 := heapAfterGC().HeapAlloc
	c := bareNode(b, members)
	ring := c.ring()
	now := time.Now()
	for i := range sessions {
		s := fmt.Sprintf("s%07d", i)
		if i%members == 0 {
			c.Claim(s, []string{"t"}, trace)
			continue
		}
		r := Record{Session: s, Node: fmt.Sprintf("n%03d", i%members), Region: "r",
			Incarnation: uint64(now.UnixNano()) + uint64(i), Topics: []string{"t"}, Since: now, Trace: trace}
		c.recMu.Lock()
		c.applyLocked(r, false, ring, now)
		c.recMu.Unlock()
	}
	c.fwdMu.Lock()
	c.fwd, c.fwdLen = make(map[string][]fwdItem), 0
	c.fwdMu.Unlock()
	h1 := heapAfterGC().HeapAlloc
	held := c.records.len()
	b.ReportMetric(float64(len(c.localDigest()))/(1<<10), "pushpull_KiB")
	b.ReportMetric(float64(held), "records")
	b.ReportMetric(float64(held)/float64(sessions)*float64(members), "records×N/sessions")
	b.ReportMetric(float64(int64(h1-h0))/(1<<20), "heap_MiB")
	b.ReportMetric(float64(int64(h1-h0))/float64(held), "heap_B/record")
	runtime.KeepAlive(c)
}

// BenchmarkSweep is one periodic sweep of a node of a 200-member pool that
// holds the records it is home of out of 1,000,000 sessions (about 10,000),
// with no membership change since the last sweep: the steady state. The
// sweep runs every DeadGrace/10 (3 s) and holds the record lock.
func BenchmarkSweep(b *testing.B) {
	c := benchHome(b, 200, 1_000_000)
	b.ReportMetric(float64(c.records.len()), "records")
	c.sweep(time.Now())
	b.ResetTimer()
	for range b.N {
		c.sweep(time.Now())
	}
}

// BenchmarkHomesOf places one session in a ring of 200 members.
func BenchmarkHomesOf(b *testing.B) {
	ring := make([]string, 200)
	for i := range ring {
		ring[i] = fmt.Sprintf("n%03d", i)
	}
	b.ReportAllocs()
	for i := range b.N {
		homesOf(fmt.Sprintf("s%07d", i%1_000_000), ring, 2)
	}
}

// The sweep keeps the records this node is home of while the ring stays,
// and drops those it stopped being home of once a member joins or dies.
func TestSweepDropsRecordsNoLongerHomed(t *testing.T) {
	c := benchHome(t, 6, 3000)
	held := c.records.len()
	if held == 0 {
		t.Fatal("n000 is home of no session")
	}
	c.sweep(time.Now())
	if c.records.len() != held {
		t.Fatalf("sweep without a membership change dropped %d records", held-c.records.len())
	}
	for _, change := range []func(now time.Time){
		func(now time.Time) { c.onAlive(nodeInfo{name: "n900", addr: "127.0.0.1:9900"}, now) },
		func(now time.Time) { c.onDown("n001", now) },
	} {
		now := time.Now()
		change(now)
		ring := c.ring()
		want := 0
		c.recMu.RLock()
		for s := range c.records.all() {
			if e := c.records.getK(s); c.isHome(s, e.who.node, ring) {
				want++
			}
		}
		c.recMu.RUnlock()
		c.sweep(now)
		if c.records.len() != want {
			t.Fatalf("after the ring became %d members: %d records held, want %d", len(ring), c.records.len(), want)
		}
	}
}

// BenchmarkMergeDigest merges one peer's push/pull digest at a node of a
// 200-member pool holding the 10,000 records it is home of out of 1M
// sessions, the peer (another member) holding none of them: every record
// is checked against the peer's homes, under the record lock. The
// forward queue the repairs fill is emptied between merges.
func BenchmarkMergeDigest(b *testing.B) {
	c := benchHome(b, 200, 1_000_000)
	msg, _ := encodeDigest("n007", nil, 0)
	m, err := decodeMessage(msg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(c.records.len()), "records")
	b.ResetTimer()
	for range b.N {
		c.mergeDigest(m.dig, nil)
		c.fwdMu.Lock()
		c.fwd, c.fwdLen = make(map[string][]fwdItem), 0
		c.fwdMu.Unlock()
	}
}
