package resilience

import (
	"context"
	"errors"
	"testing"
	"time"
)

type replayResult struct {
	release func()
	err     error
}

func replayAsync(g *Guards, ctx context.Context) <-chan replayResult {
	ch := make(chan replayResult, 1)
	go func() {
		r, err := g.Replay(ctx)
		ch <- replayResult{r, err}
	}()
	return ch
}

func mustReplay(t *testing.T, g *Guards) func() {
	t.Helper()
	r, err := g.Replay(t.Context())
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return r
}

// With a cap of 2 the third replay waits and gets the slot a finished
// replay releases.
func TestReplayWaitsForSlot(t *testing.T) {
	g := mustNew(t, Config{Replay: ReplayConfig{MaxConcurrent: 2, MaxWait: 10 * time.Second}}, Options{})
	r1, r2 := mustReplay(t, g), mustReplay(t, g)
	third := replayAsync(g, t.Context())
	select {
	case res := <-third:
		t.Fatalf("third replay did not wait: %+v", res)
	case <-time.After(50 * time.Millisecond):
	}
	r1()
	r1() // idempotent: must not free a second slot
	var r3 func()
	select {
	case res := <-third:
		if res.err != nil {
			t.Fatal(res.err)
		}
		r3 = res.release
	case <-time.After(5 * time.Second):
		t.Fatal("third replay still waiting after a release")
	}
	if n := g.replay.inUse(); n != 2 {
		t.Fatalf("slots in use = %d, want 2", n)
	}
	r2()
	r3()
	if n := g.replay.inUse(); n != 0 {
		t.Fatalf("slots in use = %d after all releases", n)
	}
}

// With a short MaxWait the waiting replay is refused with replay_wait; with
// MaxWait 0 it is refused at once.
func TestReplayMaxWait(t *testing.T) {
	var ev events
	g := mustNew(t, Config{Replay: ReplayConfig{MaxConcurrent: 1, MaxWait: 50 * time.Millisecond}}, Options{OnEvent: ev.record})
	r1 := mustReplay(t, g)
	start := time.Now()
	_, err := g.Replay(t.Context())
	waited := time.Since(start)
	var blk *Blocked
	if !errors.As(err, &blk) || blk.Layer != LayerReplay || blk.Reason != ReasonReplayWait || blk.RetryAfter < time.Second {
		t.Fatalf("Replay when full: %v, want Blocked replay_wait with RetryAfter ≥ 1s", err)
	}
	if waited < 45*time.Millisecond {
		t.Errorf("refused after %s, want after MaxWait", waited)
	}

	if err := g.Reload(Config{Replay: ReplayConfig{MaxConcurrent: 1}}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := g.Replay(t.Context()); !errors.Is(err, ErrBlocked) || time.Since(start) > 20*time.Millisecond {
		t.Fatalf("MaxWait 0: %v after %s, want immediate Blocked", err, time.Since(start))
	}
	r1()
	r2 := mustReplay(t, g) // recovered
	r2()
	if got := g.Counters()["replay/replay/replay_wait/block"]; got != 2 {
		t.Errorf("replay_wait blocks = %d, want 2", got)
	}
	if got := ev.count(LayerReplay, ReasonReplayWait, KindBlock); got != 2 {
		t.Errorf("replay_wait events = %d, want 2", got)
	}
}

// A waiting replay returns its context's error when the context ends, and
// leaves no phantom waiter behind.
func TestReplayContextCancel(t *testing.T) {
	g := mustNew(t, Config{Replay: ReplayConfig{MaxConcurrent: 1, MaxWait: time.Minute}}, Options{})
	r1 := mustReplay(t, g)
	ctx, cancel := context.WithCancel(t.Context())
	waiting := replayAsync(g, ctx)
	// Cancel only once the replay is queued, so the cancelled wait (not
	// the fast path) is what is tested.
	for deadline := time.Now().Add(10 * time.Second); g.replay.waiting() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second replay never queued for the slot")
		}
	}
	cancel()
	select {
	case res := <-waiting:
		if !errors.Is(res.err, context.Canceled) || res.release != nil {
			t.Fatalf("cancelled wait: %+v, want context.Canceled", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled replay still waiting")
	}
	if _, err := g.Replay(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Replay with a done context: %v", err)
	}
	r1()
	r2 := mustReplay(t, g) // the slot is free: the cancelled waiter did not take it
	r2()
	if n := g.replay.inUse(); n != 0 {
		t.Fatalf("slots in use = %d", n)
	}
	if got := g.Counters()["replay/replay/replay_wait/block"]; got != 0 {
		t.Errorf("a cancelled wait counted as a block: %d", got)
	}
}

// Reload raising the cap lets waiters in, in arrival order.
func TestReplayReloadGrantsWaiters(t *testing.T) {
	g := mustNew(t, Config{Replay: ReplayConfig{MaxConcurrent: 1, MaxWait: time.Minute}}, Options{})
	r1 := mustReplay(t, g)
	w1 := replayAsync(g, t.Context())
	checkFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		g.replay.mu.Lock()
		defer g.replay.mu.Unlock()
		if g.replay.waiters.Len() != 1 {
			return errors.New("first waiter not queued yet")
		}
		return nil
	})
	w2 := replayAsync(g, t.Context())
	checkFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		g.replay.mu.Lock()
		defer g.replay.mu.Unlock()
		if g.replay.waiters.Len() != 2 {
			return errors.New("second waiter not queued yet")
		}
		return nil
	})
	if err := g.Reload(Config{Replay: ReplayConfig{MaxConcurrent: 2, MaxWait: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	res := <-w1 // first in, first served
	if res.err != nil {
		t.Fatal(res.err)
	}
	select {
	case r := <-w2:
		t.Fatalf("second waiter served beyond the cap: %+v", r)
	case <-time.After(30 * time.Millisecond):
	}
	res.release()
	if r := <-w2; r.err != nil {
		t.Fatal(r.err)
	} else {
		r.release()
	}
	r1()
}
