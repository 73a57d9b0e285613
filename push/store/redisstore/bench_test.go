package redisstore_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/store/redisstore"
)

// benchmarkAppend appends batches of batch drafts (100-byte payloads), from
// parallel goroutines when parallel is set (each to its own topic when
// topics is set, as publishes to 10,000 topics do), against a single
// redis-server on loopback.
func benchmarkAppend(b *testing.B, batch int, parallel, idem, topics bool) {
	srv := redistest.StartServer(b)
	s := newStore(b, srv.Client(b), redisstore.Config{Retention: push.RetentionPolicy{Default: push.Retention{MaxLen: 10_000, MaxAge: time.Hour}}})
	payload := []byte(fmt.Sprintf("%100s", `{"sym":"ABC","px":123.45}`))
	ctx := context.Background()
	run := func(seed int, pb func() bool) {
		topic := "bench"
		if topics {
			topic = fmt.Sprintf("bench-%d", seed)
		}
		drafts := make([]push.Draft, batch)
		for n := 0; pb(); n++ {
			for i := range drafts {
				drafts[i] = push.Draft{Type: "tick", Data: payload}
				if idem {
					drafts[i].IdempotencyKey = fmt.Sprintf("k-%d-%d-%d", seed, n, i)
				}
			}
			if _, err := s.Append(ctx, topic, drafts); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	if parallel {
		var seed atomic.Int64
		b.SetParallelism(4) // 4×GOMAXPROCS concurrent appenders
		b.RunParallel(func(pb *testing.PB) { run(int(seed.Add(1)), pb.Next) })
	} else {
		i := 0
		run(0, func() bool { i++; return i <= b.N })
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
	// This process's CPU (user + system, every thread) per append call: on
	// a shared machine it moves less with other processes' load than ns/op.
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 10} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchmarkAppend(b, batch, false, false, false) })
		b.Run(fmt.Sprintf("batch=%d/idem", batch), func(b *testing.B) { benchmarkAppend(b, batch, false, true, false) })
		b.Run(fmt.Sprintf("batch=%d/parallel", batch), func(b *testing.B) { benchmarkAppend(b, batch, true, false, false) })
		b.Run(fmt.Sprintf("batch=%d/parallel-topics", batch), func(b *testing.B) { benchmarkAppend(b, batch, true, false, true) })
	}
}

// BenchmarkAppendAnnounce measures append → return and append →
// announcement delivered on loopback, one append at a time, and reports
// their p50/p99 as metrics.
func BenchmarkAppendAnnounce(b *testing.B) {
	srv := redistest.StartServer(b)
	s := newStore(b, srv.Client(b), redisstore.Config{})
	sk := &chanSink{ch: make(chan *push.Event, 1)}
	l, err := s.Listen(sk)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := l.Watch(ctx, "lat"); err != nil {
		b.Fatal(err)
	}
	var appendLat, notifyLat []time.Duration
	timeout := time.NewTimer(time.Hour)
	defer timeout.Stop()
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := s.Append(ctx, "lat", []push.Draft{{Type: "x", Data: []byte("hello")}}); err != nil {
			b.Fatal(err)
		}
		appendLat = append(appendLat, time.Since(start))
		timeout.Reset(5 * time.Second)
		select {
		case <-sk.ch:
			notifyLat = append(notifyLat, time.Since(start))
		case <-timeout.C:
			b.Fatal("announcement missing")
		}
	}
	for name, d := range map[string][]time.Duration{"ack": appendLat, "announce": notifyLat} {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds()), name+"-p50-µs")
		b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), name+"-p99-µs")
	}
}

type chanSink struct{ ch chan *push.Event }

func (c *chanSink) Deliver(ev *push.Event) {
	select {
	case c.ch <- ev:
	default:
	}
}
func (c *chanSink) Resync() {}

// BenchmarkFreshHeads is what a fresh stream's connect spends learning its
// topic's head, on a topic the node already watches: before ADR 0029 one
// Info (a Lua call on loopback Redis), now hub.Heads (the hub's own
// positions, its Redis listener synced).
func BenchmarkFreshHeads(b *testing.B) {
	srv := redistest.StartServer(b)
	s := newStore(b, srv.Client(b), redisstore.Config{})
	h, err := hub.New(hub.Config{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Close() })
	ctx := context.Background()
	sub := hub.NewSubscriber([]string{"fresh"}, hub.Limits{})
	if err := h.Subscribe(ctx, sub); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Unsubscribe(sub) })
	if _, err := s.Append(ctx, "fresh", []push.Draft{{Type: "x", Data: []byte("1")}}); err != nil {
		b.Fatal(err)
	}
	topics, origins := []string{"fresh"}, []string{s.Origin()}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if in, ok := h.Heads(topics, origins); ok && in[0].Last == 1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("hub.Heads never answered offset 1")
		}
		time.Sleep(time.Millisecond)
	}
	b.Run("store.Info", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Info(ctx, topics); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hub.Heads", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := h.Heads(topics, origins); !ok {
				b.Fatal("hub.Heads declined")
			}
		}
	})
}
