package cluster

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster/gossiptest"
)

// BenchmarkHomedRecords measures what ownership costs in heap (issue 25):
// node a claims N sessions alone (the owner's cost per stream), then b joins
// and becomes home of all of them (two-node pool: HomeReplicas+1 = 2 slots),
// which is b's cost per homed record (the join's push/pull and a's rehoming
// bring them); then b makes four more push/pulls with a (a Join of a's
// address: a full state exchange each way), the garbage each exchange makes
// per record held. Periodic push/pull is left at its default (10 s) so that
// no exchange is in flight when the heap is read.
// Heap figures are after runtime.GC; the process holds both nodes, so each
// phase is the difference to the one before. N is HOMED_RECORDS (default
// 50,000). Run with -benchtime 1x:
//
//	go test -run '^$' -bench HomedRecords -benchtime 1x ./cluster
//
// HOMED_HEAPPROFILE=path writes a heap profile once b homes the records
// (add -memprofilerate 512 for a fine one).
func BenchmarkHomedRecords(b *testing.B) {
	n := 50_000
	if v, err := strconv.Atoi(os.Getenv("HOMED_RECORDS")); err == nil && v > 0 {
		n = v
	}
	for range b.N {
		measureHomed(b, n)
	}
}

func heapAfterGC() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func measureHomed(b *testing.B, n int) {
	b.ReportAllocs()
	nw := gossiptest.NewNetwork()
	a := startNode(b, "a", withNetwork(b, nw))
	h := startNode(b, "b", withNetwork(b, nw))
	trace := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	topics := []string{"load-0"}
	sessions := make([]string, n)
	for i := range sessions {
		sessions[i] = fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15) // push/node.FormatSessionID's form
	}
	m0 := heapAfterGC()
	for _, s := range sessions {
		a.Claim(s, topics, trace)
	}
	m1 := heapAfterGC()

	if _, err := h.ml.Join([]string{a.Local().GossipAddr}); err != nil {
		b.Fatalf("join: %v", err)
	}
	eventually(b, 60*time.Second, func() bool { return h.Stats().RecordsLive == n }, "b homes %d records, has %d", n, h.Stats().RecordsLive)
	quiet(b, a, h)
	// Rehoming and the join's digest both send b every record: wait until
	// b has applied the second copy too, not to count it as held.
	eventually(b, 60*time.Second, func() bool { return len(h.inbox) == 0 && h.queuedStates.Load() == 0 }, "b's inbox drains")
	m2 := heapAfterGC()
	if path := os.Getenv("HOMED_HEAPPROFILE"); path != "" { // what the homed records hold
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			b.Fatal(err)
		}
		_ = f.Close()
	}

	const exchanges = 4
	repairs := a.Stats().DigestRepairs + h.Stats().DigestRepairs
	for range exchanges {
		if _, err := h.ml.Join([]string{a.Local().GossipAddr}); err != nil {
			b.Fatalf("push/pull: %v", err)
		}
	}
	m3 := heapAfterGC()
	b.ReportMetric(float64(a.Stats().DigestRepairs+h.Stats().DigestRepairs-repairs), "repairs")

	per := func(x, y uint64) float64 { return (float64(x) - float64(y)) / float64(n) }
	b.ReportMetric(per(m1.HeapAlloc, m0.HeapAlloc), "owner-heap-B/record")
	b.ReportMetric(per(m2.HeapAlloc, m1.HeapAlloc), "homed-heap-B/record")
	b.ReportMetric(per(m2.TotalAlloc, m1.TotalAlloc), "homing-alloc-B/record")
	b.ReportMetric(per(m3.TotalAlloc, m2.TotalAlloc)/exchanges, "pushpull-alloc-B/record")
	b.ReportMetric(float64(m3.HeapSys-m0.HeapSys)/(1<<20), "heap-sys-growth-MiB")
}
