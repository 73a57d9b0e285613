package redisstore_test

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/store/redisstore"
	"github.com/redis/go-redis/v9"
)

// benchmarkAppend appends batches of batch drafts (100-byte payloads), from
// parallel goroutines when parallel is set, against a single redis-server
// on loopback.
func benchmarkAppend(b *testing.B, batch int, parallel, idem bool) {
	srv := redistest.StartServer(b)
	s := newStore(b, srv.Client(b), redisstore.Config{Retention: push.RetentionPolicy{Default: push.Retention{MaxLen: 10_000, MaxAge: time.Hour}}})
	payload := []byte(fmt.Sprintf("%100s", `{"sym":"ABC","px":123.45}`))
	ctx := context.Background()
	run := func(seed int, pb func() bool) {
		drafts := make([]push.Draft, batch)
		for n := 0; pb(); n++ {
			for i := range drafts {
				drafts[i] = push.Draft{Type: "tick", Data: payload}
				if idem {
					drafts[i].IdempotencyKey = fmt.Sprintf("k-%d-%d-%d", seed, n, i)
				}
			}
			if _, err := s.Append(ctx, "bench", drafts); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
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
}

func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 10} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchmarkAppend(b, batch, false, false) })
		b.Run(fmt.Sprintf("batch=%d/idem", batch), func(b *testing.B) { benchmarkAppend(b, batch, false, true) })
		b.Run(fmt.Sprintf("batch=%d/parallel", batch), func(b *testing.B) { benchmarkAppend(b, batch, true, false) })
	}
}

// TestAppendLatency measures append → return and append → announcement
// latency on loopback and logs the percentiles (run with -v).
func TestAppendLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("latency measurement")
	}
	t.Parallel()
	srv := redistest.StartServer(t)
	s := newStore(t, srv.Client(t), redisstore.Config{})
	sk := &chanSink{ch: make(chan *push.Event, 1)}
	l, err := s.Listen(sk)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Watch(testCtx(t), "lat"); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	appendLat := make([]time.Duration, 0, n)
	notifyLat := make([]time.Duration, 0, n)
	ctx := testCtx(t)
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := s.Append(ctx, "lat", []push.Draft{{Type: "x", Data: []byte("hello")}}); err != nil {
			t.Fatal(err)
		}
		appendLat = append(appendLat, time.Since(start))
		select {
		case <-sk.ch:
			notifyLat = append(notifyLat, time.Since(start))
		case <-time.After(5 * time.Second):
			t.Fatal("announcement missing")
		}
	}
	t.Logf("append (call → ack): %s", percentiles(appendLat))
	t.Logf("append → announcement delivered: %s", percentiles(notifyLat))
	_ = redis.Nil
}

type chanSink struct{ ch chan *push.Event }

func (c *chanSink) Deliver(ev *push.Event) {
	select {
	case c.ch <- ev:
	default:
	}
}
func (c *chanSink) Resync() {}

func percentiles(d []time.Duration) string {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	p := func(q float64) time.Duration { return d[int(q*float64(len(d)-1))].Round(time.Microsecond) }
	return fmt.Sprintf("n=%d p50=%v p90=%v p99=%v max=%v", len(d), p(0.5), p(0.9), p(0.99), d[len(d)-1].Round(time.Microsecond))
}
