package resilience

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// Defaults used by New when a shape field is zero, and bounds checked by
// Validate. Limit fields (rates, caps, thresholds) use zero for "off"
// instead; each field's comment says which kind it is.
const (
	// DefaultMaxQueueing is IngressConfig.MaxQueueing when zero.
	DefaultMaxQueueing = 500 * time.Millisecond
	// DefaultTrackedKeys is IngressConfig.TrackedKeys when zero.
	DefaultTrackedKeys = 10000
	// DefaultColdFactor is AdmissionConfig.ColdFactor when zero (sentinel's default).
	DefaultColdFactor = 3
	// DefaultBusyRetryAfter is AdmissionConfig.BusyRetryAfter when zero.
	DefaultBusyRetryAfter = 5 * time.Second
	// RecommendedMaxSchedDelay is the AdmissionConfig.MaxSchedDelay
	// recommended for production builds (ADR 0027): far above a busy but
	// healthy node's p99. It is not the default: race-built test nodes
	// taking thousands of handshakes on two shared cores exceed it.
	RecommendedMaxSchedDelay = 500 * time.Millisecond
	// DefaultSlowThreshold is BreakerConfig.SlowThreshold when zero.
	DefaultSlowThreshold = 300 * time.Millisecond
	// DefaultMinRequests is BreakerConfig.MinRequests when zero.
	DefaultMinRequests = 20
	// DefaultWindow is BreakerConfig.Window when zero.
	DefaultWindow = 10 * time.Second
	// DefaultRetryTimeout is BreakerConfig.RetryTimeout when zero.
	DefaultRetryTimeout = 5 * time.Second

	// MinQPS is the smallest non-zero per-key publish or topic rate
	// (one per minute): sentinel's hotspot buckets hold whole tokens per
	// period of at most 60 s.
	MinQPS = 1.0 / 60
	// MaxThrottledQPS is the largest per-key rate accepted with
	// IngressConfig.Throttle: sentinel computes the pacing interval in whole
	// milliseconds, so faster rates would not be paced at all.
	MaxThrottledQPS = 1000
	// MaxWindow bounds BreakerConfig.Window and RetryTimeout.
	MaxWindow = 10 * time.Minute
)

// Config configures the four protection layers. Every field may be given in
// YAML with its snake_case koanf name. The zero Config is valid and guards
// nothing: every limit is off and every shape parameter takes its default.
// DefaultConfig returns production defaults.
type Config struct {
	// Ingress is layer 1: publish rate limits per tenant and per topic.
	Ingress IngressConfig `koanf:"ingress"`
	// Admission is layer 2: which new streams a node accepts.
	Admission AdmissionConfig `koanf:"admission"`
	// Replay is layer 3's replay concurrency cap. The per-connection fan-out
	// queues of layer 3 live in the hub (limits.queue_*), not here.
	Replay ReplayConfig `koanf:"replay"`
	// Breaker is layer 4: the circuit-breaker rule applied to every
	// dependency target (each Redis primary or replica gets its own breaker
	// with this rule).
	Breaker BreakerConfig `koanf:"breaker"`
}

