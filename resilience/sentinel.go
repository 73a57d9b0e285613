package resilience

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/alibaba/sentinel-golang/api"
	"github.com/alibaba/sentinel-golang/core/base"
	"github.com/alibaba/sentinel-golang/core/circuitbreaker"
	"github.com/alibaba/sentinel-golang/core/config"
	"github.com/alibaba/sentinel-golang/core/flow"
	"github.com/alibaba/sentinel-golang/core/hotspot"
	"github.com/alibaba/sentinel-golang/core/stat"
	"github.com/alibaba/sentinel-golang/core/system_metric"
	"github.com/alibaba/sentinel-golang/util"
)

// This file is the only place that touches sentinel's process-global setup:
// initialisation, its logger and circuit-breaker state listeners. Rule
// managers are touched per resource (LoadRulesOfResource) by the Guards that
// own those resources, never with the replace-everything LoadRules.

// sentinelApp is the application name given to sentinel (it only appears
// in sentinel's own log lines).
const sentinelApp = "herald"

// collectIntervalMs is the period of sentinel's CPU and load collectors.
const collectIntervalMs = 1000

// reg is this package's one piece of process-wide mutable state. Sentinel
// itself is process-global (rule managers, statistics, one logger, one
// list of breaker listeners), so something has to remember, across all live
// Guards, that sentinel was initialised, which logger receives its messages
// and which Breaker owns a sentinel resource. Every field is guarded by mu
// except where noted.
var reg = &registry{breakers: make(map[string]*Breaker)}

type registry struct {
	mu          sync.Mutex
	initialized bool      // api.InitWithConfig and the breaker listener are done (once per process)
	live        []*Guards // open Guards in creation order; the oldest one's logger gets sentinel's lines

	bmu      sync.RWMutex        // guards breakers; read on every breaker state change
	breakers map[string]*Breaker // sentinel resource name → owning breaker

	logger atomic.Pointer[slog.Logger] // where sentinel's own log lines go; nil = dropped
}

// register initialises sentinel on first use and records g as live.
func (r *registry) register(g *Guards) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.initialized {
		if len(r.live) == 0 {
			r.logger.Store(g.sentinelLog) // sentinel logs while initialising
		}
		if err := initSentinel(); err != nil {
			r.logger.Store(nil)
			return fmt.Errorf("resilience: init sentinel: %w", err)
		}
		// One listener for the life of the process, dispatching by
		// resource name. Registered before any breaker rule exists:
		// sentinel reads its listener slice without a lock.
		circuitbreaker.RegisterStateChangeListeners(stateListener{r})
		// Layer 1's controllers, before any hotspot rule is loaded.
		if err := registerShaping(); err != nil {
			r.logger.Store(nil)
			return fmt.Errorf("resilience: sentinel hotspot controllers: %w", err)
		}
		r.initialized = true
	}
	r.live = append(r.live, g)
	r.logger.Store(r.live[0].sentinelLog)
	return nil
}

// unregister forgets g; its breakers must already be dropped.
func (r *registry) unregister(g *Guards) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live = slices.DeleteFunc(r.live, func(x *Guards) bool { return x == g })
	if len(r.live) == 0 {
		r.logger.Store(nil)
		return
	}
	r.logger.Store(r.live[0].sentinelLog)
}

// startCollectors starts sentinel's CPU and/or load collectors. Each is a
// goroutine started at most once per process that never stops (sentinel
// offers no stop); see doc.go.
func (r *registry) startCollectors(cpu, load bool) {
	if cpu {
		system_metric.InitCpuCollector(collectIntervalMs)
	}
	if load {
		system_metric.InitLoadCollector(collectIntervalMs)
	}
}

func (r *registry) addBreaker(b *Breaker) {
	r.bmu.Lock()
	r.breakers[b.res] = b
	r.bmu.Unlock()
}

func (r *registry) dropBreaker(b *Breaker) {
	r.bmu.Lock()
	if r.breakers[b.res] == b {
		delete(r.breakers, b.res)
	}
	r.bmu.Unlock()
}

func (r *registry) breaker(res string) *Breaker {
	r.bmu.RLock()
	defer r.bmu.RUnlock()
	return r.breakers[res]
}

