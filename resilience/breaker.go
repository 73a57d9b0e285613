package resilience

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alibaba/sentinel-golang/api"
	"github.com/alibaba/sentinel-golang/core/base"
	"github.com/alibaba/sentinel-golang/core/circuitbreaker"
)

// Layer 4 — dependencies. Each target (a Redis primary, a replica in
// another region) has its own sentinel resource carrying up to two
// circuit-breaker rules, ErrorRatio and SlowRequestRatio, each with its own
// state machine in sentinel. The Breaker's state is the worst of the two.
// State changes reach the Breaker through the process-wide listener in
// sentinel.go; sentinel offers no getter for a breaker's state, so the
// Breaker mirrors it from those notifications.

// Breaker states returned by Breaker.State.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half_open"
)

// errProbeCanceled is what sentinel records for a probe whose caller gave up.
var errProbeCanceled = errors.New("resilience: probe canceled by its caller")

// Breaker guards one dependency target. Get it with Guards.Breaker; it is
// safe for concurrent use.
type Breaker struct {
	g      *Guards
	target string
	res    string // sentinel resource

	state atomic.Int32 // aggregate circuitbreaker.State, for the fast path

	mu    sync.Mutex                             // guards rules, rst
	rules []*circuitbreaker.Rule                 // currently loaded (nil when disabled or cleared)
	rst   map[circuitbreaker.Strategy]*ruleState // mirrored state per rule
}

type ruleState struct {
	state     circuitbreaker.State
	openUntil time.Time // when the rule may probe (meaningful while open)
}

// Breaker returns the breaker of target, creating it with the current
// BreakerConfig on first use. Target names are free-form ("primary",
// "replica:eu-west") but appear in counter keys, so avoid "/"; keep their
// number bounded (one per configured dependency), because sentinel never
// frees a resource's statistics.
func (g *Guards) Breaker(target string) *Breaker {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b := g.breakers[target]; b != nil {
		return b
	}
	b := &Breaker{
		g:      g,
		target: target,
		res:    g.ns + "/" + LayerDependency + "/" + target,
		rst:    make(map[circuitbreaker.Strategy]*ruleState),
	}
	if g.closed {
		return b // unguarded, as every call after Close
	}
	g.breakers[target] = b
	reg.addBreaker(b)
	if err := b.load(&g.cfg.Load().Breaker); err != nil {
		// Validate guarantees rules sentinel accepts; should it not, the
		// target runs unguarded rather than failing every call.
		g.log.Error("breaker rules refused; target unguarded", "target", target, "err", err)
	}
	return b
}

// Do runs fn unless the breaker is open. Open (or half-open with its probe
// in flight) returns a *Blocked with Layer "dependency", Reason
// "breaker_open" and RetryAfter = the remaining retry timeout, without
// calling fn. Otherwise fn's error is returned as is, after being recorded:
//   - nil counts as a success; fn's duration counts as slow above
//     SlowThreshold whatever its outcome;
//   - if ctx was cancelled by the caller (ctx.Err() is context.Canceled),
//     the call is not a failure — except for a probe (the call that found
//     the breaker open or half-open), which is recorded as failed so that
//     an inconclusive probe reopens the breaker instead of closing it;
//   - context.DeadlineExceeded counts as a failure: the dependency did not
//     answer within the caller's budget;
//   - any other error counts as a failure if Options.IsFailure says so.
//
// op names the operation (e.g. "XADD") for the Blocked value. Do not route
// calls that block by design (XREAD BLOCK, SUBSCRIBE) through Do: they are
// always slow.
func (b *Breaker) Do(ctx context.Context, op string, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err // the caller is gone: do not touch the statistics
	}
	pre := circuitbreaker.State(b.state.Load())
	e, blk := api.Entry(b.res, api.WithSlotChain(b.g.breakerChain))
	if blk != nil {
		bl := b.g.block(LayerDependency, b.target, ReasonBreakerOpen, b.retryAfter())
		bl.Op = op
		return bl
	}
	completed := false
	b.g.sched.begin() // the starvation probe runs while a call is in flight
	defer func() {
		if !completed { // fn panicked: record a failure, release the entry, let the panic go on
			b.g.sched.end()
			api.TraceError(e, errors.New("resilience: dependency call panicked"))
			e.Exit()
		}
	}()
	start := time.Now()
	err := fn(ctx)
	end := time.Now()
	b.g.sched.end()
	completed = true
	b.recordRT(e, start, end)
	switch {
	case err == nil:
	case errors.Is(ctx.Err(), context.Canceled):
		if pre != circuitbreaker.Closed {
			api.TraceError(e, errProbeCanceled)
		}
	case errors.Is(err, context.DeadlineExceeded):
		api.TraceError(e, err)
	case b.g.isFailure(err):
		api.TraceError(e, err)
	}
	e.Exit()
	return err
}

