package cluster

import (
	"reflect"
	"testing"
	"time"
	"unsafe"
)

// TestEntryKeepsTheRecord: the compact entry gives back the record it was
// built from, live or tombstone, and stays within its 80-byte size class
// (issue 25: a homed record costs its entry, session id, trace and map slot).
func TestEntryKeepsTheRecord(t *testing.T) {
	if got := unsafe.Sizeof(entry{}); got > 80 {
		t.Fatalf("entry is %d bytes, want ≤ 80", got)
	}
	var in interner
	now := time.Unix(0, 1732240000999999999)
	live := sampleRecord()
	ended := live
	ended.Ended, ended.EndedAt = true, time.Unix(0, 1732240009000000000)
	opaque := live
	opaque.Trace, opaque.Topics, opaque.Since = "not-a-traceparent", []string{"one"}, time.Time{}
	for _, r := range []Record{live, ended, opaque} {
		e := in.entry(r, false, now)
		if got := e.record(r.Session); !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
	}
	a, b := in.entry(opaque, false, now), in.entry(opaque, false, now)
	if a.who != b.who || &a.topics[0] != &b.topics[0] {
		t.Fatalf("owner and one-topic list not shared")
	}
}
