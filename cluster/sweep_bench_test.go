package cluster

import (
	"fmt"
	"testing"
	"time"
)

// benchHome builds a bare Cluster (no memberlist) named n000 in a ring of
// members live members, holding the records of sessions it is home of out
// of total sessions owned by the other members: the state of one node of a
// large pool, for benchmarks of the ownership bookkeeping.
func benchHome(tb testing.TB, members, total int) *Cluster {
	tb.Helper()
	cfg, err := Config{NodeName: "n000", Region: "r", Dev: true}.withDefaults()
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{pool: newPool("cluster", cfg.Logger), cfg: cfg, members: make(map[string]*memberEntry), records: make(map[string]*entry),
		byTopic: make(map[string]map[string]struct{}), owned: make(map[string]uint64),
		fwd: make(map[string][]Record), fwdKick: make(chan struct{}, 1)}
	for i := 1; i < members; i++ {
		name := fmt.Sprintf("n%03d", i)
		c.members[name] = &memberEntry{name: name, addr: fmt.Sprintf("127.0.0.1:%d", 10000+i)}
	}
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

// BenchmarkSweep is one periodic sweep of a node of a 200-member pool that
// holds the records it is home of out of 1,000,000 sessions (about 10,000),
// with no membership change since the last sweep: the steady state. The
// sweep runs every DeadGrace/10 (3 s) and holds the record lock.
func BenchmarkSweep(b *testing.B) {
	c := benchHome(b, 200, 1_000_000)
	b.ReportMetric(float64(len(c.records)), "records")
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
	held := len(c.records)
	if held == 0 {
		t.Fatal("n000 is home of no session")
	}
	c.sweep(time.Now())
	if len(c.records) != held {
		t.Fatalf("sweep without a membership change dropped %d records", held-len(c.records))
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
		for s := range c.records {
			if c.isHome(s, ring) {
				want++
			}
		}
		c.recMu.RUnlock()
		c.sweep(now)
		if len(c.records) != want {
			t.Fatalf("after the ring became %d members: %d records held, want %d", len(ring), len(c.records), want)
		}
	}
}
