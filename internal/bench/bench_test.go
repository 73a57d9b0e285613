package bench

import (
	"testing"

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
