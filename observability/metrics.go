package observability

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Prometheus-exposed metric family names (histograms without the
// _bucket/_sum/_count suffixes). They are the contract with the dashboard
// and the alert rules; doc.go describes each. Every exposed series also
// carries the node's constant labels: node, and region/zone when set.
const (
	MetricStreamsOpen             = "herald_streams_open"
	MetricStreamConnects          = "herald_stream_connects_total"
	MetricStreamDisconnects       = "herald_stream_disconnects_total"
	MetricResumes                 = "herald_resumes_total"
	MetricReplayedEvents          = "herald_replayed_events"
	MetricPublishes               = "herald_publishes_total"
	MetricPublishDuration         = "herald_publish_duration_seconds"
	MetricDeliveryLatency         = "herald_delivery_latency_seconds"
	MetricQueueDepth              = "herald_queue_depth"
	MetricRedisCallDuration       = "herald_redis_call_duration_seconds"
	MetricProtectionEvents        = "herald_protection_events_total"
	MetricBreakerState            = "herald_breaker_state"
	MetricGossipMembers           = "herald_gossip_members"
	MetricGossipHealthScore       = "herald_gossip_health_score"
	MetricSessionOwnershipChanges = "herald_session_ownership_changes_total"
	MetricReplicationLag          = "herald_replication_lag_seconds"
	MetricBuildInfo               = "herald_build_info"
	MetricJWKSRefreshes           = "herald_jwks_refreshes_total"
	MetricJWKSKeys                = "herald_jwks_keys"
	MetricJWKSUnknownKID          = "herald_jwks_unknown_kid_total"
	MetricIngestLines             = "herald_ingest_lines_total"
)

// Label names set by the Metrics methods (besides the constant node, region
// and zone labels).
const (
	LabelResult    = "result"
	LabelReason    = "reason"
	LabelOutcome   = "outcome"
	LabelKind      = "kind"
	LabelOp        = "op"
	LabelTarget    = "target"
	LabelLayer     = "layer"
	LabelResource  = "resource"
	LabelState     = "state"
	LabelOrigin    = "origin"
	LabelVersion   = "version"
	LabelGoVersion = "go_version"
	// LabelTransport is a stream's transport: TransportSSE or TransportWS.
	LabelTransport = "transport"
)

// Stream transports (LabelTransport values).
const (
	TransportSSE = "sse"
	TransportWS  = "ws"
)

// Values of the enumerated labels. The series for every value listed here
// exist from Setup on (at zero), so rate() and absent() behave from the first
// scrape. Other values are accepted and recorded as given; keep them to a
// small fixed set (never ids or topics).
const (
	ConnectAccepted   = "accepted"   // stream admitted and served here
	ConnectShed       = "shed"       // refused by admission control (503 + Retry-After)
	ConnectRedirected = "redirected" // sent to a less loaded peer
	ConnectRejected   = "rejected"   // bad request or failed auth (4xx)
	ConnectError      = "error"      // internal failure

	DisconnectClient   = "client"   // the client went away
	DisconnectSlow     = "slow"     // cut off as a slow consumer (queue overflow)
	DisconnectDrain    = "drain"    // node draining: asked to reconnect elsewhere
	DisconnectAuth     = "auth"     // credentials expired or revoked
	DisconnectError    = "error"    // write or internal error
	DisconnectTakeover = "takeover" // the session reconnected elsewhere
	DisconnectAdmin    = "admin"    // closed by an operator
	DisconnectShutdown = "shutdown" // node stopping without drain

	ResumeReplayed = "replayed" // resumed exactly; missed events replayed
	ResumeReset    = "reset"    // cursor too old or epoch changed: a reset event was sent
	ResumeLive     = "live"     // no cursor: started at the live edge

	PublishOK          = "ok"          // stored and acknowledged
	PublishDuplicate   = "duplicate"   // idempotency key seen: earlier result returned
	PublishRejected    = "rejected"    // 4xx: invalid, unauthorised or rate limited
	PublishUnavailable = "unavailable" // store unavailable or breaker open (503)
	PublishError       = "error"       // internal failure

	OwnershipClaim    = "claim"    // a node took a free session
	OwnershipTakeover = "takeover" // a node took a session owned elsewhere
	OwnershipRevoke   = "revoke"   // released on disconnect or admin action
	OwnershipExpire   = "expire"   // dropped because its owner left the cluster

	JWKSRefreshOK     = "ok"      // a key set was fetched and parsed
	JWKSRefreshFailed = "failed"  // fetch or parse failed; the URL's previous keys are kept
	JWKSKIDRefresh    = "refresh" // unknown kid: a refresh was triggered
	JWKSKIDLimited    = "limited" // unknown kid: the refresh-rate bound refused a refresh; rejected at once

	BreakerClosed   = 0
	BreakerHalfOpen = 1
	BreakerOpen     = 2
)

// MetricNames returns the Prometheus family names this package exposes, in
// a fresh slice the caller may keep. Go runtime (go_*) and process
// (process_*) families and target_info are exposed too but not listed.
func MetricNames() []string {
	out := make([]string, len(instruments))
	for i, d := range instruments {
		out[i] = d.prom
	}
	return out
}

// instDeliveryLatency is herald.delivery.latency's index in instruments.
const instDeliveryLatency = 7

// instrument describes one OTel instrument and the name the Prometheus
// exporter gives it (checked by TestExposedMetricNames).
type instrument struct {
	otel, prom, unit, desc string
}

// instruments is the metric table, in MetricNames order.
var instruments = [...]instrument{
	{"herald.streams.open", MetricStreamsOpen, "{stream}", "SSE streams currently open on this node."},
	{"herald.stream.connects", MetricStreamConnects, "{connection}", "Stream connection attempts by result."},
	{"herald.stream.disconnects", MetricStreamDisconnects, "{connection}", "Streams closed by reason."},
	{"herald.resumes", MetricResumes, "{resume}", "Stream starts by resume outcome."},
	{"herald.replayed.events", MetricReplayedEvents, "{event}", "Events replayed from history per stream start."},
	{"herald.publishes", MetricPublishes, "{publish}", "Publish requests by result."},
	{"herald.publish.duration", MetricPublishDuration, "s", "Publish request handling time by result."},
	{"herald.delivery.latency", MetricDeliveryLatency, "s", "Time from an event's publish timestamp to its write to a live subscriber."},
	{"herald.queue.depth", MetricQueueDepth, "{event}", "Events queued in subscriber buffers on this node."},
	{"herald.redis.call.duration", MetricRedisCallDuration, "s", "Redis call time by operation, target and result."},
	{"herald.protection.events", MetricProtectionEvents, "{event}", "Protection layer blocks, trips and recoveries."},
	{"herald.breaker.state", MetricBreakerState, "", "Circuit breaker state per target: 0 closed, 1 half-open, 2 open."},
	{"herald.gossip.members", MetricGossipMembers, "{member}", "Cluster members known to this node by state."},
	{"herald.gossip.health_score", MetricGossipHealthScore, "", "Memberlist awareness health score; 0 is healthy, higher is worse."},
	{"herald.session.ownership.changes", MetricSessionOwnershipChanges, "{change}", "Session ownership changes seen by this node by kind."},
	{"herald.replication.lag", MetricReplicationLag, "s", "Replication lag of each origin region's events into this region."},
	{"herald.build.info", MetricBuildInfo, "", "Always 1; labels carry the Herald and Go versions."},
	{"herald.jwks.refreshes", MetricJWKSRefreshes, "{refresh}", "JWKS fetches per URL by result."},
	{"herald.jwks.keys", MetricJWKSKeys, "{key}", "JWT verification keys loaded from the JWKS URLs."},
	{"herald.jwks.unknown_kid", MetricJWKSUnknownKID, "{lookup}", "Tokens whose kid no cached JWKS key has, by outcome."},
	{"herald.ingest.lines", MetricIngestLines, "{line}", "NDJSON lines ingested (POST /v1/ingest) by result."},
}

// instrumentByProm maps a Prometheus family name (or an OTel instrument name)
// to its OTel instrument name.
func instrumentByProm(name string) (string, bool) {
	for _, d := range instruments {
		if d.prom == name || d.otel == name {
			return d.otel, true
		}
	}
	return "", false
}

// Histogram bucket boundaries (seconds unless stated).
var (
	bucketsPublish  = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	bucketsRedis    = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	bucketsReplayed = []float64{0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000} // events
)

// GaugeSnapshot is the state the application reports for the observed
// gauges, read at every Prometheus scrape and OTLP push.
type GaugeSnapshot struct {
	// QueueDepth is the number of events queued in all subscriber buffers.
	QueueDepth int64
	// GossipMembers counts cluster members by state, self included (as
	// cluster.Stats.Members: alive, draining, suspect, dead, left). Nil
	// when clustering is off: no series.
	GossipMembers map[string]int
	// GossipHealthScore is memberlist's awareness score (0 healthy).
	GossipHealthScore int
	// ReplicationLag is, per origin region, how far this region's replica
	// of that origin's events is behind. The node's own region is reported
	// as 0 unless present here.
	ReplicationLag map[string]time.Duration
}

// Metrics records Herald's metrics. Methods are safe for concurrent use and
// are no-ops on a nil *Metrics, so components can take one optionally.
// Recording does not allocate for the enumerated label values and for up to
// 256 distinct label sets per instrument (cached); beyond that each call
// builds its attribute set.
type Metrics struct {
	streamsOpen    metric.Int64ObservableUpDownCounter
	connects       metric.Int64ObservableCounter
	disconnects    metric.Int64Counter
	resumes        metric.Int64ObservableCounter
	replayed       metric.Int64Histogram
	publishes      metric.Int64Counter
	publishDur     metric.Float64Histogram
	delivery       *deliveryHistogram // herald.delivery.latency, outside the meter
	redisDur       metric.Float64Histogram
	protection     metric.Int64Counter
	breaker        metric.Int64Gauge
	jwksKeys       metric.Int64Gauge
	jwksRefreshes  metric.Int64Counter
	jwksUnknownKID metric.Int64Counter
	ingestLines    metric.Int64Counter
	ownership      metric.Int64Counter
	queueDepth     metric.Int64ObservableGauge
	gossipMember   metric.Int64ObservableGauge
	gossipHealth   metric.Int64ObservableGauge
	replLag        metric.Float64ObservableGauge
	buildInfo      metric.Int64ObservableGauge

	// The counters of every stream connect, on atomics (counterVec).
	open           atomic.Int64
	connectCounts  *counterVec[[2]string]
	resumeCounts   *counterVec[string]
	disconnectOpts *optCache[[2]string]
	publishOpts    *optCache[string]
	ownershipOpts  *optCache[string]
	jwksRefOpts    *optCache[string]
	jwksKIDOpts    *optCache[string]
	ingestOpts     *optCache[string]
	breakerOpts    *optCache[string]
	redisOpts      *optCache[[3]string]
	protectionOpts *optCache[[4]string]

	buildSet attribute.Set
	region   string
	gauges   atomic.Pointer[func() GaugeSnapshot]
	reg      metric.Registration
}

func newMetrics(meter metric.Meter, delivery *deliveryHistogram, version, region string) (*Metrics, error) {
	m := &Metrics{region: region, delivery: delivery}
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	opts := func(i int) []metric.InstrumentOption {
		d := instruments[i]
		return []metric.InstrumentOption{metric.WithUnit(d.unit), metric.WithDescription(d.desc)}
	}
	hist := func(i int, b []float64) []metric.Float64HistogramOption {
		d := instruments[i]
		return []metric.Float64HistogramOption{metric.WithUnit(d.unit), metric.WithDescription(d.desc), metric.WithExplicitBucketBoundaries(b...)}
	}
	var err error
	m.streamsOpen, err = meter.Int64ObservableUpDownCounter(instruments[0].otel, metric.WithUnit(instruments[0].unit), metric.WithDescription(instruments[0].desc))
	check(err)
	m.connects, err = meter.Int64ObservableCounter(instruments[1].otel, metric.WithUnit(instruments[1].unit), metric.WithDescription(instruments[1].desc))
	check(err)
	m.disconnects, err = meter.Int64Counter(instruments[2].otel, counterOpts(opts(2))...)
	check(err)
	m.resumes, err = meter.Int64ObservableCounter(instruments[3].otel, metric.WithUnit(instruments[3].unit), metric.WithDescription(instruments[3].desc))
	check(err)
	m.replayed, err = meter.Int64Histogram(instruments[4].otel, metric.WithUnit(instruments[4].unit),
		metric.WithDescription(instruments[4].desc), metric.WithExplicitBucketBoundaries(bucketsReplayed...))
	check(err)
	m.publishes, err = meter.Int64Counter(instruments[5].otel, counterOpts(opts(5))...)
	check(err)
	m.publishDur, err = meter.Float64Histogram(instruments[6].otel, hist(6, bucketsPublish)...)
	check(err)
	m.queueDepth, err = meter.Int64ObservableGauge(instruments[8].otel, metric.WithUnit(instruments[8].unit), metric.WithDescription(instruments[8].desc))
	check(err)
	m.redisDur, err = meter.Float64Histogram(instruments[9].otel, hist(9, bucketsRedis)...)
	check(err)
	m.protection, err = meter.Int64Counter(instruments[10].otel, counterOpts(opts(10))...)
	check(err)
	m.breaker, err = meter.Int64Gauge(instruments[11].otel, metric.WithUnit(instruments[11].unit), metric.WithDescription(instruments[11].desc))
	check(err)
	m.gossipMember, err = meter.Int64ObservableGauge(instruments[12].otel, metric.WithUnit(instruments[12].unit), metric.WithDescription(instruments[12].desc))
	check(err)
	m.gossipHealth, err = meter.Int64ObservableGauge(instruments[13].otel, metric.WithUnit(instruments[13].unit), metric.WithDescription(instruments[13].desc))
	check(err)
	m.ownership, err = meter.Int64Counter(instruments[14].otel, counterOpts(opts(14))...)
	check(err)
	m.replLag, err = meter.Float64ObservableGauge(instruments[15].otel, metric.WithUnit(instruments[15].unit), metric.WithDescription(instruments[15].desc))
	check(err)
	m.buildInfo, err = meter.Int64ObservableGauge(instruments[16].otel, metric.WithUnit(instruments[16].unit), metric.WithDescription(instruments[16].desc))
	check(err)
	m.jwksRefreshes, err = meter.Int64Counter(instruments[17].otel, counterOpts(opts(17))...)
	check(err)
	m.jwksKeys, err = meter.Int64Gauge(instruments[18].otel, metric.WithUnit(instruments[18].unit), metric.WithDescription(instruments[18].desc))
	check(err)
	m.jwksUnknownKID, err = meter.Int64Counter(instruments[19].otel, counterOpts(opts(19))...)
	check(err)
	m.ingestLines, err = meter.Int64Counter(instruments[20].otel, counterOpts(opts(20))...)
	check(err)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	m.connectCounts = newCounterVec(labels2(LabelTransport, LabelResult))
	m.disconnectOpts = newOptCache(labels2(LabelTransport, LabelReason))
	m.resumeCounts = newCounterVec(labels1(LabelOutcome))
	m.publishOpts = newOptCache(labels1(LabelResult))
	m.ownershipOpts = newOptCache(labels1(LabelKind))
	m.breakerOpts = newOptCache(labels1(LabelTarget))
	m.jwksRefOpts = newOptCache(labels1(LabelResult))
	m.jwksKIDOpts = newOptCache(labels1(LabelOutcome))
	m.ingestOpts = newOptCache(labels1(LabelResult))
	m.redisOpts = newOptCache(func(k [3]string) attribute.Set {
		return attribute.NewSet(attribute.String(LabelOp, k[0]), attribute.String(LabelTarget, k[1]), attribute.String(LabelResult, k[2]))
	})
	m.protectionOpts = newOptCache(func(k [4]string) attribute.Set {
		return attribute.NewSet(attribute.String(LabelLayer, k[0]), attribute.String(LabelResource, k[1]),
			attribute.String(LabelReason, k[2]), attribute.String(LabelKind, k[3]))
	})
	m.buildSet = attribute.NewSet(attribute.String(LabelVersion, version), attribute.String(LabelGoVersion, runtime.Version()))

	// Make every enumerated series exist from the start.
	ctx := context.Background()
	for _, tr := range []string{TransportSSE, TransportWS} {
		for _, v := range []string{ConnectAccepted, ConnectShed, ConnectRedirected, ConnectRejected, ConnectError} {
			m.connectCounts.add([2]string{tr, v}, 0)
		}
		for _, v := range []string{DisconnectClient, DisconnectSlow, DisconnectDrain, DisconnectAuth, DisconnectError, DisconnectTakeover, DisconnectAdmin, DisconnectShutdown} {
			m.disconnects.Add(ctx, 0, m.disconnectOpts.get([2]string{tr, v}).add...)
		}
	}
	for _, v := range []string{ResumeReplayed, ResumeReset, ResumeLive} {
		m.resumeCounts.add(v, 0)
	}
	for _, v := range []string{PublishOK, PublishDuplicate, PublishRejected, PublishUnavailable, PublishError} {
		m.publishes.Add(ctx, 0, m.publishOpts.get(v).add...)
	}
	for _, v := range []string{OwnershipClaim, OwnershipTakeover, OwnershipRevoke, OwnershipExpire} {
		m.ownership.Add(ctx, 0, m.ownershipOpts.get(v).add...)
	}
	for _, v := range []string{JWKSRefreshOK, JWKSRefreshFailed} {
		m.jwksRefreshes.Add(ctx, 0, m.jwksRefOpts.get(v).add...)
	}
	for _, v := range []string{JWKSKIDRefresh, JWKSKIDLimited} {
		m.jwksUnknownKID.Add(ctx, 0, m.jwksKIDOpts.get(v).add...)
	}
	for _, v := range []string{IngestOK, IngestDuplicate, IngestRejected, IngestLimited, IngestUnavailable} {
		m.ingestLines.Add(ctx, 0, m.ingestOpts.get(v).add...)
	}
	m.jwksKeys.Record(ctx, 0)

	m.reg, err = meter.RegisterCallback(m.observe, m.queueDepth, m.gossipMember, m.gossipHealth, m.replLag, m.buildInfo,
		m.streamsOpen, m.connects, m.resumes)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func counterOpts(o []metric.InstrumentOption) []metric.Int64CounterOption {
	out := make([]metric.Int64CounterOption, len(o))
	for i, x := range o {
		out[i] = x
	}
	return out
}

// observe is the callback of the observable instruments.
func (m *Metrics) observe(_ context.Context, o metric.Observer) error {
	o.ObserveInt64(m.buildInfo, 1, metric.WithAttributeSet(m.buildSet))
	o.ObserveInt64(m.streamsOpen, m.open.Load())
	m.connectCounts.observe(o, m.connects)
	m.resumeCounts.observe(o, m.resumes)
	var s GaugeSnapshot
	if fn := m.gauges.Load(); fn != nil {
		s = (*fn)()
		o.ObserveInt64(m.queueDepth, s.QueueDepth)
		o.ObserveInt64(m.gossipHealth, int64(s.GossipHealthScore))
		for state, n := range s.GossipMembers {
			o.ObserveInt64(m.gossipMember, int64(n), metric.WithAttributes(attribute.String(LabelState, state)))
		}
	}
	_, own := s.ReplicationLag[m.region]
	if !own {
		o.ObserveFloat64(m.replLag, 0, metric.WithAttributes(attribute.String(LabelOrigin, m.region)))
	}
	for origin, d := range s.ReplicationLag {
		o.ObserveFloat64(m.replLag, d.Seconds(), metric.WithAttributes(attribute.String(LabelOrigin, origin)))
	}
	return nil
}

// RegisterGauges sets the function read for herald_queue_depth,
// herald_gossip_members, herald_gossip_health_score and
// herald_replication_lag_seconds, replacing any earlier one; nil removes it.
// The composition root registers one function that asks each component.
// fn runs on every scrape and push, concurrently with everything else: it
// must be fast, must not block and must not call back into Metrics.
func (m *Metrics) RegisterGauges(fn func() GaugeSnapshot) {
	if m == nil {
		return
	}
	if fn == nil {
		m.gauges.Store(nil)
		return
	}
	m.gauges.Store(&fn)
}

// StreamOpened counts a stream that started serving (herald_streams_open +1).
// Pair every call with one StreamClosed.
func (m *Metrics) StreamOpened(ctx context.Context) {
	if m == nil {
		return
	}
	m.open.Add(1)
}

// StreamClosed counts a stream that ended (herald_streams_open -1) and why
// (herald_stream_disconnects_total{reason}; Disconnect* constants).
func (m *Metrics) StreamClosed(ctx context.Context, transport, reason string) {
	if m == nil {
		return
	}
	m.open.Add(-1)
	m.disconnects.Add(ctx, 1, m.disconnectOpts.get([2]string{transport, reason}).add...)
}

// Connect counts one stream connection attempt by result (Connect*
// constants) and transport (Transport* constants):
// herald_stream_connects_total{transport,result}.
func (m *Metrics) Connect(ctx context.Context, transport, result string) {
	if m == nil {
		return
	}
	m.connectCounts.add([2]string{transport, result}, 1)
}

// Resume counts a stream start by resume outcome (Resume* constants) and
// records how many events were replayed from history for it.
func (m *Metrics) Resume(ctx context.Context, outcome string, replayed int) {
	if m == nil {
		return
	}
	m.resumeCounts.add(outcome, 1)
	m.replayed.Record(ctx, int64(max(replayed, 0)))
}

// Publish counts a publish request by result (Publish* constants) and
// records its handling time.
func (m *Metrics) Publish(ctx context.Context, result string, d time.Duration) {
	if m == nil {
		return
	}
	o := m.publishOpts.get(result)
	m.publishes.Add(ctx, 1, o.add...)
	m.publishDur.Record(ctx, d.Seconds(), o.rec...)
}

// Results of herald_ingest_lines_total.
const (
	IngestOK          = "ok"          // published
	IngestDuplicate   = "duplicate"   // dedup key seen within the idempotency window
	IngestRejected    = "rejected"    // refused for good: not JSON, too long, no topic, forbidden
	IngestLimited     = "limited"     // over a publish rate (429)
	IngestUnavailable = "unavailable" // the store refused or did not confirm (503)
)

// IngestLines counts n lines of one ingest request with result (one of
// the Ingest* constants).
func (m *Metrics) IngestLines(ctx context.Context, result string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.ingestLines.Add(ctx, int64(n), m.ingestOpts.get(result).add...)
}

// Delivered records the latencies of live events written to a subscriber,
// gathered in t (DeliveryTally.Add: write time minus each event's publish
// timestamp), and empties t. Call it once per write. Do not tally replayed
// events: their age is not delivery latency (herald_replayed_events counts
// them). Hot path: no allocation.
func (m *Metrics) Delivered(t *DeliveryTally) {
	if m == nil {
		*t = DeliveryTally{}
		return
	}
	m.delivery.add(t)
}

// DeliveryExemplar makes ctx's span, when sampled, the exemplar of the
// delivery latency bucket that latency falls into. It counts nothing: the
// latency goes into a DeliveryTally as well.
func (m *Metrics) DeliveryExemplar(ctx context.Context, latency time.Duration) {
	if m == nil {
		return
	}
	m.delivery.exemplar(ctx, latency)
}

// RedisCall records one Redis call: op (append, read, replay, meta,
// subscribe, ping…), target (e.g. "primary", "replica:eu-west") and result
// (ok, error, timeout, rejected when a breaker refused it).
func (m *Metrics) RedisCall(ctx context.Context, op, target, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.redisDur.Record(ctx, d.Seconds(), m.redisOpts.get([3]string{op, target, result}).rec...)
}

// Protection counts one protection event, in resilience.Event's
// vocabulary: layer (ingress, admission, replay, dependency), resource
// (publish, connect, replay, or the dependency target such as "primary" —
// a bounded set, never a raw topic or key), reason (tenant_qps, topic_qps,
// rate, streams, per_ip, system, replay_wait, breaker_open, error_ratio,
// slow_ratio) and kind (block, trip, half_open, recover). Breaker
// transitions also belong in BreakerState.
func (m *Metrics) Protection(ctx context.Context, layer, resource, reason, kind string) {
	if m == nil {
		return
	}
	m.protection.Add(ctx, 1, m.protectionOpts.get([4]string{layer, resource, reason, kind}).add...)
}

// BreakerState sets herald_breaker_state{target} (Breaker* constants). Call
// it with BreakerClosed when a breaker is created, so the series exists.
func (m *Metrics) BreakerState(target string, state int) {
	if m == nil {
		return
	}
	m.breaker.Record(context.Background(), int64(state), m.breakerOpts.get(target).rec...)
}

// OwnershipChange counts a session ownership change by kind (Ownership*
// constants).
func (m *Metrics) OwnershipChange(ctx context.Context, kind string) {
	if m == nil {
		return
	}
	m.ownership.Add(ctx, 1, m.ownershipOpts.get(kind).add...)
}

// JWKSRefreshed counts one JWKS fetch of one URL:
// herald_jwks_refreshes_total{result="ok"|"failed"}. It implements
// auth.JWKSObserver.
func (m *Metrics) JWKSRefreshed(ok bool) {
	if m == nil {
		return
	}
	r := JWKSRefreshFailed
	if ok {
		r = JWKSRefreshOK
	}
	m.jwksRefreshes.Add(context.Background(), 1, m.jwksRefOpts.get(r).add...)
}

// JWKSKeysLoaded sets herald_jwks_keys, the keys usable after a refresh.
func (m *Metrics) JWKSKeysLoaded(n int) {
	if m == nil {
		return
	}
	m.jwksKeys.Record(context.Background(), int64(n))
}

// JWKSUnknownKID counts a token whose kid no cached JWKS key has:
// herald_jwks_unknown_kid_total{outcome="refresh"|"limited"}.
func (m *Metrics) JWKSUnknownKID(refreshed bool) {
	if m == nil {
		return
	}
	o := JWKSKIDLimited
	if refreshed {
		o = JWKSKIDRefresh
	}
	m.jwksUnknownKID.Add(context.Background(), 1, m.jwksKIDOpts.get(o).add...)
}

func (m *Metrics) close() error {
	if m == nil || m.reg == nil {
		return nil
	}
	return m.reg.Unregister()
}

// maxCachedAttrSets bounds each optCache.
const maxCachedAttrSets = 256

// attrOpts are pre-built measurement options for one attribute set, kept as
// slices so that passing them (opts...) does not allocate.
type attrOpts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func newAttrOpts(s attribute.Set) *attrOpts {
	o := metric.WithAttributeSet(s)
	return &attrOpts{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
}

// optCache maps label values to pre-built options. Reads are lock-free
// (copy-on-write map); it stops growing at maxCachedAttrSets entries.
type optCache[K comparable] struct {
	build func(K) attribute.Set
	m     cowMap[K, *attrOpts]
}

func newOptCache[K comparable](build func(K) attribute.Set) *optCache[K] {
	return &optCache[K]{build: build}
}

func labels2(k0, k1 string) func([2]string) attribute.Set {
	return func(v [2]string) attribute.Set {
		return attribute.NewSet(attribute.String(k0, v[0]), attribute.String(k1, v[1]))
	}
}

func labels1(key string) func(string) attribute.Set {
	return func(v string) attribute.Set { return attribute.NewSet(attribute.String(key, v)) }
}

func (c *optCache[K]) get(k K) *attrOpts {
	build := func() *attrOpts { return newAttrOpts(c.build(k)) }
	return c.m.get(k, build, build) // past the cap: built per call
}

// cowMap is a copy-on-write map of at most maxCachedAttrSets entries:
// reads are lock-free, writers are serialised.
type cowMap[K comparable, V any] struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[K]V]
}

// get returns k's entry, adding build() first if there is none; when the
// map is full it returns full() and adds nothing.
func (c *cowMap[K, V]) get(k K, build, full func() V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	n := 0
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
		if n = len(*old); n >= maxCachedAttrSets {
			return full()
		}
	}
	v := build()
	next := make(map[K]V, n+1)
	if old != nil {
		for kk, vv := range *old {
			next[kk] = vv
		}
	}
	next[k] = v
	c.m.Store(&next)
	return v
}

// each calls f on every entry.
func (c *cowMap[K, V]) each(f func(V)) {
	if m := c.m.Load(); m != nil {
		for _, v := range *m {
			f(v)
		}
	}
}
