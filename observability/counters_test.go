package observability

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestCounterVecSeries checks counterVec's series as an exporter sees them:
// one cumulative monotonic sum per label set, zero-valued series kept, and
// label sets beyond maxCachedAttrSets counted in one overflow series,
// nothing lost.
func TestCounterVecSeries(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	meter := mp.Meter("test")
	inst, err := meter.Int64ObservableCounter("c")
	if err != nil {
		t.Fatal(err)
	}
	c := newCounterVec(labels1("k"))
	if _, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c.observe(o, inst)
		return nil
	}, inst); err != nil {
		t.Fatal(err)
	}
	c.add("zero", 0)
	c.add("a", 1)
	c.add("a", 2)
	got := collectSums(t, reader, "c")
	if len(got) != 2 || got["k=zero"] != 0 || got["k=a"] != 3 {
		t.Fatalf("series %v, want k=zero 0 and k=a 3", got)
	}
	for i := range maxCachedAttrSets + 10 {
		c.add(fmt.Sprintf("v%d", i), 1)
	}
	got = collectSums(t, reader, "c")
	if len(got) != maxCachedAttrSets+1 {
		t.Fatalf("%d series, want %d and the overflow series", len(got), maxCachedAttrSets)
	}
	var total int64
	for _, v := range got {
		total += v
	}
	if over := got["otel.metric.overflow=true"]; over != 12 || total != 3+maxCachedAttrSets+10 {
		t.Fatalf("overflow %d (want 12), total %d (want %d)", over, total, 3+maxCachedAttrSets+10)
	}
}

func collectSums(t *testing.T, reader *sdkmetric.ManualReader, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic || sum.Temporality != metricdata.CumulativeTemporality {
				t.Fatalf("%s: %T, want a cumulative monotonic sum", name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				out[dp.Attributes.Encoded(attribute.DefaultEncoder())] = dp.Value
			}
		}
	}
	return out
}

// BenchmarkConnectMetrics is what the node records per stream connect
// (connect counter, streams open, resume outcome and replayed events),
// with the session's context as Node.Open passes it.
func BenchmarkConnectMetrics(b *testing.B) {
	tel, err := Setup(context.Background(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	sctx, span := tel.StartSession(context.Background(), SessionAttrs{SessionID: "0123456789abcdef", Topics: []string{"t"}, Transport: TransportSSE})
	defer span.End()
	m := tel.Metrics()
	b.ReportAllocs()
	for b.Loop() {
		m.Connect(sctx, TransportSSE, ConnectAccepted)
		m.StreamOpened(sctx)
		m.Resume(sctx, ResumeLive, 0)
	}
}
