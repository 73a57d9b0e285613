package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/internal/bench"
	"github.com/heraldpush/herald/push/redistest"
)

// TestBenchCountsEveryEvent runs a small `herald bench` against a node on
// the in-memory store: every published event reaches every subscriber of
// its topic once, and the report's figures are filled in.
func TestBenchCountsEveryEvent(t *testing.T) {
	m := MustRunMain(t, func(c *Config) {
		c.Protection.Ingress.PublishQPS = 0
		c.Protection.Ingress.TopicQPS = 0
	})
	heap := filepath.Join(t.TempDir(), "bench.heap")
	var progress lockedBuffer // proc_test.go
	const subs, topics, publishers = 40, 4, 2
	rep, err := bench.Run(context.Background(), bench.Config{
		URL: m.URL(), AdminURL: m.AdminURL(), Subscribers: subs, Topics: topics,
		Rate: 200, Duration: 1500 * time.Millisecond, Publishers: publishers, Batch: 1,
		Payload: 64, ConnectRate: 1000, Drain: 10 * time.Second, MemProfile: heap,
	}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Published < 100 || rep.PublishErrors != 0 {
		t.Fatalf("published %d with %d errors (%v); want ≥ 100 at 200/s for 1.5 s and none failed",
			rep.Published, rep.PublishErrors, rep.PublishErrorKinds)
	}
	if rep.Lost != 0 || rep.Duplicated != 0 || rep.Resets != 0 || rep.Reconnects != 0 {
		t.Fatalf("lost %d, duplicated %d, resets %d, reconnects %d; want all 0", rep.Lost, rep.Duplicated, rep.Resets, rep.Reconnects)
	}
	// Each topic has subs/topics subscribers. A publish cut off when the
	// run ended may still have been appended (and delivered) unacknowledged.
	per := int64(subs / topics)
	if rep.Deliveries < rep.Published*per || rep.Deliveries > (rep.Published+publishers)*per || rep.Deliveries%per != 0 {
		t.Fatalf("deliveries %d for %d published to %d subscribers each", rep.Deliveries, rep.Published, per)
	}
	if rep.PublishP50Ms <= 0 || rep.LatP50Ms <= 0 || rep.LatP99Ms < rep.LatP50Ms || rep.LatMaxMs < rep.LatP999Ms {
		t.Fatalf("latency figures: publish p50 %v, delivery p50 %v p99 %v p999 %v max %v",
			rep.PublishP50Ms, rep.LatP50Ms, rep.LatP99Ms, rep.LatP999Ms, rep.LatMaxMs)
	}
	if rep.ServerEventsPerWrite < 1 {
		t.Fatalf("events per write %v from the admin URL; want ≥ 1", rep.ServerEventsPerWrite)
	}
	if out := progress.String(); !strings.Contains(out, "s published") || !strings.Contains(out, "(last second: p50") {
		t.Fatalf("progress lacks the per-second line:\n%s", out)
	}
	if st, err := os.Stat(heap); err != nil || st.Size() == 0 {
		t.Fatalf("memprofile: %v", err)
	}
}

// TestBenchProbeTimesBareRoundTrips runs the floor probe beside a load on
// the Redis store: it reports both round trips, and its requests do not
// disturb the run's own counts.
func TestBenchProbeTimesBareRoundTrips(t *testing.T) {
	rd := redistest.StartServer(t)
	m := MustRunMain(t, func(c *Config) {
		c.Redis = rd.URL()
		c.Protection.Ingress.PublishQPS = 0
		c.Protection.Ingress.TopicQPS = 0
	})
	rep, err := bench.Run(context.Background(), bench.Config{
		URL: m.URL(), Subscribers: 10, Topics: 2, Rate: 100, Duration: 1500 * time.Millisecond,
		Publishers: 1, Batch: 1, Payload: 64, ConnectRate: 1000, Drain: 10 * time.Second,
		ProbeRate: 200, ProbeRedis: rd.URL(),
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lost != 0 || rep.Duplicated != 0 || rep.Published < 50 {
		t.Fatalf("published %d, lost %d, duplicated %d", rep.Published, rep.Lost, rep.Duplicated)
	}
	if rep.ProbeHTTPP50Ms <= 0 || rep.ProbeHTTPP99Ms < rep.ProbeHTTPP50Ms ||
		rep.ProbeRedisP50Ms <= 0 || rep.ProbeRedisP99Ms < rep.ProbeRedisP50Ms {
		t.Fatalf("probe: http p50 %v p99 %v, redis p50 %v p99 %v", rep.ProbeHTTPP50Ms, rep.ProbeHTTPP99Ms, rep.ProbeRedisP50Ms, rep.ProbeRedisP99Ms)
	}
}
