package server

import (
	"testing"
	"time"
)

// feed folds events published at the given offsets (from 0, each write
// carrying one event) into an average seeded at the window, as live does,
// and returns the average after each event.
func feed(window time.Duration, at []time.Duration) []time.Duration {
	avg, out := window, make([]time.Duration, 0, len(at))
	for i := 1; i < len(at); i++ {
		avg = averageGap(avg, at[i]-at[i-1], 1)
		out = append(out, avg)
	}
	return out
}

// The coalescing rule holds a stream only while its average gap is under
// half the window. A slow stream whose events come in pairs (two publishers
// in step, 5 events/s in all: fanout10k) must never qualify, however often
// the pairs come; a 20 events/s stream sent in bursts of 8 (overload's 8
// publishers in step) must qualify within two bursts and stay qualified.
func TestAverageGapTellsRateFromBursts(t *testing.T) {
	const window = 250 * time.Millisecond
	var pairs, bursts []time.Duration
	for i := range 100 {
		pairs = append(pairs, time.Duration(i/2)*400*time.Millisecond)
		bursts = append(bursts, time.Duration(i/8)*400*time.Millisecond+time.Duration(i%8)*time.Millisecond)
	}
	for i, g := range feed(window, pairs) {
		if g < window/2 {
			t.Fatalf("pairs 400ms apart: average gap %s after event %d, under half the window", g, i+1)
		}
	}
	for i, g := range feed(window, bursts) {
		if i >= 16 && g >= window/2 {
			t.Fatalf("bursts of 8 every 400ms: average gap %s after event %d, want under %s", g, i+1, window/2)
		}
	}
	// A batch spreads its span over its events, and a negative span
	// (events of several topics) counts as no gap.
	if g := averageGap(window, 400*time.Millisecond, 8); g >= window/2 {
		t.Fatalf("8 events in 400ms: average %s, want under %s", g, window/2)
	}
	if g := averageGap(100*time.Millisecond, -time.Second, 1); g != 100*time.Millisecond*7/8 {
		t.Fatalf("negative span: average %s, want %s", g, 100*time.Millisecond*7/8)
	}
}

// A hold lasts until the window after the last write ends, shortened for a
// stream fast enough to gather coalesceGather events sooner: max1k's
// self-batching stream (events microseconds apart) waits a few
// milliseconds, overload's 20 events/s stream the rest of the window.
func TestHoldWaitFollowsTheStreamsRate(t *testing.T) {
	const window = 250 * time.Millisecond
	for _, tc := range []struct {
		since, gap, want time.Duration
	}{
		{10 * time.Millisecond, 50 * time.Millisecond, 240 * time.Millisecond}, // overload: the window
		{10 * time.Millisecond, 100 * time.Microsecond, 1600 * time.Microsecond},
		{10 * time.Millisecond, 0, 0},                                      // batches by itself: no hold
		{300 * time.Millisecond, time.Millisecond, -50 * time.Millisecond}, // window over: none
	} {
		if got := holdWait(window, tc.since, tc.gap); got != tc.want {
			t.Errorf("holdWait(%s, since %s, gap %s) = %s, want %s", window, tc.since, tc.gap, got, tc.want)
		}
	}
}