// IngressConfig limits the publish API (layer 1). Over the limit, Publish
// returns a *Blocked the server turns into 429 with Retry-After.
type IngressConfig struct {
	// PublishQPS is the publish rate allowed per tenant key (the API key or
	// token principal the server passes to Publish), in events per second.
	// 0 means unlimited; otherwise at least MinQPS. Fractional rates below
	// 1 are enforced over a longer bucket (0.2 = 1 per 5 s). Default 2500:
	// about 90% of the most single-event publishes one node acknowledged
	// on the reference machine (2 vCPUs, Redis and the clients beside it:
	// 2,830/s over 10,000 topics, `deploy/local/bench.sh publishmax`), so
	// one tenant at 2,000/s is never refused while a flood from one tenant
	// is refused before the node itself saturates.
	PublishQPS float64 `koanf:"publish_qps"`
	// Tenants overrides PublishQPS per tenant key; 0 means unlimited for
	// that tenant.
	Tenants map[string]float64 `koanf:"tenants"`
	// TopicQPS is the publish rate allowed per topic across all tenants
	// (the hot-topic limit), in events per second. 0 means off. Default
	// 1000: a topic with 1,000 subscribers at that rate is a million
	// deliveries per second, what one node delivers at most on the
	// reference machine (max1k: 0.66–0.86 million/s).
	TopicQPS int64 `koanf:"topic_qps"`
	// Topics overrides TopicQPS per topic; 0 means unlimited for that topic.
	Topics map[string]int64 `koanf:"topics"`
	// Burst is how far a key may run ahead of its rate at once, as time at
	// that rate (PublishQPS 2500 with Burst 1s: 2,500 publishes on top of
	// a second's 2,500), without raising the sustained rate. A client
	// that falls behind its pace while the node stalls (a collection, a
	// busy core) catches up in a burst; the limiter counts in one-second
	// buckets, so without a burst the catch-up is refused although the
	// client's rate never exceeded the limit. Default 1s: measured on the
	// reference machine (shared, load 10-15), one tenant at 2,000/s over
	// 10,000 topics beside 10,000 streams (topics10k) got 1,151 and 3,477
	// of 40,000 publishes refused by a 2,500/s limit without a burst, and
	// 55 and 315 with a 500ms one. 0 means none. Ignored with
	// Throttle. With per-key overrides (Tenants, Topics) every key of the
	// rule gets the burst of its slowest rate.
	Burst time.Duration `koanf:"burst"`
	// Throttle, when true, paces publishes over the limit (each waits for
	// its slot, up to MaxQueueing) instead of rejecting them at once. Rates
	// must then be at most MaxThrottledQPS.
	Throttle bool `koanf:"throttle"`
	// MaxQueueing bounds how long a throttled publish waits for its slot;
	// beyond it the publish is rejected. Zero means DefaultMaxQueueing
	// (500ms). Ignored unless Throttle.
	MaxQueueing time.Duration `koanf:"max_queueing"`
	// TrackedKeys bounds the tenant and topic keys whose buckets are kept
	// (per limit, least recently used evicted first; from 4,096 keys the
	// store is 16 shards, each evicting its own least recently used, and
	// may hold up to 15 keys more; ADR 0033). A key evicted starts again
	// with a full bucket. Zero means DefaultTrackedKeys (10000).
	TrackedKeys int `koanf:"tracked_keys"`
}

