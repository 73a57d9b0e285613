package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/resilience"
)

// The Redis breaker tells a slow Redis from a starved caller (issue 25):
// the same slow-call rule, against a real redis-server, (1) stays closed
// when the calls are slow because this process cannot get a CPU
// (GOMAXPROCS=1 and busy goroutines, bounded to the test), while admission
// sheds new streams as "starved"; (2) opens when Redis itself is slow (a
// Lua script that spins inside Redis), with nothing excused.
func TestBreakerTellsSlowRedisFromStarvedCaller(t *testing.T) {
	rd := redistest.StartServer(t)
	rc := rd.Client(t)
	ctx := context.Background()

	newGuards := func(t *testing.T) *resilience.Guards {
		cfg := resilience.DefaultConfig()
		cfg.Breaker.SlowThreshold = 40 * time.Millisecond
		cfg.Breaker.SlowRatio = 0.2
		cfg.Breaker.ErrorRatio = 0
		cfg.Breaker.MinRequests = 10
		cfg.Breaker.Window = 5 * time.Second
		cfg.Admission.MaxSchedDelay = 10 * time.Millisecond
		cfg.Admission.ConnectRate = 0
		g, err := resilience.New(cfg, resilience.Options{Name: "starve-" + t.Name()[len(t.Name())-4:]})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Close() })
		return g
	}
	// calls makes n guarded calls of fn, returning their durations.
	calls := func(b *resilience.Breaker, n int, fn func(context.Context) error) ([]time.Duration, error) {
		var ds []time.Duration
		for range n {
			start := time.Now()
			if err := b.Do(ctx, "CALL", fn); err != nil {
				return ds, err
			}
			ds = append(ds, time.Since(start))
		}
		return ds, nil
	}
	median := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	// spin makes Redis busy for us inside one call: a script that spins
	// on TIME (a slow Redis, when long; a call the caller must wait for
	// on the network poller, when short).
	spin := func(us int) func(context.Context) error {
		return func(ctx context.Context) error {
			return rc.Eval(ctx, `local s = redis.call('TIME')
local t0 = s[1]*1000000 + s[2]
repeat local n = redis.call('TIME') until n[1]*1000000 + n[2] - t0 > tonumber(ARGV[1])
return 1`, nil, us).Err()
		}
	}

	t.Run("starved", func(t *testing.T) {
		g := newGuards(t)
		b := g.Breaker("redis:starved")
		// Warm the connection pool before starving.
		if _, err := calls(b, 3, spin(1000)); err != nil {
			t.Fatal(err)
		}
		prev := runtime.GOMAXPROCS(1)
		defer runtime.GOMAXPROCS(prev)
		var stop atomic.Bool
		var wg sync.WaitGroup
		// The busy goroutines work in 5 ms slices and yield between them,
		// as a node's request goroutines do: every runnable goroutine,
		// the call's own included, then waits its turn in the same queue.
		// Goroutines that never yield would be preempted only every 10 ms
		// into the global run queue, which a P with a full local queue
		// reads one schedule in 61: a goroutine woken by the network
		// poller then waits there ~0.6 s, a wait the runtime's sampled
		// histogram (one transition in eight) and the timer probe can both
		// miss, so the excuse came out short in some runs.
		for range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				x := 0
				for !stop.Load() {
					for end := time.Now().Add(5 * time.Millisecond); time.Now().Before(end); {
						x++
					}
					runtime.Gosched()
				}
				_ = x
			}()
		}
		ds, err := calls(b, 30, spin(1000)) // 1ms in Redis: far below the 40ms threshold
		st, admitErr := g.Admit("10.0.0.1")
		stop.Store(true)
		wg.Wait()
		if err != nil {
			t.Fatalf("a call failed while only the caller was starved (median %v): %v; %v %v", median(ds), err, g.Counters(), ds)
		}
		if st.Done(); admitErr == nil || admitErr.Reason != resilience.ReasonStarved {
			t.Fatalf("Admit on a starved node = %v, want reason %q", admitErr, resilience.ReasonStarved)
		}
		slow := 0
		for _, d := range ds {
			if d > 40*time.Millisecond {
				slow++
			}
		}
		t.Logf("starved: %d of %d calls over 40ms, median %v; breaker %s; counters %v; %v", slow, len(ds), median(ds), b.State(), g.Counters(), ds)
		if slow*5 <= len(ds) { // the rule would not have tripped anyway
			t.Fatalf("the test did not starve the caller enough: only %d of %d calls over the threshold", slow, len(ds))
		}
		if b.State() != resilience.StateClosed {
			t.Fatalf("breaker %s: a starved caller declared Redis slow", b.State())
		}
		if n := g.Counters()[fmt.Sprintf("dependency/redis:starved/%s/%s", resilience.ReasonStarvedCaller, resilience.KindExcused)]; n < uint64(slow)*3/4 {
			t.Fatalf("%d slow calls excused, want most of %d", n, slow)
		}
	})

	t.Run("slowredis", func(t *testing.T) {
		g := newGuards(t)
		b := g.Breaker("redis:slow")
		ds, err := calls(b, 30, spin(60000)) // 60ms inside Redis
		var blk *resilience.Blocked
		if err != nil && !errors.As(err, &blk) {
			t.Fatalf("call failed: %v", err)
		}
		t.Logf("slow Redis: %d calls before the breaker opened, median %v; counters %v", len(ds), median(ds), g.Counters())
		if blk == nil || b.State() != resilience.StateOpen {
			t.Fatalf("breaker %s after %d calls of a slow Redis, want open", b.State(), len(ds))
		}
		// This machine's other processes can starve the test too; most
		// calls must still count as slow.
		if n := g.Counters()[fmt.Sprintf("dependency/redis:slow/%s/%s", resilience.ReasonStarvedCaller, resilience.KindExcused)]; n*2 >= uint64(len(ds)) {
			t.Fatalf("%d of %d calls to a slow Redis excused as starvation", n, len(ds))
		}
	})
}
