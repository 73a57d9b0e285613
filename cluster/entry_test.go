package cluster

import (
	"reflect"
	"testing"
	"time"
	"unsafe"
)

// TestEntryKeepsTheRecord: the compact entry gives back the record it was
// built from, live or tombstone, Herald's form or not, and stays within 64
// bytes with nothing allocated beside it for Herald's records (issue 25:
// a homed record costs its entry and its table slot, ADR 0031).
func TestEntryKeepsTheRecord(t *testing.T) {
	if got := unsafe.Sizeof(entry{}); got > 64 {
		t.Fatalf("entry is %d bytes, want ≤ 64", got)
	}
	var in interner
	now := time.Unix(0, 1732240000999999999)
	live := sampleRecord()
	ended := live
	ended.Ended, ended.EndedAt = true, time.Unix(0, 1732240009000000000)
	opaque := live
	opaque.Trace, opaque.Topics, opaque.Since = "not-a-traceparent", []string{"one"}, time.Time{}
	claimed := live // Claim's usual form: claim time = incarnation
	claimed.Since = time.Unix(0, int64(claimed.Incarnation))
	epoch := live
	epoch.Since, epoch.Trace, epoch.Topics = time.Unix(0, 0), "", nil
	many := live
	many.Topics = []string{"a", "b", "c"}
	for _, r := range []Record{live, ended, opaque, claimed, epoch, many} {
		e := in.entry(r, false, now)
		if got := e.record(r.Session); !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
	}
	if e := in.entry(claimed, false, now); e.ext != nil {
		t.Fatalf("a Herald claim (traceparent, claim time = incarnation) allocates %+v", *e.ext)
	}
	a, b := in.entry(opaque, false, now), in.entry(opaque, false, now)
	if a.who != b.who {
		t.Fatalf("owner and one-topic list not shared")
	}
}

// TestTableKeys: Herald's hex session ids and any other printable id are
// kept apart and found again; deleted slots are reused.
func TestTableKeys(t *testing.T) {
	tb := newTable()
	ids := []string{"00000000000000ff", "ffffffffffffffff", "0000000000000000", "ABCDEF0123456789", "s1", "00000000000000f", "00000000000000ff0"}
	for i, s := range ids {
		k := sidOf(s)
		if (k.s == "") != (i < 3) {
			t.Fatalf("%q: hex form %v", s, k.s == "")
		}
		if k.String() != s || k.fnv() != fnvAdd(fnvOffset, s) || k.hash() != sessionHash(s) {
			t.Fatalf("%q: key form does not give back the id or its hashes", s)
		}
		tb.put(k, entry{inc: uint64(i + 1)})
	}
	if tb.len() != len(ids) {
		t.Fatalf("len %d", tb.len())
	}
	for i, s := range ids {
		if e := tb.get(s); e == nil || e.inc != uint64(i+1) {
			t.Fatalf("%q: %+v", s, e)
		}
	}
	seen := map[string]bool{}
	for k := range tb.all() {
		seen[k.String()] = true
	}
	if len(seen) != len(ids) {
		t.Fatalf("all yields %d ids", len(seen))
	}
	tb.del(sidOf(ids[0]))
	if tb.get(ids[0]) != nil || tb.len() != len(ids)-1 {
		t.Fatal("deleted id still found")
	}
	tb.put(sidOf("new"), entry{inc: 99})
	if len(tb.chunks) != 1 || tb.get("new").inc != 99 || tb.get(ids[1]).inc != 2 {
		t.Fatal("slot not reused or neighbour overwritten")
	}
}
