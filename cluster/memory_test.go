package cluster

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster/gossiptest"
)

// BenchmarkHomedRecords measures what ownership costs in heap (issue 25):
// node a claims N sessions alone (the owner's cost per stream), then b joins
// and becomes home of all of them (two-node pool: the one node besides the
// owner is the home of every session, ADR 0037),
// which is b's cost per homed record (the join's push/pull and a's rehoming
// bring them); then b makes four more push/pulls with a (a Join of a's
// address: a full state exchange each way), the garbage each exchange makes
// per record held, and four periodic exchanges (summaries, ADR 0035), the
// garbage of one (a state each way, with the delegate's callbacks). Periodic push/pull is left at its default (10 s) so that
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

// samplePeakHeap samples the heap's live and unswept objects every
// millisecond until stop is called, which returns the highest figure: the
// peak that sets the heap goal (and so the RSS) while records arrive.
func samplePeakHeap() (stop func() uint64) {
	var max uint64
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > max {
				max = v
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return max
	}
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
	recv0 := h.Stats().RecordsReceived
	stopPeak := samplePeakHeap()

	if _, err := h.ml.Join([]string{a.Local().GossipAddr}); err != nil {
		b.Fatalf("join: %v", err)
	}
	eventually(b, 60*time.Second, func() bool { return h.Stats().RecordsLive == n }, "b homes %d records, has %d", n, h.Stats().RecordsLive)
	quiet(b, a, h)
	// Rehoming and the join's digest both send b every record: wait until
	// b has applied the second copy too, not to count it as held.
	eventually(b, 60*time.Second, func() bool { return len(h.inbox) == 0 && h.queuedStates.Load() == 0 }, "b's inbox drains")
	peakHeap := stopPeak()
	m2 := heapAfterGC()
	received := h.Stats().RecordsReceived - recv0
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
	// Periodic exchanges (not joins) send summaries (ADR 0035): through the
	// delegate as memberlist's periodic push/pull calls it, each way.
	for range exchanges {
		periodicExchange(b, a, h)
	}
	m4 := heapAfterGC()
	b.ReportMetric((float64(m4.TotalAlloc)-float64(m3.TotalAlloc))/(2*exchanges), "periodic-pushpull-alloc-B")

	per := func(x, y uint64) float64 { return (float64(x) - float64(y)) / float64(n) }
	b.ReportMetric(per(m1.HeapAlloc, m0.HeapAlloc), "owner-heap-B/record")
	b.ReportMetric(per(m2.HeapAlloc, m1.HeapAlloc), "homed-heap-B/record")
	b.ReportMetric(per(m2.TotalAlloc, m1.TotalAlloc), "homing-alloc-B/record")
	// Both nodes are in this process: the garbage counts the sender's
	// encoding as well as memberlist's and b's decoding.
	b.ReportMetric((float64(m2.TotalAlloc)-float64(m1.TotalAlloc))/float64(max(received, 1)), "alloc-B/received-record")
	b.ReportMetric(float64(received)/float64(n), "received/record")
	b.ReportMetric((float64(peakHeap)-float64(m1.HeapAlloc))/(1<<20), "homing-peak-heap-growth-MiB")
	b.ReportMetric(per(m3.TotalAlloc, m2.TotalAlloc)/exchanges, "pushpull-alloc-B/record")
	b.ReportMetric(float64(m3.HeapSys-m0.HeapSys)/(1<<20), "heap-sys-growth-MiB")
}

// BenchmarkReceiveBatch measures what a home allocates to receive forwarded
// records, from memberlist's NotifyMsg to the stored entry (its copy of the
// message, decoding, applying), in the JSON form of nodes from before
// msgBatch and in msgBatch (ADR 0030, amended). Memberlist's own copies of
// the message (framing, encryption, reading) come on top, proportional to
// its bytes (bytes/record). Each batch carries 500 new Herald records,
// so alloc-B/record includes the stored entry (~160 B):
//
//	go test -run '^$' -bench ReceiveBatch ./cluster
func BenchmarkReceiveBatch(b *testing.B) {
	for _, form := range []struct {
		name   string
		encode func(string, []Record, []bool, int) ([]byte, int)
	}{{"json", encodeStateJSON}, {"binary", encodeState}} {
		b.Run(form.name, func(b *testing.B) {
			h := startNode(b, "b")
			d := delegate{h.Cluster}
			const per = 500 // a JSON batch of 500 stays under maxSmallMsg
			recs := heraldRecords(per)
			recs[per/2].Ended = false // an old tombstone would not be stored
			parts := make([]bool, per)
			msgs := make([][]byte, b.N)
			for i := range msgs {
				for j := range recs {
					recs[j].Session = fmt.Sprintf("%016x", uint64(i*per+j+1)*0x9e3779b97f4a7c15)
				}
				msgs[i], _ = form.encode("herald-0", recs, parts, 0)
			}
			m0 := heapAfterGC()
			b.ResetTimer()
			for i, msg := range msgs {
				d.NotifyMsg(msg)
				want := uint64((i + 1) * per)
				deadline := time.Now().Add(10 * time.Second)
				for st := h.Stats(); st.RecordsReceived < want; st = h.Stats() {
					if time.Now().After(deadline) {
						b.Fatalf("batch %d not applied: %d records received, %d invalid messages", i, st.RecordsReceived, st.Invalid)
					}
					runtime.Gosched()
				}
			}
			b.StopTimer()
			var m1 runtime.MemStats
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(b.N*per), "alloc-B/record")
			b.ReportMetric(float64(len(msgs[0]))/per, "bytes/record")
			if got := h.Stats().RecordsLive; got != b.N*per {
				b.Fatalf("%d records stored, want %d", got, b.N*per)
			}
		})
	}
}
