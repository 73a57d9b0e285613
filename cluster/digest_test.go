package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"testing"
	"time"
)

// reencodeDigest writes a decoded digest back in wire form.
func reencodeDigest(d digest) []byte {
	b := []byte{wireVersion, msgDigest}
	b = binary.AppendUvarint(b, uint64(len(d.from)))
	b = append(b, d.from...)
	b = binary.AppendUvarint(b, uint64(len(d.names)))
	for _, n := range d.names {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
	}
	b = binary.AppendUvarint(b, uint64(d.len()))
	return append(b, d.entries...)
}

func TestDigestRoundTrip(t *testing.T) {
	var recs []Record
	for i := range 1000 {
		recs = append(recs, Record{Session: fmt.Sprintf("s-%d", i), Node: fmt.Sprintf("n%d", i%3),
			Incarnation: uint64(i + 1), Ended: i%7 == 0})
	}
	msg, left := encodeDigest("n0", recs, 0)
	if left != 0 {
		t.Fatalf("left out %d", left)
	}
	// The point of a digest: a record costs its 19-byte entry, not ~200
	// bytes of JSON.
	if per := float64(len(msg)) / float64(len(recs)); per > digestEntry+0.1 {
		t.Fatalf("%.1f bytes per record", per)
	}
	m, err := decodeMessage(msg)
	if err != nil || m.kind != msgDigest || m.from != "n0" || m.dig.len() != len(recs) {
		t.Fatalf("decode: %v, %+v", err, m.from)
	}
	for _, r := range recs {
		got, ok := m.dig.find(sessionHash(r.Session))
		if !ok || got.Node != r.Node || got.Incarnation != r.Incarnation || got.Ended != r.Ended {
			t.Fatalf("find(%s) = %+v, %v", r.Session, got, ok)
		}
	}
	if _, ok := m.dig.find(sessionHash("absent")); ok {
		t.Fatalf("found an absent session")
	}
	if _, left := encodeDigest("n0", recs, 400); left == 0 {
		t.Fatalf("budget not enforced")
	}
	// Unsorted entries, a zero incarnation and a name index out of range
	// are refused.
	bad := slices.Clone(msg)
	off := len(bad) - 2*digestEntry
	copy(bad[off:off+digestEntry], msg[len(msg)-digestEntry:])
	copy(bad[off+digestEntry:], msg[off:off+digestEntry])
	one, _ := encodeDigest("n0", recs[:1], 0)
	for name, b := range map[string][]byte{
		"unsorted":  bad,
		"zero inc":  append(slices.Clone(one[:len(one)-11]), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
		"bad index": append(slices.Clone(one[:len(one)-3]), 0, 9, 0),
		"bad flags": append(slices.Clone(one[:len(one)-1]), 2),
		"truncated": one[:len(one)-1],
	} {
		if _, err := decodeMessage(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// TestScoreAndInHomes pins the rendezvous score to FNV-1a + splitmix64 of
// session, a zero byte and member (every node must compute the same
// homes, old builds included) and checks inHomes against homesOf.
func TestScoreAndInHomes(t *testing.T) {
	ring := []string{"n0", "n1", "n2", "n3", "n4"}
	for i := range 2000 {
		s := fmt.Sprintf("sess-%d", i)
		h := fnv.New64a()
		_, _ = h.Write([]byte(s))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte("n3"))
		if score(s, "n3") != mix64(h.Sum64()) {
			t.Fatalf("score(%s) differs from FNV-1a+splitmix64", s)
		}
		for k := 1; k <= 3; k++ {
			homes := homesOf(s, ring, k)
			for _, m := range append(ring, "absent") {
				if inHomes(s, m, ring, k) != slices.Contains(homes, m) {
					t.Fatalf("inHomes(%s, %s, k=%d) disagrees with homesOf %v", s, m, k, homes)
				}
			}
		}
	}
}

func TestPackTrace(t *testing.T) {
	for _, tc := range []struct {
		in     string
		packed bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", false}, // upper case would not round-trip
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", false},
		{"", false},
		{"opaque trace", false},
	} {
		var in interner
		e := in.entry(Record{Node: "n", Incarnation: 1, Trace: tc.in}, false, time.Now())
		if packed := e.flags&entTrace != 0; packed != tc.packed || e.ext != nil && packed || e.traceString() != tc.in {
			t.Errorf("trace %q: packed %v, ext %v, back %q", tc.in, packed, e.ext, e.traceString())
		}
	}
}

// TestPushPullStateIsSmall: the push/pull state of a node holding records
// costs a fixed ~19 bytes per record (a digest), not the records
// themselves. With full JSON records (before ADR 0030) a record cost ~250
// bytes there, and a node holding no stream decoded every peer's records
// every PushPullInterval (issue 25).
func TestPushPullStateIsSmall(t *testing.T) {
	a := startNode(t, "a")
	trace := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const n = 2000
	for i := range n {
		a.Claim(fmt.Sprintf("sess-%08d-4a6f-9c1e-%012d", i, i), []string{"load-0"}, trace)
	}
	state := delegate{a.Cluster}.LocalState(false)
	if per := float64(len(state)) / n; per > 20 {
		t.Fatalf("push/pull state: %.0f bytes per record held (%d bytes for %d records)", per, len(state), n)
	}
}

// TestDigestRepairsAHomeThatMissedARecord: a home that lost a record (a
// dropped forward) gets it back from the owner at the next push/pull, and
// an owner whose claim was superseded behind its back learns it there.
func TestDigestRepairsAHomeThatMissedARecord(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	a.Claim("missed", []string{"t"}, "")
	eventually(t, 5*time.Second, func() bool { _, ok := b.Lookup("missed"); return ok }, "b homes the record")
	quiet(t, a, b)
	b.recMu.Lock()
	b.deleteLocked(sidOf("missed"))
	b.recMu.Unlock()
	if _, err := b.ml.Join([]string{a.Local().GossipAddr}); err != nil {
		t.Fatalf("push/pull: %v", err)
	}
	eventually(t, 5*time.Second, func() bool { r, ok := b.Lookup("missed"); return ok && r.Node == "a" }, "b gets the record back")

	// A newer claim by b stored on b only (its forward lost): a still
	// serves the session until a push/pull tells it.
	a.Claim("taken", []string{"t"}, "")
	eventually(t, 5*time.Second, func() bool { _, ok := b.Lookup("taken"); return ok }, "b homes taken")
	quiet(t, a, b)
	old, _ := a.Lookup("taken")
	b.recMu.Lock()
	b.storeLocked(Record{Session: "taken", Node: "b", Incarnation: old.Incarnation + 1, Since: time.Now()}, false, time.Now())
	b.records.get("taken").flags |= entServed
	b.recMu.Unlock()
	if len(a.revs.forSession("taken")) != 0 {
		t.Fatalf("a revoked before any exchange")
	}
	if _, err := a.ml.Join([]string{b.Local().GossipAddr}); err != nil {
		t.Fatalf("push/pull: %v", err)
	}
	eventually(t, 5*time.Second, func() bool { return len(a.revs.forSession("taken")) == 1 }, "a revokes taken")
	if r := a.revs.forSession("taken")[0]; r.By != "b" || r.Reason != ReasonTakeover || r.Incarnation != old.Incarnation {
		t.Fatalf("revocation %+v", r)
	}
}

// TestForwardsToANodeWithoutBinaryBatchesAreJSON: during a rolling upgrade
// a member that does not advertise msgBatch (nodeMeta.W) gets forwarded
// records as JSON msgState, which every node decodes, and they still reach
// it; the others get msgBatch.
func TestForwardsToANodeWithoutBinaryBatchesAreJSON(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	var in interner
	items := []fwdItem{{sidOf("s"), in.entry(Record{Session: "s", Node: "a", Incarnation: 1}, false, time.Now())}}
	kindFor := func(n *testNode, dest string) byte {
		msg, _ := n.batchEncoder(dest)(n.name, items, 0)
		return msg[1]
	}
	if k := kindFor(a, "b"); k != msgBatch {
		t.Fatalf("to a current member: kind %d, want msgBatch", k)
	}
	b.metaMu.Lock()
	b.meta.W = 0 // b now looks like a node from before msgBatch
	b.metaMu.Unlock()
	if err := b.ml.UpdateNode(5 * time.Second); err != nil {
		t.Fatalf("update node: %v", err)
	}
	eventually(t, 5*time.Second, func() bool { return kindFor(a, "b") == msgState }, "a sends b JSON")
	if k := kindFor(b, "a"); k != msgBatch {
		t.Fatalf("b to a: kind %d, want msgBatch", k)
	}
	const n = 50
	for i := range n {
		a.Claim(fmt.Sprintf("old-%d", i), []string{"t"}, "")
	}
	eventually(t, 5*time.Second, func() bool { return b.Stats().RecordsLive == n }, "b homes a's %d claims, has %d", n, b.Stats().RecordsLive)
	if inv := b.Stats().Invalid; inv != 0 {
		t.Fatalf("b dropped %d messages", inv)
	}
}