// initSentinel initialises sentinel without a config file, without log or
// metric files, without an HTTP exporter and without background goroutines.
// Environment variables SENTINEL_* still override the app name and type
// (sentinel applies them unconditionally); the log directory they may set
// is unused because a logger is configured.
func initSentinel() error {
	c := config.NewDefaultConfig()
	c.Sentinel.App.Name = sentinelApp
	c.Sentinel.Log.Logger = sentinelLogger{reg}
	c.Sentinel.Log.Metric.FlushIntervalSec = 0         // no metric log writer, no files
	c.Sentinel.Stat.System = config.SystemStatConfig{} // collectors start on demand (startCollectors)
	c.Sentinel.Exporter.Metric.HttpAddr = ""           // never an HTTP server on DefaultServeMux
	c.Sentinel.UseCacheTime = false                    // no time-ticker goroutine
	return api.InitWithConfig(c)
}

// sentinelLogger routes sentinel's logging.Logger calls to the registry's
// current slog logger. Sentinel logs every rule load at Info, which becomes
// Debug here so that a reload does not flood the log; its Debug lines are
// per call (e.g. one per hotspot check) and become levelSentinelDebug,
// below slog's Debug, so that they appear only when asked for.
type sentinelLogger struct{ r *registry }

// levelSentinelDebug is the slog level of sentinel's Debug lines.
const levelSentinelDebug = slog.LevelDebug - 4

func (l sentinelLogger) log(level slog.Level, err error, msg string, kv []any) {
	lg := l.r.logger.Load()
	if lg == nil || !lg.Enabled(context.Background(), level) {
		return
	}
	if err != nil {
		kv = append(kv, "err", err)
	}
	lg.Log(context.Background(), level, msg, kv...)
}

func (l sentinelLogger) enabled(level slog.Level) bool {
	lg := l.r.logger.Load()
	return lg != nil && lg.Enabled(context.Background(), level)
}

func (l sentinelLogger) Debug(msg string, kv ...any) { l.log(levelSentinelDebug, nil, msg, kv) }
func (l sentinelLogger) DebugEnabled() bool          { return l.enabled(levelSentinelDebug) }
func (l sentinelLogger) Info(msg string, kv ...any)  { l.log(slog.LevelDebug, nil, msg, kv) }
func (l sentinelLogger) InfoEnabled() bool           { return l.enabled(slog.LevelDebug) }
func (l sentinelLogger) Warn(msg string, kv ...any)  { l.log(slog.LevelWarn, nil, msg, kv) }
func (l sentinelLogger) WarnEnabled() bool           { return l.enabled(slog.LevelWarn) }
func (l sentinelLogger) Error(err error, msg string, kv ...any) {
	l.log(slog.LevelError, err, msg, kv)
}
func (l sentinelLogger) ErrorEnabled() bool { return l.enabled(slog.LevelError) }

// stateListener is the single process-wide circuit-breaker listener. It
// runs synchronously inside sentinel's Entry/Exit on the caller's
// goroutine, so it only looks the breaker up and hands the transition over.
type stateListener struct{ r *registry }

func (l stateListener) OnTransformToClosed(prev circuitbreaker.State, rule circuitbreaker.Rule) {
	if b := l.r.breaker(rule.Resource); b != nil {
		b.transition(rule, prev, circuitbreaker.Closed)
	}
}

func (l stateListener) OnTransformToOpen(prev circuitbreaker.State, rule circuitbreaker.Rule, _ any) {
	if b := l.r.breaker(rule.Resource); b != nil {
		b.transition(rule, prev, circuitbreaker.Open)
	}
}

func (l stateListener) OnTransformToHalfOpen(prev circuitbreaker.State, rule circuitbreaker.Rule) {
	if b := l.r.breaker(rule.Resource); b != nil {
		b.transition(rule, prev, circuitbreaker.HalfOpen)
	}
}

// Layers 1 and 4 enter sentinel on every publish (the ingress check, then
// the Redis breaker around the append), so their entries run slot chains
// of their own holding only the slots whose rules they use, instead of
// sentinel's global chain (ADR 0028). The global chain would also run, per
// entry: the resource's statistic node (a sliding window this package
// never reads for these resources), sentinel's Prometheus counter of
// handled entries (label hashing per call), its log slot, and the
// look-ups of flow, isolation and system rules that no one loads on these
// resources. Each of those reads the clock again (sentinel's clock cache is
// off: it would be a goroutine ticking every millisecond for the life of
// the process). The rules these resources do carry are checked exactly as
// before. The chains are built once per Guards and only read afterwards.

// newIngressChain is layer 1's chain: the hotspot (per-parameter) check.
// Its rules are QPS rules only, so the hotspot concurrency statistic slot,
// which only counts for concurrency rules (and looks the resource's rules
// up twice per entry to find none), is left out (ADR 0033).
func newIngressChain() *base.SlotChain {
	sc := base.NewSlotChain()
	sc.AddRuleCheckSlot(hotspot.DefaultSlot)
	return sc
}

