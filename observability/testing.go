package observability

import (
	"context"
	"math"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Recorder exposes what a test Telemetry recorded: ended spans and metric
// values, in memory, without network. Safe for concurrent use.
type Recorder struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	mu     sync.Mutex // serialises Collect
}

// NewTestTelemetry returns a Telemetry for tests of other packages, and its
// Recorder. Zero Config fields get test defaults: every trace sampled
// (TraceSampleRatio 1) and no delivery span cap; nothing is exported over the
// network whatever the OTEL_* variables say. MetricsHandler works as in
// production. Call Shutdown in t.Cleanup.
func NewTestTelemetry(cfg Config) (*Telemetry, *Recorder, error) {
	if cfg.TraceSampleRatio == 0 {
		cfg.TraceSampleRatio = 1
	}
	if cfg.DeliverySpanRate == 0 {
		cfg.DeliverySpanRate = math.Inf(1)
	}
	if cfg.Node == "" {
		cfg.Node = "test-node"
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	root, err := rootSampler(cfg.TraceSampleRatio)
	if err != nil {
		return nil, nil, err
	}
	delivery := newDeliveryHistogram(cfg.Version)
	rec := &Recorder{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader(sdkmetric.WithProducer(delivery))}
	t, err := build(context.Background(), cfg, root, delivery,
		[]sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(rec.spans)},
		[]sdkmetric.Option{sdkmetric.WithReader(rec.reader)}, nil)
	if err != nil {
		return nil, nil, err
	}
	return t, rec, nil
}

// Ended returns the spans ended so far, oldest first.
func (r *Recorder) Ended() []sdktrace.ReadOnlySpan { return r.spans.Ended() }

// EndedNamed returns the ended spans called name (SpanPublish…).
func (r *Recorder) EndedNamed(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// Collect reads the current value of every metric.
func (r *Recorder) Collect(ctx context.Context) (metricdata.ResourceMetrics, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rm metricdata.ResourceMetrics
	err := r.reader.Collect(ctx, &rm)
	return rm, err
}

// Value returns the sum of the data points of a counter, up-down counter or
// gauge whose attributes include all of attrs (0 when there is none). name
// is the Prometheus family name (MetricStreamConnects…) or the instrument
// name. For histograms use HistogramCount / HistogramSum.
func (r *Recorder) Value(name string, attrs ...attribute.KeyValue) float64 {
	var total float64
	r.eachPoint(name, attrs, func(v float64, _ uint64) { total += v })
	return total
}

// HistogramCount returns how many values a histogram recorded in the data
// points whose attributes include all of attrs.
func (r *Recorder) HistogramCount(name string, attrs ...attribute.KeyValue) uint64 {
	var n uint64
	r.eachPoint(name, attrs, func(_ float64, c uint64) { n += c })
	return n
}

// HistogramSum returns the sum of the values a histogram recorded in the
// data points whose attributes include all of attrs.
func (r *Recorder) HistogramSum(name string, attrs ...attribute.KeyValue) float64 {
	var total float64
	r.eachPoint(name, attrs, func(v float64, _ uint64) { total += v })
	return total
}

// eachPoint calls fn with (value or histogram sum, histogram count) for each
// matching data point.
func (r *Recorder) eachPoint(name string, attrs []attribute.KeyValue, fn func(float64, uint64)) {
	otelName, ok := instrumentByProm(name)
	if !ok {
		otelName = name
	}
	rm, err := r.Collect(context.Background())
	if err != nil {
		return
	}
	match := func(s attribute.Set) bool {
		for _, kv := range attrs {
			if v, ok := s.Value(kv.Key); !ok || v != kv.Value {
				return false
			}
		}
		return true
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != otelName {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						fn(float64(p.Value), 0)
					}
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						fn(p.Value, 0)
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						fn(float64(p.Value), 0)
					}
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						fn(p.Value, 0)
					}
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						fn(float64(p.Sum), p.Count)
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						fn(p.Sum, p.Count)
					}
				}
			}
		}
	}
}
