package resilience

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func errorBreakerConfig() Config {
	return Config{Breaker: BreakerConfig{
		ErrorRatio:   0.5,
		MinRequests:  5,
		Window:       2 * time.Second,
		RetryTimeout: 300 * time.Millisecond,
	}}
}

// tripErrors fails calls until the breaker opens.
func tripErrors(t *testing.T, b *Breaker) {
	t.Helper()
	for i := 0; b.State() != StateOpen; i++ {
		if i == 50 {
			t.Fatalf("breaker still %s after 50 failures", b.State())
		}
		if err := b.Do(t.Context(), "XADD", failing); !errors.Is(err, errBackend) {
			t.Fatalf("call %d: %v, want the backend error", i, err)
		}
	}
}

// The error rule trips within its window, fails fast without calling fn,
// probes after RetryTimeout and closes on a successful probe; every
// transition is counted, reported and logged once.
func TestBreakerErrorRatioTripsAndRecovers(t *testing.T) {
	var ev events
	var logs logBuffer
	cfg := errorBreakerConfig()
	cfg.Breaker.RetryTimeout = time.Second // the 20 blocked calls below must all fall within it
	g := mustNew(t, cfg, Options{OnEvent: ev.record, Logger: logs.logger()})
	b := g.Breaker("primary")
	if g.Breaker("primary") != b {
		t.Fatal("Breaker returned a second breaker for the same target")
	}
	if b.State() != StateClosed {
		t.Fatalf("new breaker %s", b.State())
	}
	for range 4 { // below MinRequests: never trips
		_ = b.Do(t.Context(), "XADD", failing)
	}
	if b.State() != StateClosed {
		t.Fatalf("tripped below MinRequests")
	}
	_ = b.Do(t.Context(), "XADD", failing)
	if b.State() != StateOpen {
		t.Fatalf("5 failures of 5: state %s, want open", b.State())
	}

	var called atomic.Int32
	for range 20 {
		start := time.Now()
		err := b.Do(t.Context(), "XRANGE", func(context.Context) error { called.Add(1); return nil })
		var blk *Blocked
		if !errors.As(err, &blk) {
			t.Fatalf("open breaker: %v, want *Blocked", err)
		}
		if blk.Layer != LayerDependency || blk.Resource != "primary" || blk.Reason != ReasonBreakerOpen || blk.Op != "XRANGE" {
			t.Fatalf("blocked: %+v", *blk)
		}
		if blk.RetryAfter < minRetryAfter || blk.RetryAfter > time.Second {
			t.Fatalf("RetryAfter %s, want the remaining retry timeout (≤ 1s)", blk.RetryAfter)
		}
		if d := time.Since(start); d > 250*time.Millisecond {
			t.Fatalf("blocked call took %s", d)
		}
	}
	if called.Load() != 0 {
		t.Fatalf("fn called %d times while open", called.Load())
	}

	// After the retry timeout a probe passes and closes the breaker.
	checkFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		return b.Do(t.Context(), "PING", succeeding)
	})
	if b.State() != StateClosed {
		t.Fatalf("after a successful probe: %s", b.State())
	}
	if err := b.Do(t.Context(), "XADD", succeeding); err != nil {
		t.Fatalf("closed again: %v", err)
	}

	want := []string{"error_ratio/trip", "error_ratio/half_open", "error_ratio/recover"}
	if got := ev.kinds(LayerDependency); !slices.Equal(got, want) {
		t.Errorf("transitions %v, want %v", got, want)
	}
	c := g.Counters()
	for _, k := range []string{"dependency/primary/error_ratio/trip", "dependency/primary/error_ratio/half_open", "dependency/primary/error_ratio/recover"} {
		if c[k] != 1 {
			t.Errorf("counter %s = %d, want 1", k, c[k])
		}
	}
	if c["dependency/primary/breaker_open/block"] < 20 {
		t.Errorf("breaker_open blocks = %d, want ≥ 20", c["dependency/primary/breaker_open/block"])
	}
	// One log line per state change, none per blocked call.
	if n := strings.Count(logs.String(), "circuit breaker state changed"); n != 3 {
		t.Errorf("%d state-change log lines, want 3:\n%s", n, logs.String())
	}
}

// The slow-call rule trips on calls slower than SlowThreshold even when
// they succeed.
func TestBreakerSlowRatio(t *testing.T) {
	var ev events
	g := mustNew(t, Config{Breaker: BreakerConfig{
		SlowRatio:     0.5,
		SlowThreshold: 20 * time.Millisecond,
		MinRequests:   3,
		Window:        5 * time.Second,
		RetryTimeout:  200 * time.Millisecond,
	}}, Options{OnEvent: ev.record})
	b := g.Breaker("replica:eu-west")
	// 20× the threshold: the breaker excuses twice the longest scheduling
	// delay of the process over a call (ADR 0027), which on a loaded test
	// machine reached 10 ms and excused a 40 ms call.
	slow := func(context.Context) error { time.Sleep(400 * time.Millisecond); return nil }
	for range 3 {
		if err := b.Do(t.Context(), "XRANGE", slow); err != nil {
			t.Fatal(err)
		}
	}
	if b.State() != StateOpen {
		t.Fatalf("3 slow calls of 3: %s, want open", b.State())
	}
	if err := b.Do(t.Context(), "XRANGE", succeeding); !errors.Is(err, ErrBlocked) {
		t.Fatalf("open: %v", err)
	}
	checkFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		return b.Do(t.Context(), "XRANGE", succeeding)
	})
	if b.State() != StateClosed {
		t.Fatalf("after a fast probe: %s", b.State())
	}
	want := []string{"slow_ratio/trip", "slow_ratio/half_open", "slow_ratio/recover"}
	if got := ev.kinds(LayerDependency); !slices.Equal(got, want) {
		t.Errorf("transitions %v, want %v", got, want)
	}
	if c := g.Counters()["dependency/replica:eu-west/slow_ratio/trip"]; c != 1 {
		t.Errorf("slow_ratio trips = %d", c)
	}
}