// AdmissionConfig decides which new streams a node accepts (layer 2).
// Refusals become 503 + Retry-After for API clients, or a browser-safe
// close with a `retry:` hint for EventSource; that choice is the server's.
type AdmissionConfig struct {
	// ConnectRate is the number of new streams per second one node admits.
	// 0 means unlimited; otherwise at least 1. Default 2000: the most
	// streams per second one node opened on the reference machine with
	// Redis and the clients beside it (1,900/s at ~300 µs of node CPU
	// each, `deploy/local/bench.sh connectmax`); faster, the connect phase
	// saturates both cores and the Redis breaker has opened on its own
	// calls. A fresh node takes 2,000 streams opened at 1,000/s with none
	// shed; a storm of 10,000 in one second is spread over 5 s.
	ConnectRate float64 `koanf:"connect_rate"`
	// WarmUp is how long a cold node takes to ramp its connect rate from
	// ConnectRate/ColdFactor to ConnectRate under sustained load (sentinel's
	// token-bucket warm-up, as in Guava). A node idle long enough cools
	// down again. Rounded up to whole seconds; 0 means no warm-up. Default
	// 0: a fresh node's connects cost about what a warm one's do (250 µs
	// of CPU per stream for the first 2,000, 205–220 µs for the next
	// waves, measured on one node), well inside ConnectRate's margin; a
	// warm-up from a third of the rate shed most of a fresh node's first
	// connects for no such cost.
	WarmUp time.Duration `koanf:"warm_up"`
	// ColdFactor is how many times slower a cold node admits than a warm
	// one. Zero means DefaultColdFactor (3); otherwise at least 2.
	ColdFactor int `koanf:"cold_factor"`
	// MaxStreams caps the streams open at once on one node. 0 means no cap.
	// Default 19000: under a 20,000 open-file limit, with room for Redis,
	// gossip and publish connections; at ~30 KiB per idle stream (idle10k)
	// that is ~560 MiB.
	MaxStreams int `koanf:"max_streams"`
	// MaxStreamsPerIP caps the streams open at once from one client IP on
	// one node. 0 means no cap. Default 0: a per-address cap refuses every
	// client behind one NAT or proxy unless trusted_proxies is set.
	MaxStreamsPerIP int `koanf:"max_streams_per_ip"`
	// MaxRequestsPerIP caps the non-stream requests (publish, history,
	// topic info, presence, admin) in flight at once from one client IP on
	// one node; a request over it gets 429 and its connection is closed.
	// Requests hold their connection for at most the body timeout, so this
	// bounds what slow or stalled bodies from one address can hold. 0 means
	// no cap.
	MaxRequestsPerIP int `koanf:"max_requests_per_ip"`
	// MaxCPU sheds handshakes while this process's CPU use is above it, in
	// percent of one core (100 = one core busy; a 2-core box saturates at
	// 200). 0 means off. Enabling it starts sentinel's CPU collector (one
	// goroutine for the life of the process).
	MaxCPU float64 `koanf:"max_cpu"`
	// MaxLoad sheds handshakes while the host's 1-minute load average is
	// above it. 0 means off. Enabling it starts sentinel's load collector
	// (one goroutine for the life of the process).
	MaxLoad float64 `koanf:"max_load"`
	// StrictSystem, when true, sheds every handshake while MaxCPU or MaxLoad
	// is exceeded. False (the default) applies sentinel's BBR check: shed
	// only while handshakes in flight exceed what the node has been
	// completing (max completions/s × min handshake time), so a CPU spike
	// that is not backing handshakes up does not refuse clients.
	StrictSystem bool `koanf:"strict_system"`
	// MaxSchedDelay sheds handshakes (reason "starved") while this
	// process's p99 scheduling delay over the last second — how long its
	// runnable goroutines waited for a CPU (runtime/metrics
	// /sched/latencies:seconds) — is above it: a CPU-starved node refuses
	// new streams itself instead of letting its dependency calls look slow
	// (the breakers excuse that delay, ADR 0027). 0 (the default) means
	// off; RecommendedMaxSchedDelay (500ms) suits production builds.
	MaxSchedDelay time.Duration `koanf:"max_sched_delay"`
	// BusyRetryAfter is the Retry-After hint given when a stream is refused
	// for streams, per_ip, system or starved (when it is over is unknown). Zero means
	// DefaultBusyRetryAfter (5s).
	BusyRetryAfter time.Duration `koanf:"busy_retry_after"`
}

// ReplayConfig caps concurrent replays (the store reads that catch a
// reconnecting stream up), the expensive part of a reconnect storm.
type ReplayConfig struct {
	// MaxConcurrent is the number of replays running at once on one node.
	// 0 means no cap.
	MaxConcurrent int `koanf:"max_concurrent"`
	// MaxWait is how long a replay waits for a slot before it is refused
	// with reason replay_wait. 0 means no waiting: refuse at once when full.
	MaxWait time.Duration `koanf:"max_wait"`
}

