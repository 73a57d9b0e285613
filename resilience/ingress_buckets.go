package resilience

import (
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alibaba/sentinel-golang/core/base"
	"github.com/alibaba/sentinel-golang/core/hotspot"
	"github.com/alibaba/sentinel-golang/core/hotspot/cache"
	"github.com/alibaba/sentinel-golang/util"
)

// Layer 1's hotspot rules are checked by sentinel's hotspot slot with a
// traffic-shaping controller of this package (ADR 0033), registered with
// hotspot.SetTrafficShapingGenerator for two control behaviours of our
// own. The controller does sentinel's own arithmetic — the Reject
// controller's token bucket (Threshold per DurationInSec, plus BurstCount)
// and the Throttling controller's pacing (MaxQueueingTimeMs) — on a store
// built for the publish path: the per-key state lives in one entry (last
// refill time and tokens) of a sharded map keyed by string, looked up
// without allocating, bounded by ParamsMaxCapacity with least-recently-used
// eviction, where sentinel's default controllers keep two LRU caches keyed
// by interface{} and allocate a *int64 per call.

const (
	// behaviorBuckets is sentinel's Reject behaviour on bucketStore.
	behaviorBuckets hotspot.ControlBehavior = 1000 + hotspot.Reject
	// behaviorPaced is sentinel's Throttling behaviour on bucketStore.
	behaviorPaced hotspot.ControlBehavior = 1000 + hotspot.Throttling
)

// registerShaping registers the controllers of behaviorBuckets and
// behaviorPaced with sentinel. Called once per process, before any rule is
// loaded (sentinel reads its generators without a lock while loading).
func registerShaping() error {
	if err := hotspot.SetTrafficShapingGenerator(behaviorBuckets, newBucketController); err != nil {
		return err
	}
	return hotspot.SetTrafficShapingGenerator(behaviorPaced, newBucketController)
}

// bucketController is a hotspot.TrafficShapingController for QPS rules of
// behaviorBuckets or behaviorPaced. Arguments are strings, or *string
// (Guards.Publish passes pointers into its pooled pass, so that putting
// them in sentinel's []interface{} allocates nothing).
type bucketController struct {
	rule      *hotspot.Rule
	store     *bucketStore
	metric    *hotspot.ParamsMetric // holds store; sentinel hands it to the next rule on reload
	paced     bool
	threshold int64
	burst     int64
	periodMs  int64
	maxQueue  int64            // ms, paced only
	specific  map[string]int64 // the rule's string SpecificItems
	blockMsg  string
}

var _ hotspot.TrafficShapingController = (*bucketController)(nil)

// newBucketController is the hotspot.TrafficControllerGenFunc of both
// behaviours. reuse is the metric of the rule this one replaces when
// sentinel finds them compatible (same resource, behaviour, capacity,
// period): its buckets carry over, as with sentinel's own controllers.
func newBucketController(r *hotspot.Rule, reuse *hotspot.ParamsMetric) hotspot.TrafficShapingController {
	if r.MetricType != hotspot.QPS {
		return nil // sentinel drops the rule and logs it; Herald only builds QPS rules
	}
	var store *bucketStore
	if reuse != nil {
		if v, ok := reuse.RuleTokenCounter.(bucketView); ok {
			store = v.s
		}
	}
	if store == nil {
		capacity := int(r.ParamsMaxCapacity)
		if capacity <= 0 {
			capacity = hotspot.ParamsMaxCapacity
		}
		store = newBucketStore(capacity, shardsFor(capacity))
	}
	c := &bucketController{
		rule:      r,
		store:     store,
		metric:    &hotspot.ParamsMetric{RuleTimeCounter: bucketView{store}, RuleTokenCounter: bucketView{store}},
		paced:     r.ControlBehavior == behaviorPaced,
		threshold: r.Threshold,
		burst:     r.BurstCount,
		periodMs:  r.DurationInSec * 1000,
		maxQueue:  r.MaxQueueingTimeMs,
		specific:  make(map[string]int64, len(r.SpecificItems)),
		blockMsg:  "hotspot check blocked: " + r.ID,
	}
	for k, v := range r.SpecificItems {
		if s, ok := k.(string); ok {
			c.specific[s] = v
		}
	}
	return c
}

func (c *bucketController) BoundParamIndex() int               { return c.rule.ParamIndex }
func (c *bucketController) BoundMetric() *hotspot.ParamsMetric { return c.metric }
func (c *bucketController) BoundRule() *hotspot.Rule           { return c.rule }

