package stream

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

// The overload verdict comes from whether streams' queues grow across
// writes, not from how late a write is. A fan-out wave on a node with CPU
// to spare makes writes late (up to 40ms here, twice CoalesceLate) but
// each stream's write still goes out before its next event is due (50ms
// apart): not overloaded. Waits beyond the gap in a third of the writes
// are; and a node whose held writes still wait past CoalesceLate after the
// hold stays overloaded.
func TestOverloadDetectorTellsSpreadFromBacklog(t *testing.T) {
	const (
		late = 20 * time.Millisecond
		gap  = 50 * time.Millisecond
	)
	t0 := time.Unix(1000, 0)
	// window runs 2,000 writes over one window and closes it; wait(i) is
	// the i-th write's wait, held whether it ended a hold.
	window := func(d *Overload, start time.Time, wait func(i int) time.Duration, held bool) {
		for i := range 2000 {
			heldFor := time.Duration(0)
			if held {
				heldFor = 200 * time.Millisecond
			}
			d.note(start.Add(time.Duration(i)*overloadWindow/2000), behindBy(wait(i), heldFor, gap, late))
		}
		d.note(start.Add(overloadWindow), false) // closes the window
	}
	var d Overload
	spread := func(i int) time.Duration { return time.Duration(i%100) * 400 * time.Microsecond } // 0..40ms
	window(&d, t0, spread, false)
	if d.overloaded() {
		t.Fatal("writes 0..40ms late, 50ms apart: overloaded")
	}
	// A third of the writes wait past the next event: overloaded.
	backlog := func(i int) time.Duration {
		if i%3 == 0 {
			return 60 * time.Millisecond
		}
		return spread(i)
	}
	window(&d, t0.Add(time.Second), backlog, false)
	if !d.overloaded() {
		t.Fatal("a third of the writes behind: not overloaded")
	}
	// Held writes that still wait past CoalesceLate keep it overloaded;
	// once they go out at once, it is not.
	window(&d, t0.Add(2*time.Second), func(int) time.Duration { return 30 * time.Millisecond }, true)
	if !d.overloaded() {
		t.Fatal("held writes 30ms late after the hold: not overloaded")
	}
	window(&d, t0.Add(3*time.Second), func(int) time.Duration { return time.Millisecond }, true)
	if d.overloaded() {
		t.Fatal("held writes out at once: still overloaded")
	}
	// A window with a handful of writes says nothing.
	var few Overload
	window2 := func(n int) {
		for i := range n {
			few.note(t0.Add(time.Duration(i)), true)
		}
		few.note(t0.Add(overloadWindow+time.Second), true)
	}
	window2(overloadMinWrites - 2)
	if few.overloaded() {
		t.Fatalf("%d writes in a window: overloaded", overloadMinWrites-2)
	}
}
