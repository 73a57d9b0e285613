package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"
)

// periodicExchange performs what memberlist's periodic push/pull (not a
// join) does between from and to through the delegate: from's LocalState
// merged by to, and back. It waits until both merges ran.
func periodicExchange(tb testing.TB, x, y *testNode) {
	tb.Helper()
	for _, p := range [][2]*testNode{{x, y}, {y, x}} {
		from, to := p[0], p[1]
		merges := to.st.merges.Load()
		delegate{to.Cluster}.MergeRemoteState(delegate{from.Cluster}.LocalState(false), false)
		eventually(tb, 10*time.Second, func() bool { return to.st.merges.Load() > merges }, "%s merges %s's state", to.name, from.name)
	}
}

func heraldSessions(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%016x", uint64(i+1)*0x9e3779b97f4a7c15) // push/node.FormatSessionID's form
	}
	return s
}

// TestSteadyPushPullIsConstantSize (issue 25, ADR 0035): two nodes that
// hold the same 50,000 records exchange push/pull states whose size and
// garbage do not grow with the records: a per-bucket summary, no digest.
// Before ADR 0035 a state was a 19-byte digest entry per record (~1 MB
// here) and an exchange allocated several MB.
func TestSteadyPushPullIsConstantSize(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 records")
	}
	// Slow probes and gossip: memberlist's UDP listener allocates 64 KiB a
	// packet, which would count the background traffic of the
	// measurement's duration (several times longer under -race).
	quietGossip := func(c *Config) { c.Tuning.ProbeInterval, c.Tuning.GossipInterval = time.Minute, time.Minute }
	nodes := startCluster(t, 2, quietGossip)
	a, b := nodes[0], nodes[1]
	const n = 50_000
	for _, s := range heraldSessions(n) {
		a.Claim(s, []string{"load-0"}, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	}
	eventually(t, 60*time.Second, func() bool { return b.Stats().RecordsLive == n }, "b homes %d records", n)
	quiet(t, a, b)
	eventually(t, 30*time.Second, func() bool { return len(b.inbox) == 0 && b.queuedStates.Load() == 0 }, "b's inbox drains")
	periodicExchange(t, a, b) // warm up: the first exchange after the rehoming may repair

	if size := len(delegate{a.Cluster}.LocalState(false)); size > 4<<10 {
		t.Fatalf("push/pull state of a node holding %d records: %d bytes", n, size)
	}
	repairs := a.Stats().DigestRepairs + b.Stats().DigestRepairs
	requested := a.Stats().BucketsRequested + b.Stats().BucketsRequested
	const rounds = 4
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for range rounds {
		periodicExchange(t, a, b)
	}
	runtime.ReadMemStats(&m1)
	perExchange := (m1.TotalAlloc - m0.TotalAlloc) / (2 * rounds)
	t.Logf("allocated per exchange: %d bytes (%d records held)", perExchange, n)
	if r := a.Stats().BucketsRequested + b.Stats().BucketsRequested - requested; r != 0 {
		t.Fatalf("%d buckets requested between nodes in sync", r)
	}
	// The bound is per bucket and per member, not per record: 50,000
	// records at one byte each would already exceed it.
	if perExchange > 48<<10 {
		t.Fatalf("an exchange between nodes holding the same %d records allocated %d bytes", n, perExchange)
	}
	if r := a.Stats().DigestRepairs + b.Stats().DigestRepairs - repairs; r != 0 {
		t.Fatalf("%d repairs between nodes in sync", r)
	}
}

// TestSummaryRepairsADifferingBucket: periodic (summary) exchanges still
// repair a home that lost a record and still tell an owner that its claim
// was superseded behind its back; only the differing bucket's digests
// travel.
func TestSummaryRepairsADifferingBucket(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	const n = 2000
	for _, s := range heraldSessions(n) {
		a.Claim(s, []string{"t"}, "")
	}
	a.Claim("missed", []string{"t"}, "")
	a.Claim("taken", []string{"t"}, "")
	eventually(t, 10*time.Second, func() bool { return b.Stats().RecordsLive == n+2 }, "b homes the records")
	quiet(t, a, b)
	eventually(t, 10*time.Second, func() bool { return len(b.inbox) == 0 && b.queuedStates.Load() == 0 }, "b's inbox drains")
	periodicExchange(t, a, b)
	quiet(t, a, b)
	req := a.Stats().BucketsRequested + b.Stats().BucketsRequested

	b.recMu.Lock()
	b.deleteLocked(sidOf("missed"))
	b.recMu.Unlock()
	periodicExchange(t, a, b)
	eventually(t, 5*time.Second, func() bool { r, ok := b.Lookup("missed"); return ok && r.Node == "a" }, "b gets the record back")
	if got := a.Stats().BucketsRequested + b.Stats().BucketsRequested - req; got != 2 {
		t.Fatalf("%d buckets requested, want one each way", got)
	}

	old, _ := a.Lookup("taken")
	b.recMu.Lock()
	b.storeLocked(Record{Session: "taken", Node: "b", Incarnation: old.Incarnation + 1, Since: time.Now()}, false, time.Now())
	b.records.get("taken").flags |= entServed
	b.recMu.Unlock()
	periodicExchange(t, a, b)
	eventually(t, 5*time.Second, func() bool { return len(a.revs.forSession("taken")) == 1 }, "a revokes taken")
	if r := a.revs.forSession("taken")[0]; r.By != "b" || r.Reason != ReasonTakeover || r.Incarnation != old.Incarnation {
		t.Fatalf("revocation %+v", r)
	}
}

