package resilience

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alibaba/sentinel-golang/api"
	"github.com/alibaba/sentinel-golang/core/base"
	"github.com/alibaba/sentinel-golang/core/hotspot"
)

// Layer 1 — ingress. One sentinel resource per Guards carries up to two
// hotspot (parameter) QPS rules: argument 0 is the tenant key, argument 1
// the topic. Their control behaviours are this package's (ingress_buckets.go,
// ADR 0033): sentinel's token bucket, one per argument value, in a bounded
// store of IngressConfig.TrackedKeys keys per rule.

const (
	paramTenant = 0 // hotspot ParamIndex of the tenant key
	paramTopic  = 1 // hotspot ParamIndex of the topic

	// unlimitedTokens stands for "no limit" in a hotspot rule that needs a
	// number (the default of a rule that only has overrides, or an
	// override of 0). Small enough that sentinel's refill arithmetic
	// (elapsed ms × tokens) cannot overflow for a key idle over a year.
	unlimitedTokens = 1 << 28
)

// Pass is an admitted publish. Call Done exactly once when the publish has
// completed; further calls are ignored. The zero Pass is valid and inert.
type Pass struct {
	p   *pass
	gen uint64 // p.gen when admitted: a Done of a recycled pass is ignored
}

// pass is an entry into layer 1, pooled per Guards: its args are pointers
// to its own tenant and topic, so that sentinel's []interface{} of
// arguments costs no allocation (ADR 0033). gen counts its uses; Done
// advances it once, so a second Done, or one racing a reuse, does nothing.
type pass struct {
	gen           atomic.Uint64
	owner         *passPool
	e             *base.SentinelEntry
	tenant, topic string
	args          [2]any // &tenant, &topic
}

// Done records the publish's outcome in sentinel's statistics (err nil =
// success) and releases the entry.
func (p Pass) Done(err error) {
	if p.p == nil || !p.p.gen.CompareAndSwap(p.gen, p.gen+1) {
		return
	}
	e := p.p.e
	if err != nil {
		api.TraceError(e, err)
	}
	e.Exit()
	p.p.owner.put(p.p)
}

// passPool recycles a Guards' passes.
type passPool struct{ sync.Pool }

func (pp *passPool) get(tenant, topic string) *pass {
	p, _ := pp.Get().(*pass)
	if p == nil {
		p = &pass{owner: pp}
		p.args = [2]any{&p.tenant, &p.topic}
	}
	p.tenant, p.topic = tenant, topic
	return p
}

func (pp *passPool) put(p *pass) {
	p.e, p.tenant, p.topic = nil, "", ""
	pp.Put(p)
}

// enter runs layer 1's slot chain for n publishes of p, with the arguments
// from p (api.Entry allocates them per call).
func (g *Guards) enter(p *pass, n uint32) (*base.SentinelEntry, *base.BlockError) {
	return enterChain(g.ingressChain, g.rwPublish, n, p.args[:])
}

// Publish decides whether tenant may publish to topic now (layer 1). On
// success the caller must call Pass.Done. A refusal has Layer "ingress",
// Reason "tenant_qps" or "topic_qps" and RetryAfter = the limiter's refill
// period (1 s for rates ≥ 1/s). With IngressConfig.Throttle, Publish may
// sleep up to MaxQueueing before it returns a Pass.
func (g *Guards) Publish(tenant, topic string) (Pass, *Blocked) {
	p := g.passes.get(tenant, topic)
	e, blk := g.enter(p, 1)
	if blk != nil {
		g.passes.put(p)
		reason, retry := ingressReason(blk)
		return Pass{}, g.block(LayerIngress, ResourcePublish, reason, retry)
	}
	p.e = e
	return Pass{p: p, gen: p.gen.Load()}, nil
}

// PublishN admits up to n publishes by tenant to topic at once (a batch
// that takes n tokens of each limit): it returns how many were admitted,
// the largest of n, n/2, n/4, … 1 the limits allow now, so a batch larger
// than a limit's bucket still makes progress. When fewer than n were
// admitted it also returns the refusal (counted once) for the rest; Pass
// is valid when admitted > 0 and, as with Publish, Done must be called.
func (g *Guards) PublishN(tenant, topic string, n int) (admitted int, p Pass, blk *Blocked) {
	if n <= 0 { // nothing asked, nothing refused
		return 0, Pass{}, nil
	}
	ps := g.passes.get(tenant, topic)
	var last *base.BlockError
	for k := n; k > 0; k /= 2 {
		e, b := g.enter(ps, uint32(min(k, math.MaxUint32)))
		if b == nil {
			ps.e = e
			p = Pass{p: ps, gen: ps.gen.Load()}
			if k < n {
				reason, retry := ingressReason(last)
				blk = g.block(LayerIngress, ResourcePublish, reason, retry)
			}
			return k, p, blk
		}
		last = b
	}
	g.passes.put(ps)
	reason, retry := ingressReason(last)
	return 0, Pass{}, g.block(LayerIngress, ResourcePublish, reason, retry)
}