// recordRT sets the call's response time as the slow-call rule sees it: its
// duration less what this process's scheduling delay over the call can
// account for (starvation.go). A call slow by its duration but not once
// excused is counted as "starved_caller" (kind "excused").
func (b *Breaker) recordRT(e *base.SentinelEntry, start, end time.Time) {
	dur := end.Sub(start)
	rt := dur
	if slow := b.g.cfg.Load().Breaker.SlowThreshold; dur > slow/2 {
		ex := b.g.sched.excuse(start, end)
		rt = max(dur-ex, 0)
		if dur > slow && rt <= slow {
			b.g.emit(LayerDependency, b.target, ReasonStarvedCaller, KindExcused)
		}
	}
	if ctx := e.Context(); ctx != nil {
		// Read by the circuit-breaker statistic slot on Exit; the breaker
		// chain holds no slot that writes the wall time over it. At least
		// 1: sentinel takes 0 for "not measured". Set on the context
		// itself, not through its Data map: a map entry was an allocation
		// per call, and the map another on the context's reuse.
		ctx.PutRt(max(uint64(rt.Milliseconds()), 1))
	}
}

// State returns "closed", "open" or "half_open": the worst state among the
// target's rules, as last reported by sentinel.
func (b *Breaker) State() string {
	return stateName(circuitbreaker.State(b.state.Load()))
}

// Target returns the breaker's target name.
func (b *Breaker) Target() string { return b.target }

func stateName(s circuitbreaker.State) string {
	switch s {
	case circuitbreaker.Open:
		return StateOpen
	case circuitbreaker.HalfOpen:
		return StateHalfOpen
	default:
		return StateClosed
	}
}

// retryAfter is the longest remaining retry timeout among open rules.
func (b *Breaker) retryAfter() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	var d time.Duration
	for _, rs := range b.rst {
		if rs.state == circuitbreaker.Open {
			d = max(d, rs.openUntil.Sub(now))
		}
	}
	return max(d, minRetryAfter)
}

// transition applies a state change reported by sentinel for one rule. It
// runs inside sentinel's Entry/Exit on the caller's goroutine.
func (b *Breaker) transition(rule circuitbreaker.Rule, prev, to circuitbreaker.State) {
	reason := ReasonErrorRatio
	if rule.Strategy == circuitbreaker.SlowRequestRatio {
		reason = ReasonSlowRatio
	}
	kind := KindRecover
	switch to {
	case circuitbreaker.Open:
		kind = KindTrip
	case circuitbreaker.HalfOpen:
		kind = KindHalfOpen
	}

	b.mu.Lock()
	rs := b.rst[rule.Strategy]
	if rs == nil {
		rs = &ruleState{}
		b.rst[rule.Strategy] = rs
	}
	rs.state = to
	if to == circuitbreaker.Open {
		rs.openUntil = time.Now().Add(time.Duration(rule.RetryTimeoutMs) * time.Millisecond)
	}
	agg := circuitbreaker.Closed
	for _, s := range b.rst {
		agg = worse(agg, s.state)
	}
	old := circuitbreaker.State(b.state.Swap(int32(agg)))
	b.mu.Unlock()

	b.g.emit(LayerDependency, b.target, reason, kind)
	if agg != old {
		lvl := b.g.log.Info
		if agg == circuitbreaker.Open {
			lvl = b.g.log.Warn
		}
		lvl("circuit breaker state changed", "target", b.target, "from", stateName(old), "to", stateName(agg),
			"rule", reason, "rule_from", stateName(prev))
	}
}

