package resilience

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alibaba/sentinel-golang/api"
	"github.com/alibaba/sentinel-golang/core/base"
	"github.com/alibaba/sentinel-golang/core/hotspot"
	"github.com/alibaba/sentinel-golang/util"
)

// testClock is sentinel's clock under test: time moves only when the test
// says, and a throttled entry's sleep is recorded instead of slept (so that
// two controllers fed the same sequence see the same times).
type testClock struct {
	ms    atomic.Int64
	slept atomic.Int64 // ns
}

func (c *testClock) Now() time.Time            { return time.UnixMilli(c.ms.Load()) }
func (c *testClock) Sleep(d time.Duration)     { c.slept.Add(int64(d)) }
func (c *testClock) CurrentTimeMillis() uint64 { return uint64(c.ms.Load()) }
func (c *testClock) CurrentTimeNano() uint64   { return uint64(c.ms.Load()) * 1e6 }

// useTestClock makes sentinel read c until the test ends. Tests of this
// package are not parallel (helpers_test.go).
func useTestClock(t *testing.T) *testClock {
	c := &testClock{}
	c.ms.Store(1_700_000_000_000)
	prev := util.CurrentClock()
	util.SetClock(c)
	t.Cleanup(func() { util.SetClock(prev) })
	return c
}

// shapingCase is one hotspot rule and a random publish sequence against it.
type shapingCase struct {
	name      string
	threshold int64
	burst     int64
	period    int64 // s
	capacity  int64
	specific  map[any]int64
	throttle  int64 // MaxQueueingTimeMs; > 0 means Throttling
	keys      int
	maxBatch  int64
	maxStep   int64 // ms between calls: uniform in [0, maxStep], one in ten up to 3 periods (unless 0)
	ops       int
}

// The same sequence of calls — keys, batch sizes and times — is admitted,
// refused and (throttled) delayed identically by sentinel's default hotspot
// controllers and by ours, through sentinel's hotspot slot: rates, bursts,
// long idle periods, batches, per-key items, many keys, and eviction when
// there are more keys than ParamsMaxCapacity (below 4,096 keys our store is
// one least-recently-used list, like sentinel's).
func TestShapingMatchesSentinel(t *testing.T) {
	clk := useTestClock(t)
	cases := []shapingCase{
		{name: "rate1", threshold: 1, period: 1, capacity: 100, keys: 3, maxBatch: 1, maxStep: 400, ops: 3000},
		{name: "rate5-burst3", threshold: 5, burst: 3, period: 1, capacity: 100, keys: 5, maxBatch: 1, maxStep: 150, ops: 5000},
		{name: "rate100-batches", threshold: 100, burst: 20, period: 1, capacity: 100, keys: 4, maxBatch: 40, maxStep: 100, ops: 5000},
		{name: "period2", threshold: 3, period: 2, capacity: 100, keys: 3, maxBatch: 2, maxStep: 700, ops: 3000},
		{name: "specific", threshold: 10, burst: 2, period: 1, capacity: 100, keys: 6, maxBatch: 3, maxStep: 80, ops: 5000,
			specific: map[any]int64{"k0": 1, "k1": 50, "k2": 0}},
		{name: "evict", threshold: 2, burst: 1, period: 1, capacity: 8, keys: 20, maxBatch: 1, maxStep: 30, ops: 20000},
		{name: "evict-batches", threshold: 20, period: 1, capacity: 50, keys: 80, maxBatch: 25, maxStep: 20, ops: 20000},
		{name: "many-keys-sharded", threshold: 3, burst: 2, period: 1, capacity: 10_000, keys: 9_000, maxBatch: 2, maxStep: 0, ops: 60_000},
		{name: "throttle", threshold: 10, period: 1, capacity: 100, throttle: 250, keys: 3, maxBatch: 2, maxStep: 120, ops: 5000},
		{name: "throttle-evict", threshold: 5, period: 1, capacity: 4, throttle: 500, keys: 9, maxBatch: 1, maxStep: 40, ops: 10000},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old, ours := shapingPair(t, c)
			rng := rand.New(rand.NewPCG(uint64(i), 33))
			var admitted, refused int
			for op := range c.ops {
				step := rng.Int64N(c.maxStep + 1)
				if c.maxStep > 0 && rng.IntN(10) == 0 {
					step = rng.Int64N(3*c.period*1000 + 1)
				}
				clk.ms.Add(step)
				key := fmt.Sprintf("k%d", rng.IntN(1+rng.IntN(c.keys))) // skewed: some keys hot, most cold
				batch := 1 + rng.Int64N(c.maxBatch)
				s0 := clk.slept.Load()
				want := shapingEntry(old, key, batch)
				wantSlept := clk.slept.Swap(s0) - s0
				got := shapingEntry(ours, key, batch)
				gotSlept := clk.slept.Load() - s0
				if got != want || gotSlept != wantSlept {
					t.Fatalf("op %d (key %s, batch %d, +%d ms): ours admitted=%v slept=%v, sentinel's admitted=%v slept=%v",
						op, key, batch, step, got, time.Duration(gotSlept), want, time.Duration(wantSlept))
				}
				if got {
					admitted++
				} else {
					refused++
				}
			}
			t.Logf("%d admitted, %d refused, identically", admitted, refused)
			if admitted == 0 || refused == 0 {
				t.Errorf("the sequence did not exercise both outcomes")
			}
		})
	}
}

