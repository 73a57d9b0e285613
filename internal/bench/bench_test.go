package bench

import (
	"cmp"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// TestSinceSnapshotIsTheInterval checks the progress line's per-interval
// histogram: values recorded before the previous export are not in it.
func TestSinceSnapshotIsTheInterval(t *testing.T) {
	h := hdrhistogram.New(1, 1_000_000, 3)
	for range 1000 {
		_ = h.RecordValue(50_000) // a slow first interval
	}
	first := h.Export()
	if w := sinceSnapshot(first, nil); w.TotalCount() != 1000 || w.Max() < 49_000 {
		t.Fatalf("first interval: %d values, max %d; want 1000, ~50000", w.TotalCount(), w.Max())
	}
	for range 100 {
		_ = h.RecordValue(200)
	}
	w := sinceSnapshot(h.Export(), first)
	if w.TotalCount() != 100 {
		t.Fatalf("second interval: %d values, want 100", w.TotalCount())
	}
	if p99, mx := w.ValueAtQuantile(99), w.Max(); p99 > 201 || mx > 201 {
		t.Fatalf("second interval: p99 %d max %d, want ≈200 (the first interval leaked in)", p99, mx)
	}
}

func TestBenchProbeRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		redis string
	}{{0, "redis://127.0.0.1:1"}, {5000, ""}, {-1, ""}, {100, "http://not-redis"}} {
		if _, err := newBenchProbe("http://127.0.0.1:1", tc.redis, tc.rate); err == nil {
			t.Errorf("rate %v redis %q: accepted", tc.rate, tc.redis)
		}
	}
}

// TestBenchDrivesTheFloor runs the load against the floor server
// (../shared/floor, built here; FLOOR_SRC overrides where its source is),
// as bench.sh does for its ratios: every event reaches every subscriber of
// its topic once, counted from the floor's per-topic ids, and the server's
// CPU is read from its process.
func TestBenchDrivesTheFloor(t *testing.T) {
	src := cmp.Or(os.Getenv("FLOOR_SRC"), filepath.Join("..", "..", "..", "shared", "floor"))
	if _, err := os.Stat(filepath.Join(src, "main.go")); err != nil {
		t.Skipf("floor server source not found at %s (set FLOOR_SRC): %v", src, err)
	}
	bin := filepath.Join(t.TempDir(), "floor")
	if out, err := exec.Command("go", "build", "-C", src, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build floor: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "-addr", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for ; ; <-poll.C {
		resp, err := http.Get("http://" + addr + "/stats")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("floor not up: %v", err)
		}
	}

	const subs, topics, publishers = 40, 4, 2
	rep, err := Run(context.Background(), Config{
		URL: "http://" + addr, Server: ServerFloor, ServerPID: cmd.Process.Pid, Subscribers: subs, Topics: topics,
		Rate: 200, Duration: 1500 * time.Millisecond, Publishers: publishers, Batch: 1,
		Payload: 64, ConnectRate: 1000, Drain: 10 * time.Second,
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Server != ServerFloor || rep.Published < 100 || rep.PublishErrors != 0 {
		t.Fatalf("server %q published %d with %d errors (%v)", rep.Server, rep.Published, rep.PublishErrors, rep.PublishErrorKinds)
	}
	if rep.Lost != 0 || rep.Duplicated != 0 || rep.Reconnects != 0 {
		t.Fatalf("lost %d, duplicated %d, reconnects %d; want 0", rep.Lost, rep.Duplicated, rep.Reconnects)
	}
	// A publish cut off when the run ended may still have been delivered
	// unacknowledged (one per publisher at most), to all or only some of
	// its topic's subscribers by the time the drain, which waits for the
	// acknowledged ones, ends: so the count need not be a multiple of per.
	if per := int64(subs / topics); rep.Deliveries < rep.Published*per || rep.Deliveries > (rep.Published+publishers)*per {
		t.Fatalf("deliveries %d for %d published to %d subscribers each", rep.Deliveries, rep.Published, per)
	}
	if rep.LatP50Ms <= 0 || rep.ServerRSSEndMB <= 0 || rep.ServerCPUSec <= 0 {
		t.Fatalf("latency p50 %v, rss %v MiB, cpu %v s: want all measured", rep.LatP50Ms, rep.ServerRSSEndMB, rep.ServerCPUSec)
	}
	if _, err := Run(context.Background(), Config{URL: "http://" + addr, Server: ServerFloor, Subscribers: 1, Topics: 1,
		Rate: 10, Duration: time.Second, Publishers: 1, Batch: 10, Payload: 64}, io.Discard); err == nil {
		t.Fatal("a batched load against the floor: accepted")
	}
}
