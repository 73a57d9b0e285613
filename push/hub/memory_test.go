package hub_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/store/memstore"
)

// watchedTopicHeap is the heap a hub holds per watched topic with one
// subscriber (topics10k's shape: every stream alone on its topic), after
// perTopic events were dispatched to each and taken by its subscriber:
// the topic's state, its recent-events cache, the subscriber and the
// store's watch. The events are made after the baseline, as the Redis
// listener decodes them (announced), and dropped by the test once
// delivered: what of them the hub keeps counts.
func watchedTopicHeap(tb testing.TB, topics, perTopic int) float64 {
	tb.Helper()
	store := memstore.New(memstore.Config{})
	tb.Cleanup(func() { _ = store.Close() })
	h, err := hub.New(hub.Config{Store: store, Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("mem-%d", i)
	}
	subs := make([]*hub.Subscriber, topics)
	var scratch []*hub.Delivery
	before := heapAlloc()
	for i := range subs {
		subs[i] = hub.NewSubscriber(names[i:i+1], hub.Limits{})
		if err := h.Subscribe(context.Background(), subs[i]); err != nil {
			tb.Fatal(err)
		}
	}
	for j := range perTopic {
		for i := range names {
			h.Deliver(announced(names[i], store.Origin(), uint64(j+1)))
		}
	}
	for _, s := range subs {
		if scratch = s.Take(scratch[:0]); len(scratch) != perTopic {
			tb.Fatalf("subscriber took %d deliveries, want %d", len(scratch), perTopic)
		}
		clear(scratch)
	}
	after := heapAlloc()
	runtime.KeepAlive(subs)
	return float64(after-before) / float64(topics)
}

// announced makes an event the way the Redis listener decodes a
// notification: one payload string, whose substrings are the event's
// epoch, type and traceparent, and a copy of its 64 bytes of data.
func announced(topic, origin string, off uint64) *push.Event {
	payload := fmt.Sprintf("0123456789abcdef\n%d\n1765100000000\nmessage\n00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n%064d", off, off)
	f := strings.SplitN(payload, "\n", 6)
	return &push.Event{Topic: topic, Origin: origin, Epoch: f[0], Offset: off, Time: time.UnixMilli(1765100000000),
		Type: f[3], TraceParent: f[4], Data: []byte(f[5])}
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestWatchedTopicHeapIsSmall pins the hub's memory per watched topic: a
// node watches as many topics as its streams do, and every topic with a
// stream keeps a recent-events cache (layer 4). With a map per origin for
// the last position and one for the cache, and a cache ring of
// RecentEvents slots allocated on the first event, a topic that saw 4
// events cost 2,402 B here; the slice per origin and a ring grown on
// demand cost 1,316 B (docs/benchmarks.md, "Issue 20 item 4 memory,
// session 12"), not counting the events the cache kept: each kept its
// whole Pub/Sub payload too, 2,881 B per topic in all; a compact entry per
// cached event 2,322 B (session 14).
func TestWatchedTopicHeapIsSmall(t *testing.T) {
	const limit = 2560
	got := watchedTopicHeap(t, 4000, 4)
	t.Logf("%.0f B of heap per watched topic", got)
	if got > limit {
		t.Fatalf("%.0f B of heap per watched topic with one subscriber and 4 events; want ≤ %d", got, limit)
	}
}

// BenchmarkWatchedTopicHeap reports the heap per watched topic (see
// TestWatchedTopicHeapIsSmall) after 1, 4 and 64 events.
func BenchmarkWatchedTopicHeap(b *testing.B) {
	for _, n := range []int{1, 4, 64} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = watchedTopicHeap(b, 2000, n)
			}
			b.ReportMetric(per, "B/topic")
		})
	}
}
