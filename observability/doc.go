// Package observability is Herald's telemetry: OpenTelemetry traces and
// metrics, a Prometheus /metrics handler, OTLP export, and a slog handler
// that adds trace ids and removes secrets. It knows nothing of HTTP routes,
// the store or the cluster; components receive the parts they need.
//
// # Setup and ownership
//
// Setup(ctx, Config) returns a *Telemetry that owns a tracer provider, a
// meter provider, a dedicated Prometheus registry (never the default one)
// and, when an OTLP endpoint is configured, the OTLP exporters. main mounts
// MetricsHandler on the ADMIN listener only, passes Metrics, Tracer and
// Propagator to the components, wraps its slog handler with NewLogHandler,
// and calls Shutdown last (it flushes spans and metrics). The package sets
// no OpenTelemetry globals (otel.SetTracerProvider, SetMeterProvider,
// SetTextMapPropagator): main may, if a third-party library only reads the
// globals. Tests of other packages use NewTestTelemetry, which records
// spans and metrics in memory (Recorder).
//
// OTLP export is on when Config.OTLP.Endpoint or a standard
// OTEL_EXPORTER_OTLP_{,TRACES_,METRICS_}ENDPOINT variable is set, and off
// under OTEL_SDK_DISABLED=true or OTEL_{TRACES,METRICS}_EXPORTER=none.
// Config fields left at zero are not passed to the exporters, so the other
// standard variables (headers, timeout, certificates, compression,
// protocol) keep working; a non-zero field wins over its variable.
//
// # Metrics
//
// Every metric is an OpenTelemetry instrument on one Meter named
// "github.com/heraldpush/herald", exported through the Prometheus exporter
// (go.opentelemetry.io/otel/exporters/prometheus) with the
// UnderscoreEscapingWithSuffixes strategy and without scope labels, so the
// names below are stable: dots become underscores, unit "s" adds
// _seconds, counters get _total; TestExposedMetricNames scrapes the
// handler and checks every one. Every series also carries the node's
// constant labels node, region and zone (omitted when empty); the Go
// runtime (go_*) and process (process_*) collectors and target_info (the
// OTel resource) are exposed too. OTLP receives the same instruments under
// their OTel names (herald.stream.connects…). MetricNames() lists the
// Prometheus names; the dashboard and alert rules in deploy/ are checked
// against it by this package's tests.
//
//	herald_streams_open                    gauge      SSE streams open on this node (StreamOpened/StreamClosed)
//	herald_stream_connects_total           counter    {result: accepted|shed|redirected|rejected|error} connection attempts
//	herald_stream_disconnects_total        counter    {reason: client|slow|drain|auth|error|takeover|admin|shutdown} streams closed
//	herald_resumes_total                   counter    {outcome: replayed|reset|live} stream starts by resume outcome
//	herald_replayed_events                 histogram  events replayed from history per stream start (0…10000)
//	herald_publishes_total                 counter    {result: ok|duplicate|rejected|unavailable|error} publish requests
//	herald_publish_duration_seconds        histogram  {result} publish handling time (0.5ms…10s)
//	herald_delivery_latency_seconds        histogram  publish timestamp -> write to a live subscriber (1ms…30s); _count is the delivery rate; exists from Setup on
//	herald_queue_depth                     gauge      events queued in subscriber buffers on this node (RegisterGauges)
//	herald_redis_call_duration_seconds     histogram  {op, target, result} Redis call time (0.1ms…2.5s)
//	herald_protection_events_total         counter    {layer, resource, reason, kind} protection blocks, trips, half-opens, recoveries
//	herald_breaker_state                   gauge      {target} 0 closed, 1 half-open, 2 open
//	herald_gossip_members                  gauge      {state: alive|draining|suspect|dead|left} members this node knows (RegisterGauges)
//	herald_gossip_health_score             gauge      memberlist awareness score, 0 healthy (RegisterGauges)
//	herald_session_ownership_changes_total counter    {kind: claim|takeover|revoke|expire} ownership changes seen here
//	herald_replication_lag_seconds         gauge      {origin} lag of each origin region's events in this region; own region 0 (RegisterGauges)
//	herald_build_info                      gauge      {version, go_version} always 1
//	herald_jwks_refreshes_total            counter    {result: ok|failed} JWKS fetches, one per URL per refresh
//	herald_jwks_keys                       gauge      JWT keys loaded from the JWKS URLs (set after each refresh; 0 without JWKS)
//	herald_jwks_unknown_kid_total          counter    {outcome: refresh|limited} tokens with a kid no cached JWKS key has
//	herald_ingest_lines_total              counter    {result: ok|duplicate|rejected|limited|unavailable} NDJSON lines ingested
//
// The enumerated label values above are constants (Connect*, Disconnect*,
// Resume*, Publish*, Ownership*, Breaker*, JWKS*, Ingest*); their series exist at zero
// from Setup on. Histograms and the labelled series of op/target,
// protection and breaker state appear with their first observation; the
// gauges from RegisterGauges appear once a function is registered.
// Label values must come from small fixed sets: never a topic, session id
// or key.
//
// Recording is cheap: attribute sets are built once and cached (up to 256
// per instrument), and the enumerated values never allocate. The delivery
// latency, the per-event hot path, is tallied per write (DeliveryTally) and
// added to a histogram Herald keeps itself, which the readers collect as a
// Producer (docs/adr/0012-delivery-latency-histogram.md). See
// BenchmarkMetricsDelivered.
//
// # Traces
//
// The sampler is parent-based with Config.TraceSampleRatio for new traces
// (default 0.1, or OTEL_TRACES_SAMPLER), with two Herald rules:
//
//	herald.publish  producer span of a publish (StartPublish), child of the request's context.
//	                EventTraceparent(ctx) is stored with the event.
//	herald.session  server span of one SSE connection (StartSession): child of a traceparent the
//	                client sent; LINKED (never parented) to the previous connection of the same
//	                client, from a cookie, the cursor or the gossiped session record
//	                (LinkFromTraceparent). Sampled when such a link is sampled, so a reconnect
//	                chain is traced whole.
//	herald.deliver  consumer span of one event written to one subscriber (StartDelivery): a new
//	                root LINKED to the publish span and to the session span. Recorded only when
//	                the publish was sampled, at most Config.DeliverySpanRate per second per node
//	                (default 100), because one publish fans out to many subscribers. Unsampled
//	                deliveries cost a flag check and no allocation.
//
// A node that exports no traces (no span processor: no OTLP endpoint, no
// test recorder) builds no SDK span for sessions nor on the publish path
// (the request's server span, herald.publish, the store call: StartSpan):
// each gets a span context of its own, sampled as the SDK's span would be,
// on a non-recording span, so stored traceparents, log trace ids, links and
// exemplars are unchanged. Delivery spans are still built when sampled.
//
// Attributes: herald.session.id, herald.topics, herald.cursor,
// herald.resumed, herald.reset, herald.replayed, herald.node, cloud.region,
// messaging.destination.name (topic), herald.offset, herald.origin; links
// carry herald.link = publish | session | previous_session. The resource has
// service.name, service.version, service.instance.id (node), host.name,
// cloud.region and cloud.availability_zone.
//
// # Logs
//
// NewLogHandler wraps any slog.Handler: records get trace_id and span_id
// from their context, and secrets are replaced with "[redacted]" — values of
// secret-looking keys (token, authorization, cookie, api_key, password,
// secret…) and, anywhere in the message or values, JWTs, "Bearer …"
// credentials, Herald API keys (hk_…) and token-like query parameters.
//
// # Alert rules and dashboards
//
// deploy/prometheus/alerts.yaml and deploy/grafana/dashboards/herald.json
// are validated by this package's tests: strict decoding, every metric name
// exposed, every alert with severity and a runbook_url under
// docs/runbooks/, annotation templates that render. PromQL is checked by a
// small test-only scanner, not by Prometheus' parser: importing
// github.com/prometheus/prometheus for model/rulefmt pulls k8s client-go
// and upgrades shared dependencies. Run promtool check rules in CI where it
// is installed.
//
// # Concurrency
//
// Telemetry, Metrics, the spans helpers and the log handler are safe for
// concurrent use. Metrics and Telemetry methods are no-ops on nil
// receivers. Shutdown is idempotent; recording after it is harmless and
// dropped. The functions registered with RegisterGauges run during scrapes
// and OTLP pushes and must not block. The package keeps no mutable
// package-level state.
package observability