// shapingPair loads c's rule twice, on two resources: with sentinel's
// behaviour and with ours.
func shapingPair(t *testing.T, c shapingCase) (old, ours string) {
	t.Helper()
	for _, res := range []string{"eq-old/" + t.Name(), "eq-ours/" + t.Name()} {
		r := &hotspot.Rule{
			ID: res, Resource: res, MetricType: hotspot.QPS, ControlBehavior: hotspot.Reject,
			ParamIndex: 0, Threshold: c.threshold, BurstCount: c.burst, DurationInSec: c.period,
			ParamsMaxCapacity: c.capacity, SpecificItems: c.specific,
		}
		if c.throttle > 0 {
			r.ControlBehavior, r.MaxQueueingTimeMs = hotspot.Throttling, c.throttle
		}
		if res[:6] == "eq-our" {
			r.ControlBehavior += behaviorBuckets - hotspot.Reject
		}
		mustNew(t, DefaultConfig(), Options{}) // sentinel initialised, our generators registered
		if _, err := hotspot.LoadRulesOfResource(res, []*hotspot.Rule{r}); err != nil {
			t.Fatal(err)
		}
		if n := len(hotspot.GetRulesOfResource(res)); n != 1 {
			t.Fatalf("%s: sentinel kept %d rules", res, n)
		}
		t.Cleanup(func() { _ = hotspot.ClearRulesOfResource(res) })
	}
	return "eq-old/" + t.Name(), "eq-ours/" + t.Name()
}

var hotspotChain = func() *base.SlotChain {
	sc := base.NewSlotChain()
	sc.AddRuleCheckSlot(hotspot.DefaultSlot)
	return sc
}()

func shapingEntry(res, key string, batch int64) bool {
	e, blk := api.Entry(res, api.WithSlotChain(hotspotChain), api.WithArgs(key), api.WithBatchCount(uint32(batch)))
	if blk != nil {
		return false
	}
	e.Exit()
	return true
}

// A store holds at most its capacity plus one key per shard, however many
// keys pass through it; below 4,096 keys it holds exactly its capacity.
func TestBucketStoreBounded(t *testing.T) {
	for _, capacity := range []int{10, 4096, DefaultTrackedKeys} {
		s := newBucketStore(capacity, shardsFor(capacity))
		for i := range 5 * capacity {
			s.take(fmt.Sprintf("key-%d", i), int64(i), 1, 10, 10, 1000)
		}
		limit := capacity + len(s.shards) - 1
		n, entries := s.len(), 0
		for i := range s.shards {
			sh := &s.shards[i]
			entries += len(sh.entries)
			if len(sh.index) != len(sh.entries) {
				t.Errorf("capacity %d shard %d: %d indexed, %d entries", capacity, i, len(sh.index), len(sh.entries))
			}
		}
		if n > limit || entries != n || len(bucketView{s}.Keys()) != n {
			t.Errorf("capacity %d: %d keys (%d entries), want ≤ %d", capacity, n, entries, limit)
		}
		if len(s.shards) == 1 && n != capacity {
			t.Errorf("capacity %d, one shard: %d keys", capacity, n)
		}
		// The most recent keys are the ones kept.
		last := fmt.Sprintf("key-%d", 5*capacity-1)
		if !(bucketView{s}).Contains(last) {
			t.Errorf("capacity %d: the last key was evicted", capacity)
		}
	}
}

// Reload keeps a rule's buckets (sentinel hands the old controller's
// metric to the new one): a tenant that emptied its bucket is still
// refused within the period after the rate is raised.
func TestIngressReloadKeepsBuckets(t *testing.T) {
	clk := useTestClock(t)
	cfg := DefaultConfig()
	cfg.Ingress.PublishQPS, cfg.Ingress.Burst = 2, 0
	g := mustNew(t, cfg, Options{})
	for range 2 {
		p, blk := g.Publish("t", "x")
		if blk != nil {
			t.Fatal(blk)
		}
		p.Done(nil)
	}
	cfg.Ingress.PublishQPS = 1000
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if _, blk := g.Publish("t", "x"); blk == nil || blk.Reason != ReasonTenantQPS {
		t.Fatalf("after reload, within the period: %v; want the emptied bucket to refuse", blk)
	}
	clk.ms.Add(1001)
	for i := range 1000 {
		p, blk := g.Publish("t", "x")
		if blk != nil {
			t.Fatalf("publish %d at the reloaded rate: %v", i, blk)
		}
		p.Done(nil)
	}
}

// Passes are recycled: Done twice, or Done of a Pass whose pass was reused
// by another publish, does nothing; concurrent publishes and Done calls
// are race-free (run with -race).
func TestIngressPassRecycling(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Ingress.PublishQPS, cfg.Ingress.TopicQPS = 1e6, 1e6
	g := mustNew(t, cfg, Options{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				p, blk := g.Publish(fmt.Sprintf("tenant-%d", w), fmt.Sprintf("topic-%d", i%50))
				if blk != nil {
					t.Error(blk)
					return
				}
				p.Done(nil)
				p.Done(nil) // ignored, even if its pass now serves another publish
			}
		})
	}
	wg.Wait()
	p1, _ := g.Publish("a", "b")
	stale := p1
	p1.Done(nil)
	p2, _ := g.Publish("c", "d")
	stale.Done(nil) // must not release p2's entry
	if p2.p.e == nil {
		t.Fatal("a stale Done released another publish's entry")
	}
	p2.Done(nil)
}