// ingressReason names the limit a refusal came from and its retry delay
// (the limiter's refill period).
func ingressReason(blk *base.BlockError) (string, time.Duration) {
	reason, retry := ReasonTenantQPS, time.Second
	if r, ok := blk.TriggeredRule().(*hotspot.Rule); ok {
		if r.ParamIndex == paramTopic {
			reason = ReasonTopicQPS
		}
		retry = time.Duration(r.DurationInSec) * time.Second
	}
	return reason, retry
}

// ingressRules builds the hotspot rules of c for resource res.
func ingressRules(res string, c *IngressConfig) []*hotspot.Rule {
	var rules []*hotspot.Rule
	build := func(param int, def float64, overrides map[string]float64) {
		rates := []float64{def}
		limited := def > 0
		for _, v := range overrides {
			rates = append(rates, v)
			limited = limited || v > 0
		}
		if !limited {
			return
		}
		period := bucketPeriod(rates)
		items := make(map[any]int64, len(overrides))
		for k, v := range overrides {
			items[k] = tokensPer(v, period)
		}
		r := &hotspot.Rule{
			ID:                fmt.Sprintf("%s#%d", res, param),
			Resource:          res,
			MetricType:        hotspot.QPS,
			ControlBehavior:   behaviorBuckets,
			ParamIndex:        param,
			Threshold:         tokensPer(def, period),
			DurationInSec:     period,
			ParamsMaxCapacity: int64(c.TrackedKeys),
			SpecificItems:     items,
			BurstCount:        burstTokens(slowest(rates), c.Burst),
		}
		if c.Throttle {
			r.ControlBehavior = behaviorPaced
			r.MaxQueueingTimeMs = c.MaxQueueing.Milliseconds()
		}
		rules = append(rules, r)
	}
	build(paramTenant, c.PublishQPS, c.Tenants)
	topics := make(map[string]float64, len(c.Topics))
	for k, v := range c.Topics {
		topics[k] = float64(v)
	}
	build(paramTopic, float64(c.TopicQPS), topics)
	return rules
}

// bucketPeriod picks the hotspot bucket period in seconds: 1 unless some
// rate is below one per second, then long enough for the slowest rate to
// get a whole token (at most 60).
func bucketPeriod(rates []float64) int64 {
	slowest := 0.0
	for _, r := range rates {
		if r > 0 && r < 1 && (slowest == 0 || r < slowest) {
			slowest = r
		}
	}
	if slowest == 0 {
		return 1
	}
	return min(int64(math.Ceil(1/slowest-1e-9)), 60)
}

// slowest is the smallest positive rate (0 when none): sentinel gives one
// burst to every key of a rule, so it is sized for the slowest.
func slowest(rates []float64) float64 {
	low := 0.0
	for _, r := range rates {
		if r > 0 && (low == 0 || r < low) {
			low = r
		}
	}
	return low
}

// burstTokens is the tokens a key may take on top of its rate at once:
// burst's worth at rate (none when unlimited).
func burstTokens(rate float64, burst time.Duration) int64 {
	if rate <= 0 || burst <= 0 {
		return 0
	}
	return min(int64(math.Round(rate*burst.Seconds())), unlimitedTokens)
}

// tokensPer converts a per-second rate to whole tokens per period.
func tokensPer(rate float64, period int64) int64 {
	if rate <= 0 {
		return unlimitedTokens
	}
	return min(max(int64(math.Round(rate*float64(period))), 1), unlimitedTokens)
}

func loadIngressRules(res string, c *IngressConfig) error {
	rules := ingressRules(res, c)
	if _, err := hotspot.LoadRulesOfResource(res, rules); err != nil {
		return fmt.Errorf("resilience: ingress rules: %w", err)
	}
	if got := len(hotspot.GetRulesOfResource(res)); got != len(rules) {
		return fmt.Errorf("resilience: ingress rules: sentinel kept %d of %d hotspot rules (see sentinel's warnings in the log)", got, len(rules))
	}
	return nil
}

func clearIngressRules(res string) { _ = hotspot.ClearRulesOfResource(res) }
