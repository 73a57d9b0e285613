package resilience

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// A tenant publishing at 10× its rate gets roughly its rate through and a
// Blocked with a usable RetryAfter for the rest; another tenant publishing
// at the same time within its own limit is untouched; the first recovers
// once the bucket refills.
func TestIngressTenantQPS(t *testing.T) {
	const qps = 20
	var ev events
	g := mustNew(t, Config{Ingress: IngressConfig{PublishQPS: qps}}, Options{OnEvent: ev.record})

	const run = 2 * time.Second
	var (
		wg                   sync.WaitGroup
		aPass, aBlock, bPass int
		bBlocked             []*Blocked
		badBlock             error
	)
	start := time.Now()
	wg.Go(func() { // tenant a: 200 attempts/s
		for time.Since(start) < run {
			p, blk := g.Publish("a", "news")
			if blk != nil {
				aBlock++
				if blk.Layer != LayerIngress || blk.Resource != ResourcePublish || blk.Reason != ReasonTenantQPS ||
					blk.RetryAfter <= 0 || blk.RetryAfter > time.Second || blk.RetryAfterSeconds() != 1 || !errors.Is(blk, ErrBlocked) {
					badBlock = fmt.Errorf("unexpected block %+v", *blk)
				}
			} else {
				aPass++
				p.Done(nil)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	wg.Go(func() { // tenant b: 10 attempts/s, half its limit
		for time.Since(start) < run {
			p, blk := g.Publish("b", "news")
			if blk != nil {
				bBlocked = append(bBlocked, blk)
			} else {
				bPass++
				p.Done(nil)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("a: %d passed, %d blocked; b: %d passed in %s", aPass, aBlock, bPass, elapsed)

	if badBlock != nil {
		t.Fatal(badBlock)
	}
	// A full bucket at start plus one refill per second: about qps per
	// second, with slack for the bucket boundaries.
	secs := elapsed.Seconds()
	if lo, hi := int(qps*secs*0.6), int(qps*(secs+1.5)); aPass < lo || aPass > hi {
		t.Errorf("tenant a passed %d in %.1fs, want %d..%d", aPass, secs, lo, hi)
	}
	if aBlock < 5*aPass {
		t.Errorf("tenant a: %d blocked vs %d passed, want most blocked", aBlock, aPass)
	}
	if len(bBlocked) != 0 || bPass < 10 {
		t.Errorf("tenant b (within its limit): %d passed, blocked %v", bPass, bBlocked)
	}
	if got := g.Counters()["ingress/publish/tenant_qps/block"]; got != uint64(aBlock) {
		t.Errorf("counter = %d, want %d", got, aBlock)
	}
	if got := ev.count(LayerIngress, ReasonTenantQPS, KindBlock); got != aBlock {
		t.Errorf("block events = %d, want %d", got, aBlock)
	}

	// Recovery: the bucket refills after its period.
	checkFor(t, 3*time.Second, 50*time.Millisecond, func() error {
		p, blk := g.Publish("a", "news")
		if blk != nil {
			return blk
		}
		p.Done(nil)
		return nil
	})
}

// A hot-topic limit applies across tenants, with per-topic overrides.
func TestIngressTopicQPS(t *testing.T) {
	g := mustNew(t, Config{Ingress: IngressConfig{TopicQPS: 5, Topics: map[string]int64{"hot": 2, "free": 0}}}, Options{})

	burst := func(topic string, n int) (pass int, reasons map[string]int) {
		reasons = map[string]int{}
		for i := range n {
			p, blk := g.Publish(fmt.Sprintf("tenant-%d", i), topic)
			if blk != nil {
				reasons[blk.Reason]++
				continue
			}
			pass++
			p.Done(nil)
		}
		return pass, reasons
	}
	if pass, reasons := burst("hot", 10); pass != 2 || reasons[ReasonTopicQPS] != 8 {
		t.Errorf("hot: %d passed, blocked %v; want 2 passed, 8 topic_qps", pass, reasons)
	}
	if pass, reasons := burst("cold", 10); pass != 5 || reasons[ReasonTopicQPS] != 5 {
		t.Errorf("cold: %d passed, blocked %v; want 5 passed, 5 topic_qps", pass, reasons)
	}
	if pass, reasons := burst("free", 100); pass != 100 {
		t.Errorf("free (override 0 = unlimited): %d passed, blocked %v", pass, reasons)
	}
	if got := g.Counters()["ingress/publish/topic_qps/block"]; got != 13 {
		t.Errorf("topic_qps blocks = %d, want 13", got)
	}
	checkFor(t, 3*time.Second, 50*time.Millisecond, func() error {
		p, blk := g.Publish("x", "hot")
		if blk != nil {
			return blk
		}
		p.Done(nil)
		return nil
	})
}

// Tenant overrides: 0 is unlimited, fractional rates use a longer bucket
// and report it as RetryAfter.
func TestIngressTenantOverrides(t *testing.T) {
	g := mustNew(t, Config{Ingress: IngressConfig{PublishQPS: 5, Tenants: map[string]float64{"vip": 0, "slow": 0.5}}}, Options{})
	for i := range 100 {
		p, blk := g.Publish("vip", "t")
		if blk != nil {
			t.Fatalf("vip publish %d blocked: %v", i, blk)
		}
		p.Done(nil)
	}
	p, blk := g.Publish("slow", "t")
	if blk != nil {
		t.Fatalf("first slow publish blocked: %v", blk)
	}
	p.Done(nil)
	p.Done(errors.New("second Done is ignored"))
	_, blk = g.Publish("slow", "t")
	if blk == nil || blk.RetryAfter != 2*time.Second || blk.RetryAfterSeconds() != 2 {
		t.Fatalf("second slow publish: %+v, want blocked with RetryAfter 2s", blk)
	}
	pass := 0
	for range 20 {
		if p, blk := g.Publish("other", "t"); blk == nil {
			pass++
			p.Done(nil)
		}
	}
	// Rule period is 2 s (for the 0.5/s tenant): 5/s becomes 10 per 2 s.
	if pass != 10 {
		t.Errorf("default tenant passed %d of 20, want 10 (5/s over a 2 s bucket)", pass)
	}
}

// With Throttle, publishes over the rate wait for their slot (bounded by
// MaxQueueing) instead of failing at once.
func TestIngressThrottle(t *testing.T) {
	g := mustNew(t, Config{Ingress: IngressConfig{PublishQPS: 10, Throttle: true, MaxQueueing: 250 * time.Millisecond}}, Options{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		waits   []time.Duration
		blocked int
	)
	for range 8 {
		wg.Go(func() {
			start := time.Now()
			p, blk := g.Publish("t", "topic")
			mu.Lock()
			defer mu.Unlock()
			if blk != nil {
				blocked++
				return
			}
			waits = append(waits, time.Since(start))
			p.Done(nil)
		})
	}
	wg.Wait()
	longest := time.Duration(0)
	for _, w := range waits {
		longest = max(longest, w)
	}
	t.Logf("passed after %v, %d blocked", waits, blocked)
	// 100 ms per publish: now, +100 ms, +200 ms; +300 ms exceeds 250 ms.
	if len(waits) < 2 || len(waits) > 4 || blocked < 4 {
		t.Errorf("%d passed, %d blocked; want 2..4 passed", len(waits), blocked)
	}
	if longest < 80*time.Millisecond || longest > 2*time.Second {
		t.Errorf("longest wait %s, want ≈ 100–250ms", longest)
	}
}

// PublishN takes a batch's tokens at once, and admits the largest halving
// of a batch the bucket can pay for, so a batch larger than a limit still
// makes progress; the refused rest counts as one block.
func TestIngressPublishN(t *testing.T) {
	g := mustNew(t, Config{Ingress: IngressConfig{PublishQPS: 100, Tenants: map[string]float64{"slow": 1}}}, Options{})
	k, p, blk := g.PublishN("a", "logs", 300) // 300 and 150 exceed the bucket of 100
	if k != 75 || blk == nil || blk.Reason != ReasonTenantQPS || blk.RetryAfterSeconds() != 1 {
		t.Fatalf("PublishN(300) = %d, %+v; want 75 admitted and a tenant_qps refusal", k, blk)
	}
	p.Done(nil)
	if got := g.Counters()["ingress/publish/tenant_qps/block"]; got != 1 {
		t.Errorf("block counter = %d, want 1", got)
	}
	if k, p, blk := g.PublishN("a", "logs", 10); k != 10 || blk != nil {
		t.Errorf("PublishN(10) within the rest of the bucket = %d, %v", k, blk)
	} else {
		p.Done(nil)
	}
	// A bucket of 1: the first batch gets one token, the next none.
	if k, p, blk := g.PublishN("slow", "logs", 5); k != 1 || blk == nil {
		t.Errorf("slow PublishN(5) = %d, %v; want 1 admitted", k, blk)
	} else {
		p.Done(nil)
	}
	if k, _, blk := g.PublishN("slow", "logs", 5); k != 0 || blk == nil || !errors.Is(blk, ErrBlocked) {
		t.Errorf("slow PublishN(5) again = %d, %v; want 0 and a refusal", k, blk)
	}
	if k, _, blk := g.PublishN("a", "logs", 0); k != 0 || blk != nil {
		t.Errorf("PublishN(0) = %d, %v", k, blk)
	}
}

// Burst lets a key run ahead of its rate by burst's worth at once (a client
// catching up after a stall), and no further; with per-key overrides every
// key gets the burst of the slowest rate.
func TestIngressBurst(t *testing.T) {
	g := mustNew(t, Config{Ingress: IngressConfig{PublishQPS: 10, Burst: 500 * time.Millisecond}}, Options{})
	pass := 0
	for range 30 {
		if p, blk := g.Publish("t", "a"); blk == nil {
			pass++
			p.Done(nil)
		}
	}
	if pass != 15 {
		t.Errorf("rate 10/s with a 500ms burst: %d of 30 at once passed, want 15", pass)
	}
	g2 := mustNew(t, Config{Ingress: IngressConfig{PublishQPS: 10, Tenants: map[string]float64{"slow": 2}, Burst: time.Second}}, Options{})
	for tenant, want := range map[string]int{"fast": 12, "slow": 4} {
		pass := 0
		for range 30 {
			if p, blk := g2.Publish(tenant, "a"); blk == nil {
				pass++
				p.Done(nil)
			}
		}
		if pass != want {
			t.Errorf("%s: %d of 30 at once passed, want %d (burst of the slowest rate: 2)", tenant, pass, want)
		}
	}
	if err := (Config{Ingress: IngressConfig{Burst: -time.Second}}).Validate(); err == nil || !strings.Contains(err.Error(), "ingress.burst") {
		t.Errorf("negative burst: %v", err)
	}
}