// ExtractArgs is sentinel's: the attachment named by ParamKey, else the
// argument at ParamIndex (negative counts from the end).
func (c *bucketController) ExtractArgs(ctx *base.EntryContext) any {
	if k := c.rule.ParamKey; k != "" && ctx.Input.Attachments != nil {
		if v, ok := ctx.Input.Attachments[k]; ok && v != nil {
			return v
		}
	}
	args := ctx.Input.Args
	i := c.rule.ParamIndex
	if i < 0 {
		i += len(args)
	}
	if i < 0 || i >= len(args) {
		return nil
	}
	return args[i]
}

// PerformChecking admits batch tokens for arg or refuses them.
func (c *bucketController) PerformChecking(arg any, batch int64) *base.TokenResult {
	var key string
	switch a := arg.(type) {
	case *string:
		key = *a
	case string:
		key = a
	default:
		return nil // not a key of ours: unchecked, as sentinel ignores a nil argument
	}
	tokens := c.threshold
	if v, ok := c.specific[key]; ok {
		tokens = v
	}
	if tokens <= 0 {
		return c.blocked()
	}
	if c.paced {
		wait, ok := c.store.pace(key, int64(util.CurrentTimeMillis()), batch, tokens, c.periodMs, c.maxQueue)
		switch {
		case !ok:
			return c.blocked()
		case wait > 0:
			return base.NewTokenResultShouldWait(time.Duration(wait) * time.Millisecond)
		}
		return nil
	}
	if !c.store.take(key, int64(util.CurrentTimeMillis()), batch, tokens, tokens+c.burst, c.periodMs) {
		return c.blocked()
	}
	return nil
}

func (c *bucketController) blocked() *base.TokenResult {
	return base.NewTokenResultBlockedWithCause(base.BlockTypeHotSpotParamFlow, c.blockMsg, c.rule, nil)
}

// shardsFor is the number of shards of a store of capacity keys: one (an
// exact least-recently-used order, as sentinel's) below 4,096 keys, else 16.
func shardsFor(capacity int) int {
	if capacity < 4096 {
		return 1
	}
	return 16
}

// bucketStore is the per-key state of one rule: for each key, the time of
// its last refill (or pass, when paced) and its tokens. It holds at most
// capacity keys plus one per shard (see insert); a shard's keys are kept
// in least-recently-used order and the least recently used is evicted.
// Lookups of tracked keys do not allocate. Safe for concurrent use.
type bucketStore struct {
	seed     maphash.Seed
	mask     uint64
	capacity int64
	size     atomic.Int64 // keys across shards
	shards   []bucketShard
}

type bucketShard struct {
	mu      sync.Mutex
	index   map[string]int32 // key → entries index
	entries []bucketEntry
	head    int32    // most recently used, -1 when empty
	tail    int32    // least recently used, -1 when empty
	_       [16]byte // to 64 bytes: neighbouring shards' locks on separate cache lines
}

type bucketEntry struct {
	key        string
	last       int64 // ms
	tokens     int64
	prev, next int32 // towards head, towards tail; -1 at the ends
}

func newBucketStore(capacity, shards int) *bucketStore {
	s := &bucketStore{seed: maphash.MakeSeed(), mask: uint64(shards - 1), capacity: int64(capacity), shards: make([]bucketShard, shards)}
	for i := range s.shards {
		s.shards[i].index = make(map[string]int32)
		s.shards[i].head, s.shards[i].tail = -1, -1
	}
	return s
}

func (s *bucketStore) shard(key string) *bucketShard {
	if s.mask == 0 {
		return &s.shards[0]
	}
	return &s.shards[maphash.String(s.seed, key)&s.mask]
}

