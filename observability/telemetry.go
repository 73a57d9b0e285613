package observability

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"
)

// InstrumentationName names Herald's tracer and meter.
const InstrumentationName = "github.com/heraldpush/herald"

// Constant labels added to every exposed Prometheus series (empty values
// are omitted).
const (
	LabelNode   = "node"
	LabelRegion = "region"
	LabelZone   = "zone"
)

// Telemetry owns the tracer and meter providers, the Prometheus registry and
// the OTLP exporters of one node. Build it with Setup, pass its parts to the
// components that need them, and Shutdown it last. Its methods are safe for
// concurrent use; a nil *Telemetry hands out no-op providers and nil Metrics.
type Telemetry struct {
	cfg        Config
	tp         *sdktrace.TracerProvider
	mp         *sdkmetric.MeterProvider
	tracer     trace.Tracer
	metrics    *Metrics
	registry   *prometheus.Registry
	registerer prometheus.Registerer
	handler    http.Handler
	propagator propagation.TextMapPropagator
	deliveries *rate.Limiter
	// sampler is the tracer provider's sampler; keepSpans is whether the
	// provider has a span processor (an exporter, or the test recorder).
	// Without one, no span the SDK builds goes anywhere, so session spans
	// are not built (StartSession).
	sampler   sdktrace.Sampler
	keepSpans bool

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup builds the node's telemetry from cfg: a Prometheus registry with the
// Go runtime and process collectors and Herald's metrics, and — when an OTLP
// endpoint is configured (Config or OTEL_EXPORTER_OTLP_*ENDPOINT) — OTLP
// trace and metric exporters. It sets no OpenTelemetry globals: main may
// call otel.SetTracerProvider / SetTextMapPropagator with the returned parts
// if third-party instrumentation needs them.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	root, err := rootSampler(cfg.TraceSampleRatio)
	if err != nil {
		return nil, err
	}
	var tpOpts []sdktrace.TracerProviderOption
	var mpOpts []sdkmetric.Option
	var cleanup []func(context.Context) error
	delivery := newDeliveryHistogram(cfg.Version)
	fail := func(err error) (*Telemetry, error) {
		for _, f := range cleanup {
			_ = f(ctx)
		}
		return nil, err
	}
	if otlpEnabled(cfg.OTLP, signalTraces) {
		exp, err := newTraceExporter(ctx, cfg.OTLP)
		if err != nil {
			return fail(fmt.Errorf("otlp trace exporter: %w", err))
		}
		cleanup = append(cleanup, exp.Shutdown)
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	if otlpEnabled(cfg.OTLP, signalMetrics) {
		exp, err := newMetricExporter(ctx, cfg.OTLP)
		if err != nil {
			return fail(fmt.Errorf("otlp metric exporter: %w", err))
		}
		ropts := []sdkmetric.PeriodicReaderOption{sdkmetric.WithProducer(delivery)}
		if cfg.MetricsInterval > 0 {
			ropts = append(ropts, sdkmetric.WithInterval(cfg.MetricsInterval))
		}
		reader := sdkmetric.NewPeriodicReader(exp, ropts...) // shuts exp down with it
		cleanup = append(cleanup, reader.Shutdown)
		mpOpts = append(mpOpts, sdkmetric.WithReader(reader))
	}
	return build(ctx, cfg, root, delivery, tpOpts, mpOpts, cleanup)
}

// build assembles a Telemetry; extra provider options carry the exporters
// (Setup) or the in-memory recorders (NewTestTelemetry). On error it runs
// cleanup.
func build(ctx context.Context, cfg Config, root sdktrace.Sampler, delivery *deliveryHistogram, tpOpts []sdktrace.TracerProviderOption,
	mpOpts []sdkmetric.Option, cleanup []func(context.Context) error) (*Telemetry, error) {
	fail := func(err error) (*Telemetry, error) {
		for _, f := range cleanup {
			_ = f(ctx)
		}
		return nil, err
	}
	res, err := newResource(ctx, cfg)
	if err != nil {
		return fail(err)
	}

	registry := prometheus.NewRegistry()
	constLabels := prometheus.Labels{}
	for k, v := range map[string]string{LabelNode: cfg.Node, LabelRegion: cfg.Region, LabelZone: cfg.Zone} {
		if v != "" {
			constLabels[k] = v
		}
	}
	reg := prometheus.WrapRegistererWith(constLabels, registry)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return fail(fmt.Errorf("register collector: %w", err))
		}
	}
	promExp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(),
		otelprom.WithProducer(delivery),
	)
	if err != nil {
		return fail(fmt.Errorf("prometheus exporter: %w", err))
	}

	mp := sdkmetric.NewMeterProvider(append([]sdkmetric.Option{
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(promExp),
	}, mpOpts...)...)
	smp := sampler{root: root}
	tp := sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(smp),
	}, tpOpts...)...)
	cleanup = []func(context.Context) error{tp.Shutdown, mp.Shutdown}

	m, err := newMetrics(mp.Meter(InstrumentationName, metric.WithInstrumentationVersion(cfg.Version)), delivery, cfg.Version, cfg.Region)
	if err != nil {
		return fail(fmt.Errorf("metrics: %w", err))
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &Telemetry{
		cfg:        cfg,
		tp:         tp,
		mp:         mp,
		tracer:     tp.Tracer(InstrumentationName, trace.WithInstrumentationVersion(cfg.Version)),
		metrics:    m,
		registry:   registry,
		registerer: reg,
		handler: promhttp.HandlerFor(registry, promhttp.HandlerOpts{
			ErrorLog:          promErrorLog{logger},
			ErrorHandling:     promhttp.ContinueOnError,
			EnableOpenMetrics: true,
		}),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		deliveries: newRateLimiter(cfg.DeliverySpanRate),
		sampler:    smp,
		// Every option callers pass in tpOpts adds a span processor.
		keepSpans: len(tpOpts) > 0,
	}
	return t, nil
}

