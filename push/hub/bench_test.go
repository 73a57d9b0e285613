package hub_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/store/memstore"
)

// BenchmarkHubFanout measures what one announcement costs the hub: one
// Deliver on a topic with subs subscribers (shard lock, duplicate check, the
// body encoded once, one enqueue and one Ready signal per subscriber).
//
// Design: subscribers are drained outside the timer. Queues hold drainEvery
// deliveries; every drainEvery ops the timer stops and every queue is
// emptied with Take. Concurrent consumer goroutines would add their lock
// contention and scheduler noise to the number, and depend on GOMAXPROCS;
// what is left here is the publisher-side cost, the part of fan-out that is
// on the store's announcing goroutine. drainEvery shrinks as subs grows so
// queued pointers stay around a million.
func benchmarkHubFanout(b *testing.B, subs int, data []byte) {
	store := memstore.New(memstore.Config{})
	b.Cleanup(func() { _ = store.Close() })
	h, err := hub.New(hub.Config{Store: store, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Close() })

	drainEvery := min(max(1<<20/subs, 1), 1024)
	lim := hub.Limits{MaxEvents: drainEvery, MaxBytes: drainEvery * (len(data) + 64)}
	ss := make([]*hub.Subscriber, subs)
	for i := range ss {
		ss[i] = hub.NewSubscriber([]string{"fanout"}, lim)
		if err := h.Subscribe(context.Background(), ss[i]); err != nil {
			b.Fatal(err)
		}
	}
	// The hub retains delivered events until subscribers take them; one
	// window of events is reused once every queue is empty again.
	evs := make([]push.Event, drainEvery)
	for i := range evs {
		evs[i] = push.Event{Topic: "fanout", Origin: "local", Epoch: "bench", Type: "tick", Data: data}
	}
	var scratch []*hub.Delivery
	drain := func() {
		for _, s := range ss {
			scratch = s.Take(scratch[:0])
		}
		clear(scratch)
	}
	// Warm up: one full window grows every queue to its steady capacity
	// (Take keeps it), so queue growth is not charged to the first ops.
	offset := uint64(0)
	for j := range evs {
		offset++
		evs[j].Offset = offset
		h.Deliver(&evs[j])
	}
	drain()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := i % drainEvery
		if j == 0 && i > 0 {
			b.StopTimer()
			drain()
			b.StartTimer()
		}
		offset++
		evs[j].Offset = offset
		h.Deliver(&evs[j])
	}
	b.StopTimer()
	if st := h.Stats(); st.SlowCutoffs != 0 || st.Dispatched != offset*uint64(subs) {
		b.Fatalf("stats %+v, want %d dispatched and no cutoffs", st, offset*uint64(subs))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/enqueue")
}

func BenchmarkHubFanout(b *testing.B) {
	data := []byte(`{"sym":"ABC","price":123.45,"qty":100}`)
	for _, subs := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) { benchmarkHubFanout(b, subs, data) })
	}
}