// BreakerConfig is the circuit-breaker rule applied to each dependency
// target (layer 4). A breaker opens when, within Window and after at least
// MinRequests calls, the error ratio reaches ErrorRatio or the ratio of
// calls slower than SlowThreshold reaches SlowRatio. While open, calls fail
// fast; after RetryTimeout it lets probes through (half-open) and closes on
// success or reopens on failure.
type BreakerConfig struct {
	// ErrorRatio in (0, 1] opens the breaker at this share of failed calls.
	// 0 disables the error rule.
	ErrorRatio float64 `koanf:"error_ratio"`
	// SlowRatio in (0, 1] opens the breaker at this share of slow calls.
	// 0 disables the slow-call rule.
	SlowRatio float64 `koanf:"slow_ratio"`
	// SlowThreshold is the duration above which a call counts as slow
	// (millisecond resolution). Zero means DefaultSlowThreshold (300ms).
	SlowThreshold time.Duration `koanf:"slow_threshold"`
	// MinRequests is the number of calls within Window before either ratio
	// is evaluated. Zero means DefaultMinRequests (20).
	MinRequests uint64 `koanf:"min_requests"`
	// Window is the sliding statistics window (millisecond resolution, at
	// most MaxWindow). Zero means DefaultWindow (10s).
	Window time.Duration `koanf:"window"`
	// RetryTimeout is how long the breaker stays open before probing
	// (millisecond resolution, at most MaxWindow). Zero means
	// DefaultRetryTimeout (5s).
	RetryTimeout time.Duration `koanf:"retry_timeout"`
	// ProbeNum is the number of successful calls in half-open state needed
	// to close. 0 (the default) lets exactly one probe through and fails
	// every other call fast until it completes; N ≥ 1 is sentinel's mode
	// where every call passes while half-open and N successes close the
	// breaker (any failure reopens it).
	ProbeNum uint64 `koanf:"probe_num"`
}

// DefaultConfig returns production defaults for one node, derived from
// capacity measured on the reference machine (2 vCPUs shared by the node,
// Redis and the load generator; each field's comment names the
// measurement, docs/benchmarks.md the commands). A larger machine can take
// proportionally more; calibrate there with deploy/local/bench.sh
// connectmax publishmax (docs/adr/0005-protection-layers.md).
//
//   - ingress: 2,500 publishes/s per tenant, 1,000/s per topic, rejecting,
//     each allowed a second's worth on top in a burst.
//   - admission: 2,000 new streams/s with no warm-up, 19,000 streams per
//     node, no per-IP stream cap (offices and mobile carriers share
//     addresses), system shedding off (CPU and load thresholds are
//     machine-specific and their collectors are goroutines for the life
//     of the process), BusyRetryAfter 5 s.
//   - replay: 32 concurrent replays, waiting up to 2 s for a slot.
//   - breaker: open at 50% errors or 50% calls slower than 1 s within
//     10 s after 20 calls, probe after 5 s, one probe at a time.
func DefaultConfig() Config {
	return Config{
		Ingress: IngressConfig{
			PublishQPS:  2500,
			TopicQPS:    1000,
			Burst:       time.Second,
			MaxQueueing: DefaultMaxQueueing,
			TrackedKeys: DefaultTrackedKeys,
		},
		Admission: AdmissionConfig{
			ConnectRate: 2000,
			ColdFactor:  DefaultColdFactor,
			MaxStreams:  19000,
			// A publish takes about a millisecond: 256 in flight from
			// one address is ~250,000 publishes/s, far above any one
			// publisher, and bounds slow bodies from it to 256
			// connections.
			MaxRequestsPerIP: 256,
			BusyRetryAfter:   DefaultBusyRetryAfter,
		},
		Replay: ReplayConfig{
			MaxConcurrent: 32,
			MaxWait:       2 * time.Second,
		},
		Breaker: BreakerConfig{
			ErrorRatio: 0.5,
			SlowRatio:  0.5,
			// A CPU-starved node sees its own Redis calls as slow
			// (measured: the overload bench and a 1,000/s connect storm
			// tripped a 300 ms threshold on 2 cores); 1 s still catches a
			// Redis that is really sick.
			SlowThreshold: time.Second,
			MinRequests:   DefaultMinRequests,
			Window:        DefaultWindow,
			RetryTimeout:  DefaultRetryTimeout,
		},
	}
}