// take is sentinel's Reject controller: a new key starts with max tokens;
// within a period of the last refill tokens are only spent; after it, the
// elapsed time's worth (at tokens per period) is added, capped at max.
func (s *bucketStore) take(key string, now, batch, tokens, maxTokens, periodMs int64) bool {
	if batch > maxTokens {
		return false
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.get(key)
	if e == nil {
		sh.insert(s, key, now, maxTokens-batch)
		return true
	}
	if elapsed := now - e.last; elapsed > periodMs {
		left := elapsed*tokens/periodMs + e.tokens
		if left > maxTokens {
			left = maxTokens
		}
		if left -= batch; left < 0 {
			return false
		}
		e.tokens, e.last = left, now
		return true
	}
	if e.tokens < batch {
		return false
	}
	e.tokens -= batch
	return true
}

// pace is sentinel's Throttling controller: passes are spaced by the
// batch's share of the period; one that would wait maxQueue ms or more is
// refused. It returns the wait in ms.
func (s *bucketStore) pace(key string, now, batch, tokens, periodMs, maxQueue int64) (int64, bool) {
	interval := int64(math.Round(float64(batch * periodMs / tokens)))
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.get(key)
	if e == nil {
		sh.insert(s, key, now, 0)
		return 0, true
	}
	expected := e.last + interval
	if expected > now && expected-now >= maxQueue {
		return 0, false
	}
	if wait := expected - now; wait > 0 {
		e.last = expected
		return wait, true
	}
	e.last = now
	return 0, true
}

// get returns key's entry, made the most recently used, or nil.
func (sh *bucketShard) get(key string) *bucketEntry {
	i, ok := sh.index[key]
	if !ok {
		return nil
	}
	sh.unlink(i)
	sh.pushFront(i)
	return &sh.entries[i]
}

// insert adds key as the most recently used. When the store is full it
// evicts this shard's least recently used key; an empty shard of a full
// store takes its one key anyway, so the store holds at most capacity +
// shards − 1 keys.
func (sh *bucketShard) insert(s *bucketStore, key string, last, tokens int64) {
	key = strings.Clone(key) // do not keep the caller's buffer alive
	if s.size.Load() >= s.capacity && sh.tail >= 0 {
		i := sh.tail
		sh.unlink(i)
		delete(sh.index, sh.entries[i].key)
		sh.entries[i] = bucketEntry{key: key, last: last, tokens: tokens}
		sh.index[key] = i
		sh.pushFront(i)
		return
	}
	i := int32(len(sh.entries))
	sh.entries = append(sh.entries, bucketEntry{key: key, last: last, tokens: tokens})
	sh.index[key] = i
	sh.pushFront(i)
	s.size.Add(1)
}

func (sh *bucketShard) unlink(i int32) {
	e := &sh.entries[i]
	if e.prev >= 0 {
		sh.entries[e.prev].next = e.next
	} else {
		sh.head = e.next
	}
	if e.next >= 0 {
		sh.entries[e.next].prev = e.prev
	} else {
		sh.tail = e.prev
	}
}

func (sh *bucketShard) pushFront(i int32) {
	e := &sh.entries[i]
	e.prev, e.next = -1, sh.head
	if sh.head >= 0 {
		sh.entries[sh.head].prev = i
	}
	sh.head = i
	if sh.tail < 0 {
		sh.tail = i
	}
}

func (s *bucketStore) len() int { return int(s.size.Load()) }

func (s *bucketStore) keys() []any {
	var out []any
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for j := sh.tail; j >= 0; j = sh.entries[j].prev {
			out = append(out, sh.entries[j].key)
		}
		sh.mu.Unlock()
	}
	return out
}

// bucketView shows a bucketStore as the cache.ConcurrentCounterCache that
// sentinel's ParamsMetric holds, so that sentinel's reuse of a metric
// across rule reloads carries the store over. It is a read-only view for
// sentinel and tools: Len, Keys and Contains report the tracked keys, Get
// a copy of a key's tokens; Add, AddIfAbsent, Remove and Purge do nothing
// (the store's state changes only through its controller).
type bucketView struct{ s *bucketStore }

var _ cache.ConcurrentCounterCache = bucketView{}

func (v bucketView) Add(any, *int64)                    {}
func (v bucketView) AddIfAbsent(k any, _ *int64) *int64 { p, _ := v.Get(k); return p }
func (v bucketView) Remove(any) bool                    { return false }
func (v bucketView) Purge()                             {}
func (v bucketView) Len() int                           { return v.s.len() }
func (v bucketView) Keys() []any                        { return v.s.keys() }

func (v bucketView) Contains(k any) bool {
	_, ok := v.Get(k)
	return ok
}

// Get returns a copy of k's tokens (writes to it are not seen) without
// changing the key's recency.
func (v bucketView) Get(k any) (*int64, bool) {
	key, ok := k.(string)
	if !ok {
		return nil, false
	}
	sh := v.s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.index[key]
	if !ok {
		return nil, false
	}
	t := sh.entries[i].tokens
	return &t, true
}
