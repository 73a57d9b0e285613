package resilience

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alibaba/sentinel-golang/core/base"
)

// Options are the non-configuration inputs of New.
type Options struct {
	// Name identifies this Guards in logs (e.g. the node name). Sentinel
	// resources are namespaced with Name plus a random instance suffix, so
	// two Guards in one process never share statistics or rules, whatever
	// their names. Letters, digits and ._:- only, at most 64 bytes; empty
	// means "guards".
	Name string
	// Logger receives breaker state changes (once per change) and, while
	// this is the oldest live Guards in the process, sentinel's own lines.
	// Nil discards.
	Logger *slog.Logger
	// OnEvent, when set, is called for every block, trip, half-open and
	// recovery, synchronously on the goroutine that caused it — for breaker
	// transitions that is inside a sentinel call. It must be cheap and must
	// not block: increment a metric, or hand off to a bounded queue.
	OnEvent func(Event)
	// IsFailure classifies a non-nil error returned to Breaker.Do: true
	// counts it against the breaker. Nil counts every error. Errors caused
	// by the caller cancelling its context never reach IsFailure and never
	// count. Use it to exempt "not found" (redis.Nil) and validation errors.
	IsFailure func(error) bool
}

// Guards is the set of protection layers of one node. It is safe for
// concurrent use. Build it with New and release it with Close.
type Guards struct {
	name        string
	ns          string // sentinel resource prefix: name + "~" + random suffix
	log         *slog.Logger
	sentinelLog *slog.Logger
	onEvent     func(Event)
	isFailure   func(error) bool

	resPublish   string // sentinel resource of layer 1
	resHandshake string // sentinel resource of layer 2's rate and system checks

	// Slot chains of the publish path's entries (sentinel.go), built in New.
	ingressChain   *base.SlotChain
	breakerChain   *base.SlotChain
	admissionChain *base.SlotChain
	rwPublish      *base.ResourceWrapper // resPublish's, built once (ingress.go)
	rwHandshake    *base.ResourceWrapper // resHandshake's, built once (admission.go)
	passes         passPool              // layer 1's entries (ingress.go)

	cfg atomic.Pointer[Config] // current configuration with defaults filled in

	streams atomic.Int64 // admitted streams not yet Done
	perIP   ipCounts
	// perIPRequests counts non-stream requests in flight per client IP.
	perIPRequests ipCounts
	replay        *limiter

	counters counterSet
	sched    *schedMonitor // this process's scheduling delay (starvation.go)

	mu       sync.Mutex // serialises New/Reload/Close/Breaker creation; guards fields below
	closed   bool
	breakers map[string]*Breaker
}

// New validates cfg, initialises sentinel on first use in the process and
// loads this Guards' rules.
func New(cfg Config, opts Options) (*Guards, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	name := opts.Name
	if name == "" {
		name = "guards"
	}
	if err := validName(name); err != nil {
		return nil, err
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:]) // crypto/rand.Read never fails
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Guards{
		name:        name,
		ns:          name + "~" + hex.EncodeToString(suffix[:]),
		log:         logger.With("component", "resilience", "guards", name),
		sentinelLog: logger.With("component", "sentinel"),
		onEvent:     opts.OnEvent,
		isFailure:   opts.IsFailure,
		breakers:    make(map[string]*Breaker),
	}
	if g.isFailure == nil {
		g.isFailure = func(error) bool { return true }
	}
	g.resPublish = g.ns + "/" + LayerIngress + "/" + ResourcePublish
	g.resHandshake = g.ns + "/" + LayerAdmission + "/" + ResourceConnect
	g.ingressChain, g.breakerChain, g.admissionChain = newIngressChain(), newBreakerChain(), newAdmissionChain()
	g.rwPublish = base.NewResourceWrapper(g.resPublish, base.ResTypeCommon, base.Outbound)
	g.rwHandshake = base.NewResourceWrapper(g.resHandshake, base.ResTypeCommon, base.Outbound)
	g.perIP.init()
	g.perIPRequests.init()

	n := cfg.withDefaults()
	g.replay = newLimiter(n.Replay.MaxConcurrent)
	if err := reg.register(g); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.apply(&n); err != nil {
		g.clearRulesLocked()
		reg.unregister(g)
		return nil, err
	}
	g.sched = newSchedMonitor()
	return g, nil
}