var errNotFound = errors.New("not found")

// Calls cancelled by their caller and errors the classifier exempts do not
// count; deadline overruns and real errors do.
func TestBreakerFailureClassification(t *testing.T) {
	cfg := errorBreakerConfig()
	cfg.Breaker.ErrorRatio = 0.1
	cfg.Breaker.MinRequests = 3
	g := mustNew(t, cfg, Options{IsFailure: func(err error) bool { return !errors.Is(err, errNotFound) }})
	b := g.Breaker("primary")

	for range 10 {
		ctx, cancel := context.WithCancel(t.Context())
		err := b.Do(ctx, "XREAD", func(ctx context.Context) error {
			cancel() // the client went away mid-call
			<-ctx.Done()
			return fmt.Errorf("read: %w", ctx.Err())
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call: %v", err)
		}
	}
	for range 10 {
		if err := b.Do(t.Context(), "GET", func(context.Context) error { return errNotFound }); !errors.Is(err, errNotFound) {
			t.Fatal(err)
		}
	}
	var called bool
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Do(done, "GET", func(context.Context) error { called = true; return nil }); !errors.Is(err, context.Canceled) || called {
		t.Fatalf("already-cancelled context: err %v, called %v", err, called)
	}
	if b.State() != StateClosed {
		t.Fatalf("cancellations and not-found tripped the breaker: %s", b.State())
	}

	for i := 0; b.State() == StateClosed; i++ {
		if i == 50 {
			t.Fatal("deadline overruns never tripped the breaker")
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
		_ = b.Do(ctx, "XADD", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
		cancel()
	}
	if got := g.Counters()["dependency/primary/error_ratio/trip"]; got != 1 {
		t.Errorf("deadline overruns: trips = %d, want 1", got)
	}
}

// A probe whose caller gives up is inconclusive: the breaker reopens
// instead of closing. With ProbeNum 0 only one probe is in flight; other
// calls fail fast meanwhile.
func TestBreakerProbe(t *testing.T) {
	g := mustNew(t, errorBreakerConfig(), Options{})
	b := g.Breaker("primary")
	tripErrors(t, b)

	waitHalfOpenProbe := func(fn func(context.Context) error, ctx context.Context) <-chan error {
		t.Helper()
		res := make(chan error, 1)
		checkFor(t, 3*time.Second, 10*time.Millisecond, func() error {
			started := make(chan struct{})
			go func() {
				res <- b.Do(ctx, "PING", func(ctx context.Context) error { close(started); return fn(ctx) })
			}()
			select {
			case <-started:
				return nil
			case err := <-res: // still open: refused
				return err
			}
		})
		return res
	}

	// 1. the probe's caller cancels: back to open.
	ctx, cancel := context.WithCancel(t.Context())
	res := waitHalfOpenProbe(func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, ctx)
	if b.State() != StateHalfOpen {
		t.Fatalf("probe in flight: %s, want half_open", b.State())
	}
	if err := b.Do(t.Context(), "XADD", succeeding); !errors.Is(err, ErrBlocked) {
		t.Fatalf("second call during the probe: %v, want Blocked", err)
	}
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("probe: %v", err)
	}
	if b.State() != StateOpen {
		t.Fatalf("after a cancelled probe: %s, want open", b.State())
	}

	// 2. a probe that completes closes it.
	release := make(chan struct{})
	res = waitHalfOpenProbe(func(context.Context) error { <-release; return nil }, t.Context())
	close(release)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if b.State() != StateClosed {
		t.Fatalf("after a good probe: %s", b.State())
	}
}

// A panicking fn is recorded as a failure and releases its entry.
func TestBreakerPanic(t *testing.T) {
	g := mustNew(t, errorBreakerConfig(), Options{})
	b := g.Breaker("primary")
	for range 5 {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("panic swallowed")
				}
			}()
			_ = b.Do(t.Context(), "XADD", func(context.Context) error { panic("boom") })
		}()
	}
	if b.State() != StateOpen {
		t.Fatalf("5 panics: %s, want open", b.State())
	}
	// The starvation probe runs only while calls are in flight: a call that
	// panicked is no longer one.
	if n := g.sched.inflight.Load(); n != 0 {
		t.Fatalf("after 5 panicking calls, %d in flight, want 0", n)
	}
}

// Every call, whatever its outcome, is in flight for the starvation probe
// exactly while fn runs (starvation.go).
func TestBreakerMarksCallsInFlight(t *testing.T) {
	g := mustNew(t, errorBreakerConfig(), Options{})
	b := g.Breaker("primary")
	var during int64
	for _, res := range []error{nil, errors.New("down"), context.DeadlineExceeded} {
		_ = b.Do(t.Context(), "XADD", func(context.Context) error {
			during = g.sched.inflight.Load()
			return res
		})
		if during != 1 {
			t.Fatalf("in flight during the call (%v): %d, want 1", res, during)
		}
		if n := g.sched.inflight.Load(); n != 0 {
			t.Fatalf("in flight after the call (%v): %d, want 0", res, n)
		}
	}
}

// A breaker with both rules off never blocks.
func TestBreakerDisabled(t *testing.T) {
	g := mustNew(t, Config{}, Options{})
	b := g.Breaker("primary")
	for range 100 {
		_ = b.Do(t.Context(), "XADD", failing)
	}
	if b.State() != StateClosed || b.Do(t.Context(), "XADD", succeeding) != nil {
		t.Fatalf("disabled breaker: %s", b.State())
	}
}