// Validate checks every field and reports all problems at once, each
// naming the koanf key and the offending value.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	in := c.Ingress
	checkRate := func(key string, v float64) {
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0) || v < 0:
			add("%s %v: want 0 (unlimited) or a rate ≥ %.4f", key, v, MinQPS)
		case v > 0 && v < MinQPS:
			add("%s %v: want 0 (unlimited) or a rate ≥ %.4f (one per minute)", key, v, MinQPS)
		case in.Throttle && v > MaxThrottledQPS:
			add("%s %v: with ingress.throttle the rate must be ≤ %d (sentinel paces in whole milliseconds)", key, v, MaxThrottledQPS)
		case v > unlimitedTokens:
			add("%s %v: too large (max %d)", key, v, unlimitedTokens)
		}
	}
	checkRate("ingress.publish_qps", in.PublishQPS)
	for _, k := range slices.Sorted(maps.Keys(in.Tenants)) {
		checkRate(fmt.Sprintf("ingress.tenants[%q]", k), in.Tenants[k])
	}
	checkRate("ingress.topic_qps", float64(in.TopicQPS))
	for _, k := range slices.Sorted(maps.Keys(in.Topics)) {
		checkRate(fmt.Sprintf("ingress.topics[%q]", k), float64(in.Topics[k]))
	}
	if in.MaxQueueing < 0 {
		add("ingress.max_queueing %s: want ≥ 0", in.MaxQueueing)
	} else if in.Throttle && in.MaxQueueing > 0 && in.MaxQueueing < time.Millisecond {
		add("ingress.max_queueing %s: want ≥ 1ms (millisecond resolution)", in.MaxQueueing)
	}
	if in.Burst < 0 || in.Burst > time.Minute {
		add("ingress.burst %s: want 0 (none) to 1m", in.Burst)
	}
	if in.TrackedKeys < 0 {
		add("ingress.tracked_keys %d: want ≥ 0", in.TrackedKeys)
	}

	ad := c.Admission
	if math.IsNaN(ad.ConnectRate) || math.IsInf(ad.ConnectRate, 0) || ad.ConnectRate < 0 || (ad.ConnectRate > 0 && ad.ConnectRate < 1) {
		add("admission.connect_rate %v: want 0 (unlimited) or ≥ 1 per second", ad.ConnectRate)
	}
	if ad.WarmUp < 0 || ad.WarmUp > time.Hour {
		add("admission.warm_up %s: want 0 (none) to 1h", ad.WarmUp)
	}
	if ad.ColdFactor < 0 || ad.ColdFactor == 1 || ad.ColdFactor > 100 {
		add("admission.cold_factor %d: want 0 (default %d) or 2..100", ad.ColdFactor, DefaultColdFactor)
	}
	if ad.ConnectRate >= 1 && ad.WarmUp > 0 && ad.ColdFactor >= 0 && ad.ColdFactor != 1 {
		// sentinel's warm-up divides by (maxToken - warningToken), which
		// truncates to 0 when warm_up × rate is too small.
		cf := ad.ColdFactor
		if cf == 0 {
			cf = DefaultColdFactor
		}
		sec := warmUpSeconds(ad.WarmUp)
		if uint64(2*float64(sec)*ad.ConnectRate/float64(1+cf)) < 1 {
			add("admission.warm_up %s with connect_rate %v and cold_factor %d is too short: need warm_up(s) × connect_rate ≥ (1+cold_factor)/2", ad.WarmUp, ad.ConnectRate, cf)
		}
	}
	if ad.MaxStreams < 0 {
		add("admission.max_streams %d: want ≥ 0 (0 = no cap)", ad.MaxStreams)
	}
	if ad.MaxRequestsPerIP < 0 {
		add("admission.max_requests_per_ip %d: want ≥ 0 (0 = no cap)", ad.MaxRequestsPerIP)
	}
	if ad.MaxStreamsPerIP < 0 {
		add("admission.max_streams_per_ip %d: want ≥ 0 (0 = no cap)", ad.MaxStreamsPerIP)
	}
	if ad.MaxSchedDelay < 0 {
		add("admission.max_sched_delay %v: want ≥ 0 (0 = off)", ad.MaxSchedDelay)
	}
	if math.IsNaN(ad.MaxCPU) || ad.MaxCPU < 0 {
		add("admission.max_cpu %v: want 0 (off) or a percentage of one core (100 = one core)", ad.MaxCPU)
	} else if ad.MaxCPU > 0 && ad.MaxCPU <= 1 {
		add("admission.max_cpu %v: is a percentage of one core (100 = one core), not a ratio", ad.MaxCPU)
	}
	if math.IsNaN(ad.MaxLoad) || ad.MaxLoad < 0 {
		add("admission.max_load %v: want ≥ 0 (0 = off)", ad.MaxLoad)
	}
	if ad.BusyRetryAfter < 0 {
		add("admission.busy_retry_after %s: want ≥ 0", ad.BusyRetryAfter)
	}

	rp := c.Replay
	if rp.MaxConcurrent < 0 {
		add("replay.max_concurrent %d: want ≥ 0 (0 = no cap)", rp.MaxConcurrent)
	}
	if rp.MaxWait < 0 {
		add("replay.max_wait %s: want ≥ 0 (0 = do not wait)", rp.MaxWait)
	}

	br := c.Breaker
	for _, r := range []struct {
		key string
		v   float64
	}{{"breaker.error_ratio", br.ErrorRatio}, {"breaker.slow_ratio", br.SlowRatio}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			add("%s %v: want 0 (off) or a ratio in (0, 1]", r.key, r.v)
		}
	}
	checkMs := func(key string, d, max time.Duration) {
		if d < 0 || (d > 0 && d < time.Millisecond) || d > max {
			add("%s %s: want 0 (default) or 1ms..%s", key, d, max)
		}
	}
	checkMs("breaker.slow_threshold", br.SlowThreshold, time.Hour)
	checkMs("breaker.window", br.Window, MaxWindow)
	checkMs("breaker.retry_timeout", br.RetryTimeout, MaxWindow)
	return errors.Join(errs...)
}