// newBreakerChain is layer 4's chain: the circuit-breaker check and the
// circuit-breaker statistic slot that feeds the breakers. Breaker.Do puts
// the call's excused response time on the entry context before Exit; no
// slot of this chain writes the wall time over it (sentinel's statistic
// slot would, and is left out). A call whose time Do did not set is
// measured as wall time by the entry context itself.
func newBreakerChain() *base.SlotChain {
	sc := base.NewSlotChain()
	sc.AddRuleCheckSlot(circuitbreaker.DefaultSlot)
	sc.AddStatSlot(circuitbreaker.DefaultMetricStatSlot)
	return sc
}

// enterChain opens an entry of n on resource rw through slot chain sc:
// the steps of sentinel's api.Entry, with the resource wrapper built once
// by its owner and the chain of its own (api.Entry builds the wrapper and
// its options per call and runs the global chain). A blocked entry is
// exited here and only its block error returned.
func enterChain(sc *base.SlotChain, rw *base.ResourceWrapper, n uint32, args []any) (*base.SentinelEntry, *base.BlockError) {
	ctx := sc.GetPooledContext()
	ctx.Resource = rw
	ctx.Input.BatchCount = n
	if len(args) > 0 {
		ctx.Input.Args = args
	}
	e := base.NewSentinelEntry(ctx, rw, sc)
	ctx.SetEntry(e)
	r := sc.Entry(ctx)
	if r != nil && r.Status() == base.ResultStatusBlocked {
		blk := base.NewBlockErrorFromDeepCopy(r.BlockError())
		e.Exit()
		return nil, blk
	}
	return e, nil
}

// newAdmissionChain is layer 2's chain, for the handshake entry of every
// stream (ADR 0028, amendment of session 14): the resource's statistic
// node (prepare slot), the connect-rate flow check, and handshakeStatSlot,
// which writes the passes the flow check counts and the handshakes in
// flight, completions and response times the system check's BBR condition
// reads (systemOverloaded). Left out: the system slot (layer
// 2 checks CPU, load and BBR itself, on its own resource; no system rule
// is ever loaded), the isolation, hotspot and circuit-breaker checks and
// their statistic slots (no such rule on this resource), the log slot,
// sentinel's own statistic slot (handshakeStatSlot writes the same
// counts, without its Prometheus counter of handled entries, which no
// registry of Herald's exports: labels built and hashed per entry),
// and the flow rule's standalone statistic slot (admissionRules always
// uses the resource node's own window, StatIntervalInMs =
// MetricStatisticIntervalMs, so there is no standalone statistic to
// write).
func newAdmissionChain() *base.SlotChain {
	sc := base.NewSlotChain()
	sc.AddStatPrepareSlot(stat.DefaultResourceNodePrepareSlot)
	sc.AddRuleCheckSlot(flow.DefaultSlot)
	sc.AddStatSlot(handshakeStatSlot{})
	return sc
}

// handshakeStatSlot is sentinel's statistic slot (stat.Slot) for an
// outbound resource, less its exporter counter: the same counts on the
// entry's resource node, in the same order.
type handshakeStatSlot struct{}

var _ base.StatSlot = handshakeStatSlot{}

func (handshakeStatSlot) Order() uint32 { return stat.StatSlotOrder }

func (handshakeStatSlot) OnEntryPassed(ctx *base.EntryContext) {
	if sn := ctx.StatNode; sn != nil {
		sn.IncreaseConcurrency()
		sn.AddCount(base.MetricEventPass, int64(ctx.Input.BatchCount))
	}
}

func (handshakeStatSlot) OnEntryBlocked(ctx *base.EntryContext, _ *base.BlockError) {
	if sn := ctx.StatNode; sn != nil {
		sn.AddCount(base.MetricEventBlock, int64(ctx.Input.BatchCount))
	}
}

func (handshakeStatSlot) OnCompleted(ctx *base.EntryContext) {
	rt := util.CurrentTimeMillis() - ctx.StartTime()
	ctx.PutRt(rt)
	sn := ctx.StatNode
	if sn == nil {
		return
	}
	n := int64(ctx.Input.BatchCount)
	if ctx.Err() != nil {
		sn.AddCount(base.MetricEventError, n)
	}
	sn.AddCount(base.MetricEventRt, int64(rt))
	sn.AddCount(base.MetricEventComplete, n)
	sn.DecreaseConcurrency()
}