func validName(s string) error {
	if len(s) > 64 {
		return fmt.Errorf("resilience: name %q: longer than 64 bytes", s)
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return fmt.Errorf("resilience: name %q: want letters, digits and ._:- only", s)
		}
	}
	return nil
}

// Reload validates cfg and swaps every rule to it, keeping statistics:
// token buckets, breaker windows, open streams and replay slots carry over.
// Each sentinel resource's rules swap atomically; the layers are swapped
// one after another (a call racing Reload may see layer 1 new and layer 4
// old). Caps lowered below the current usage refuse new work until usage
// drops; nothing admitted is cut off. A breaker whose rule changed restarts
// closed (sentinel builds a new state machine; its statistics are kept); a
// warm-up whose rate or period changed restarts cold. On error nothing
// changed, or — only if sentinel refused a rule, which Validate should
// prevent — the error says which layer.
func (g *Guards) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	n := cfg.withDefaults()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	return g.apply(&n)
}

// apply loads n's rules and makes n current. g.mu must be held.
func (g *Guards) apply(n *Config) error {
	if err := loadIngressRules(g.resPublish, &n.Ingress); err != nil {
		return err
	}
	if err := loadAdmissionRules(g.resHandshake, &n.Admission); err != nil {
		return err
	}
	reg.startCollectors(n.Admission.MaxCPU > 0, n.Admission.MaxLoad > 0)
	g.replay.resize(n.Replay.MaxConcurrent)
	var errs []error
	for _, target := range slices.Sorted(maps.Keys(g.breakers)) {
		if err := g.breakers[target].load(&n.Breaker); err != nil {
			errs = append(errs, err)
		}
	}
	g.cfg.Store(n)
	return errors.Join(errs...)
}

// Close removes every sentinel rule of this Guards and detaches its
// breakers from sentinel's listener. It is idempotent. Calls made after
// Close are no longer guarded (they pass), and replays waiting for a slot
// are let through, so that shutdown never wedges on a guard.
func (g *Guards) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.clearRulesLocked()
	g.mu.Unlock()
	g.sched.close()
	g.replay.resize(0)
	reg.unregister(g)
	return nil
}

// clearRulesLocked drops every rule of g from sentinel. g.mu must be held.
func (g *Guards) clearRulesLocked() {
	clearIngressRules(g.resPublish)
	clearAdmissionRules(g.resHandshake)
	for _, b := range g.breakers {
		b.clear()
	}
}

// Name returns Options.Name (or its default).
func (g *Guards) Name() string { return g.name }

// Counters returns how often each layer blocked, tripped or recovered since
// New, keyed "layer/resource/reason/kind", e.g.
// "ingress/publish/tenant_qps/block", "dependency/primary/error_ratio/trip".
// Only keys that occurred are present.
func (g *Guards) Counters() map[string]uint64 { return g.counters.snapshot() }

// emit counts an event and passes it to Options.OnEvent.
func (g *Guards) emit(layer, resource, reason, kind string) {
	g.counters.inc(counterKey{layer, resource, reason, kind})
	if g.onEvent != nil {
		g.onEvent(Event{Layer: layer, Resource: resource, Reason: reason, Kind: kind, At: time.Now()})
	}
}

// block counts a block and returns its decision.
func (g *Guards) block(layer, resource, reason string, retryAfter time.Duration) *Blocked {
	g.emit(layer, resource, reason, KindBlock)
	return &Blocked{Layer: layer, Resource: resource, Reason: reason, RetryAfter: max(retryAfter, minRetryAfter)}
}

type counterKey struct{ layer, resource, reason, kind string }

// counterSet is a map of monotonically increasing counters; lookups of
// existing keys take only the read lock and do not allocate.
type counterSet struct {
	mu sync.RWMutex
	m  map[counterKey]*atomic.Uint64
}

func (s *counterSet) inc(k counterKey) {
	s.mu.RLock()
	c := s.m[k]
	s.mu.RUnlock()
	if c == nil {
		s.mu.Lock()
		if s.m == nil {
			s.m = make(map[counterKey]*atomic.Uint64)
		}
		if c = s.m[k]; c == nil {
			c = new(atomic.Uint64)
			s.m[k] = c
		}
		s.mu.Unlock()
	}
	c.Add(1)
}

func (s *counterSet) snapshot() map[string]uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]uint64, len(s.m))
	for k, c := range s.m {
		out[k.layer+"/"+k.resource+"/"+k.reason+"/"+k.kind] = c.Load()
	}
	return out
}