// TestSummariesOnlyWhenEveryMemberSpeaksThem: during a rolling upgrade a
// member that does not advertise summaries (nodeMeta.W) would drop one, so
// periodic states are full digests while such a member is live; joins
// always exchange full digests.
func TestSummariesOnlyWhenEveryMemberSpeaksThem(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	a.Claim("s", []string{"t"}, "")
	if k := (delegate{a.Cluster}).LocalState(false)[1]; k != msgSummary {
		t.Fatalf("periodic state kind %d, want msgSummary", k)
	}
	if k := (delegate{a.Cluster}).LocalState(true)[1]; k != msgDigest {
		t.Fatalf("join state kind %d, want msgDigest", k)
	}
	b.metaMu.Lock()
	b.meta.W = wireBinaryBatches // b now looks like a node from before summaries
	b.metaMu.Unlock()
	if err := b.ml.UpdateNode(5 * time.Second); err != nil {
		t.Fatalf("update node: %v", err)
	}
	eventually(t, 5*time.Second, func() bool { return delegate{a.Cluster}.LocalState(false)[1] == msgDigest }, "a sends digests")
}

// TestSummariesAgreeAcrossAPool: in a four-node pool, where each record
// has an owner and homes and most pairs share only part of their records,
// nodes in sync agree on every bucket of every pair (no digest travels),
// and a home that lost a record gets it back from a periodic exchange.
func TestSummariesAgreeAcrossAPool(t *testing.T) {
	nodes := startCluster(t, 4)
	for i, n := range nodes[:3] {
		for j := range 300 {
			n.Claim(fmt.Sprintf("%016x", uint64(i*1000+j+1)*0x9e3779b97f4a7c15), []string{"t"}, "")
		}
	}
	quiet(t, nodes...)
	all := func() {
		for i, x := range nodes {
			for _, y := range nodes[i+1:] {
				periodicExchange(t, x, y)
			}
		}
		quiet(t, nodes...)
	}
	requested := func() (n uint64) {
		for _, x := range nodes {
			n += x.Stats().BucketsRequested
		}
		return n
	}
	all()
	before := requested()
	all()
	if got := requested() - before; got != 0 {
		t.Fatalf("%d buckets requested between nodes in sync", got)
	}
	// A record of a homed at d (not its owner) goes missing there.
	d := nodes[3]
	var lost string
	for j := range 300 {
		s := fmt.Sprintf("%016x", uint64(j+1)*0x9e3779b97f4a7c15)
		if _, ok := d.Lookup(s); ok {
			lost = s
			break
		}
	}
	if lost == "" {
		t.Fatalf("d homes none of a's records")
	}
	d.recMu.Lock()
	d.deleteLocked(sidOf(lost))
	d.recMu.Unlock()
	all()
	eventually(t, 5*time.Second, func() bool { _, ok := d.Lookup(lost); return ok }, "d gets %s back", lost)
	if got := requested() - before; got == 0 || got > 8 {
		t.Fatalf("%d buckets requested for one lost record", got)
	}
}

// TestSummaryMessagesRoundTripAndRefuseMalformed: the three messages of
// ADR 0035 decode to what was encoded, and a truncated or inconsistent one
// is refused with ErrMalformed (FuzzDecodeMessage explores the rest).
func TestSummaryMessagesRoundTripAndRefuseMalformed(t *testing.T) {
	var sums [summaryBuckets]uint64
	sums[3], sums[summaryBuckets-1] = 7, 1<<63
	sm := encodeSummary("n0", []string{"n1", "n2"}, [][summaryBuckets]uint64{sums, {}})
	m, err := decodeMessage(sm)
	if err != nil || m.kind != msgSummary || m.from != "n0" || len(m.sum.peers) != 2 {
		t.Fatalf("summary: %v %+v", err, m.sum.peers)
	}
	if sec, ok := m.sum.section("n1"); !ok || binary.BigEndian.Uint64(sec[3*8:]) != 7 || binary.BigEndian.Uint64(sec[(summaryBuckets-1)*8:]) != 1<<63 {
		t.Fatalf("section n1 wrong")
	}
	if _, ok := m.sum.section("n3"); ok {
		t.Fatalf("section for an absent peer")
	}
	var mask bucketMask
	mask.set(5)
	rq, err := decodeMessage(encodeDigestReq("n1", mask))
	if err != nil || rq.kind != msgDigestReq || rq.mask != mask {
		t.Fatalf("request: %v", err)
	}
	in := newDigestBuilder("n2", 1)
	var h uint64
	for i := uint64(1); bucketOf(h) != 5; i++ {
		h = sessionHash(fmt.Sprint(i))
	}
	in.add(h, "n0", 3, false, 0)
	bd, err := decodeMessage(in.encodeBuckets("n2", mask))
	if err != nil || bd.kind != msgBucketDigest || bd.mask != mask || bd.dig.len() != 1 {
		t.Fatalf("bucket digest: %v", err)
	}
	var other bucketMask
	other.set(6)
	out := newDigestBuilder("n2", 1)
	out.add(h, "n0", 3, false, 0)
	for name, b := range map[string][]byte{
		"summary truncated":     sm[:len(sm)-1],
		"summary trailing":      append(slices.Clone(sm), 0),
		"summary bucket bits":   slices.Concat(sm[:5], []byte{summaryBits + 1}, sm[6:]),
		"request without mask":  encodeDigestReq("n1", mask)[:5],
		"request empty mask":    encodeDigestReq("n1", bucketMask{}),
		"entry outside buckets": out.encodeBuckets("n2", other),
	} {
		if _, err := decodeMessage(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