// worse orders states closed < half-open < open.
func worse(a, b circuitbreaker.State) circuitbreaker.State {
	rank := func(s circuitbreaker.State) int {
		switch s {
		case circuitbreaker.Open:
			return 2
		case circuitbreaker.HalfOpen:
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// breakerRules builds the circuit-breaker rules of c for resource res.
func breakerRules(res string, c *BreakerConfig) []*circuitbreaker.Rule {
	windowMs := uint32(c.Window.Milliseconds())
	buckets := uint32(1)
	if windowMs%10 == 0 {
		buckets = 10
	}
	base := circuitbreaker.Rule{
		Resource:                     res,
		RetryTimeoutMs:               uint32(c.RetryTimeout.Milliseconds()),
		MinRequestAmount:             c.MinRequests,
		StatIntervalMs:               windowMs,
		StatSlidingWindowBucketCount: buckets,
		ProbeNum:                     c.ProbeNum,
	}
	var rules []*circuitbreaker.Rule
	if c.ErrorRatio > 0 {
		r := base
		r.Id = res + "#error"
		r.Strategy = circuitbreaker.ErrorRatio
		r.Threshold = c.ErrorRatio
		rules = append(rules, &r)
	}
	if c.SlowRatio > 0 {
		r := base
		r.Id = res + "#slow"
		r.Strategy = circuitbreaker.SlowRequestRatio
		r.Threshold = c.SlowRatio
		r.MaxAllowedRtMs = uint64(c.SlowThreshold.Milliseconds())
		rules = append(rules, &r)
	}
	return rules
}

// load installs c's rules. Sentinel keeps the state machine of a rule
// whose fields are unchanged and rebuilds (closed, statistics reused) a
// rule that changed — except that it ignores ProbeNum when comparing, so a
// ProbeNum change is forced through by clearing the resource first (that
// rule then also starts with empty statistics). The mirror follows.
// g.mu must be held.
func (b *Breaker) load(c *BreakerConfig) error {
	rules := breakerRules(b.res, c)
	b.mu.Lock()
	old := b.rules
	b.mu.Unlock()
	if reflect.DeepEqual(old, rules) {
		return nil
	}
	oldBy := make(map[circuitbreaker.Strategy]*circuitbreaker.Rule, len(old))
	for _, r := range old {
		oldBy[r.Strategy] = r
	}
	rebuilt := make(map[circuitbreaker.Strategy]bool)
	forceClear := false
	for _, r := range rules {
		o := oldBy[r.Strategy]
		if o == nil || !sameRule(o, r) {
			rebuilt[r.Strategy] = true
		} else if o.ProbeNum != r.ProbeNum {
			forceClear = true
		}
	}
	if forceClear {
		_ = circuitbreaker.ClearRulesOfResource(b.res)
		for _, r := range rules {
			rebuilt[r.Strategy] = true
		}
	}
	if _, err := circuitbreaker.LoadRulesOfResource(b.res, rules); err != nil {
		return fmt.Errorf("resilience: breaker %q rules: %w", b.target, err)
	}
	got := len(circuitbreaker.GetRulesOfResource(b.res))

	b.mu.Lock()
	b.rules = rules
	kept := make(map[circuitbreaker.Strategy]bool, len(rules))
	for _, r := range rules {
		kept[r.Strategy] = !rebuilt[r.Strategy]
	}
	for s := range b.rst {
		if !kept[s] {
			delete(b.rst, s)
		}
	}
	agg := circuitbreaker.Closed
	for _, s := range b.rst {
		agg = worse(agg, s.state)
	}
	was := circuitbreaker.State(b.state.Swap(int32(agg)))
	b.mu.Unlock()
	if was != agg {
		b.g.log.Info("circuit breaker rules changed", "target", b.target, "from", stateName(was), "to", stateName(agg))
	}
	if got != len(rules) {
		return fmt.Errorf("resilience: breaker %q rules: sentinel kept %d of %d (see sentinel's warnings in the log)", b.target, got, len(rules))
	}
	return nil
}

// sameRule reports whether sentinel keeps the state machine of o when
// loading r (its isEqualsTo, which ignores Id and ProbeNum).
func sameRule(o, r *circuitbreaker.Rule) bool {
	same := o.Resource == r.Resource && o.Strategy == r.Strategy && o.RetryTimeoutMs == r.RetryTimeoutMs &&
		o.MinRequestAmount == r.MinRequestAmount && o.StatIntervalMs == r.StatIntervalMs &&
		o.StatSlidingWindowBucketCount == r.StatSlidingWindowBucketCount && o.Threshold == r.Threshold
	if r.Strategy == circuitbreaker.SlowRequestRatio {
		same = same && o.MaxAllowedRtMs == r.MaxAllowedRtMs
	}
	return same
}

// clear removes the breaker's rules and detaches it from the listener.
// g.mu must be held.
func (b *Breaker) clear() {
	reg.dropBreaker(b)
	_ = circuitbreaker.ClearRulesOfResource(b.res)
	b.mu.Lock()
	b.rules = nil
	clear(b.rst)
	b.state.Store(int32(circuitbreaker.Closed))
	b.mu.Unlock()
}