// withDefaults returns a deep copy of c with zero shape fields replaced by
// their defaults. c must be valid.
func (c Config) withDefaults() Config {
	n := c
	n.Ingress.Tenants = maps.Clone(c.Ingress.Tenants)
	n.Ingress.Topics = maps.Clone(c.Ingress.Topics)
	if n.Ingress.MaxQueueing == 0 {
		n.Ingress.MaxQueueing = DefaultMaxQueueing
	}
	if n.Ingress.TrackedKeys == 0 {
		n.Ingress.TrackedKeys = DefaultTrackedKeys
	}
	if n.Admission.ColdFactor == 0 {
		n.Admission.ColdFactor = DefaultColdFactor
	}
	if n.Admission.BusyRetryAfter == 0 {
		n.Admission.BusyRetryAfter = DefaultBusyRetryAfter
	}
	if n.Breaker.SlowThreshold == 0 {
		n.Breaker.SlowThreshold = DefaultSlowThreshold
	}
	if n.Breaker.MinRequests == 0 {
		n.Breaker.MinRequests = DefaultMinRequests
	}
	if n.Breaker.Window == 0 {
		n.Breaker.Window = DefaultWindow
	}
	if n.Breaker.RetryTimeout == 0 {
		n.Breaker.RetryTimeout = DefaultRetryTimeout
	}
	return n
}

// warmUpSeconds rounds a warm-up period up to whole seconds.
func warmUpSeconds(d time.Duration) uint32 {
	return uint32((d + time.Second - 1) / time.Second)
}