// newResource describes this node. Precedence, lowest first: built-in
// defaults (service.name "herald", host.name), OTEL_RESOURCE_ATTRIBUTES and
// OTEL_SERVICE_NAME, then the non-zero Config fields.
func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	var explicit []attribute.KeyValue
	for _, kv := range []attribute.KeyValue{
		semconv.ServiceNameKey.String(cfg.ServiceName),
		semconv.ServiceVersionKey.String(cfg.Version),
		semconv.ServiceInstanceIDKey.String(cfg.Node),
		semconv.CloudRegionKey.String(cfg.Region),
		semconv.CloudAvailabilityZoneKey.String(cfg.Zone),
	} {
		if kv.Value.AsString() != "" {
			explicit = append(explicit, kv)
		}
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(semconv.ServiceName(DefaultServiceName)),
		resource.WithFromEnv(),
		resource.WithAttributes(explicit...),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	// A partial resource (a detector failed) is still useful; keep it.
	return res, nil
}

// Shutdown flushes pending spans and metrics to the OTLP exporters and stops
// them; the Prometheus handler then serves only the Go and process
// collectors. Safe to call more than once: later calls return the first
// result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.shutdownOnce.Do(func() {
		var errs []error
		if err := t.tp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("tracer provider: %w", err))
		}
		if err := t.metrics.close(); err != nil {
			errs = append(errs, fmt.Errorf("gauge callback: %w", err))
		}
		if err := t.mp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("meter provider: %w", err))
		}
		t.shutdownErr = errors.Join(errs...)
	})
	return t.shutdownErr
}

// TracerProvider returns the node's tracer provider (for instrumentation
// libraries that take one, e.g. go-redis or gin middleware).
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil {
		return noop.NewTracerProvider()
	}
	return t.tp
}

// MeterProvider returns the node's meter provider. Instruments created on it
// are exported to Prometheus and OTLP like Herald's own.
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t == nil {
		return metricnoop.NewMeterProvider()
	}
	return t.mp
}

// Tracer returns Herald's tracer, named InstrumentationName.
func (t *Telemetry) Tracer() trace.Tracer {
	if t == nil {
		return noop.NewTracerProvider().Tracer(InstrumentationName)
	}
	return t.tracer
}

// Propagator returns the W3C tracecontext + baggage propagator, to extract
// the caller's context from incoming requests and inject it into outgoing
// ones.
func (t *Telemetry) Propagator() propagation.TextMapPropagator {
	if t == nil {
		return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	return t.propagator
}

// MetricsHandler serves the node's Prometheus registry (Herald's metrics,
// go_*, process_*, target_info) in the text or OpenMetrics format. Mount it
// on the admin listener only.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil {
		return http.NotFoundHandler()
	}
	return t.handler
}

// Registerer returns the node's dedicated Prometheus registry (wrapped to add
// the constant node/region/zone labels), for collectors that are not
// OpenTelemetry instruments, such as a library's own Prometheus collector.
func (t *Telemetry) Registerer() prometheus.Registerer {
	if t == nil {
		return prometheus.NewRegistry()
	}
	return t.registerer
}

// Metrics returns the recorder of Herald's metrics (nil on a nil Telemetry;
// its methods are no-ops then).
func (t *Telemetry) Metrics() *Metrics {
	if t == nil {
		return nil
	}
	return t.metrics
}

// promErrorLog adapts slog to promhttp's error logger.
type promErrorLog struct{ l *slog.Logger }

func (p promErrorLog) Println(v ...any) {
	p.l.Error("prometheus gather", "error", fmt.Sprint(v...))
}
