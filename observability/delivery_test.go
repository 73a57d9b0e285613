package observability

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
)

// recordedMetrics returns a test telemetry's Metrics and its Recorder.
func recordedMetrics(t *testing.T) (*Metrics, *Recorder) {
	t.Helper()
	tel, rec, err := NewTestTelemetry(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel.Metrics(), rec
}

// deliveryPoint collects the delivery latency histogram's one data point.
func deliveryPoint(t *testing.T, rec *Recorder) metricdata.HistogramDataPoint[float64] {
	t.Helper()
	rm, err := rec.Collect(context.Background())
	if err != nil {
		t.Fatalf("collect: %v", err)
	}
	var found []metricdata.HistogramDataPoint[float64]
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != instruments[instDeliveryLatency].otel {
				continue
			}
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok || h.Temporality != metricdata.CumulativeTemporality || m.Unit != "s" {
				t.Fatalf("%s: data %T, unit %q", m.Name, m.Data, m.Unit)
			}
			found = append(found, h.DataPoints...)
		}
	}
	if len(found) != 1 {
		t.Fatalf("delivery latency data points: %d, want 1", len(found))
	}
	return found[0]
}

func TestDeliveryTallyBuckets(t *testing.T) {
	t.Parallel()
	m, rec := recordedMetrics(t)

	if p := deliveryPoint(t, rec); p.Count != 0 || len(p.BucketCounts) != len(p.Bounds)+1 {
		t.Fatalf("before any delivery: count %d, %d buckets for %d bounds", p.Count, len(p.BucketCounts), len(p.Bounds))
	}
	var tally DeliveryTally
	for _, d := range []time.Duration{
		-time.Second,           // clock skew: counts as 0, first bucket
		time.Millisecond,       // on a bound: that bound's bucket
		time.Millisecond + 1,   // just above: the next one
		40 * time.Millisecond,  // (25ms, 50ms]
		30 * time.Second,       // the last bound
		time.Minute,            // above every bound
		100 * time.Millisecond, // on a bound
	} {
		tally.Add(d)
	}
	if tally.Len() != 7 {
		t.Fatalf("tally holds %d, want 7", tally.Len())
	}
	m.Delivered(&tally)
	if tally.Len() != 0 {
		t.Fatalf("Delivered left %d in the tally", tally.Len())
	}
	m.Delivered(&tally) // an empty tally records nothing

	p := deliveryPoint(t, rec)
	want := make([]uint64, len(deliveryBounds)+1)
	want[0] = 2                     // -1s, 1ms
	want[1] = 1                     // 1ms+1ns
	want[5] = 1                     // 40ms
	want[6] = 1                     // 100ms
	want[len(deliveryBounds)-1] = 1 // 30s
	want[len(deliveryBounds)] = 1   // 1m
	if !slices.Equal(p.BucketCounts, want) {
		t.Errorf("bucket counts %v, want %v (bounds %v)", p.BucketCounts, want, p.Bounds)
	}
	if p.Count != 7 {
		t.Errorf("count %d, want 7", p.Count)
	}
	wantSum := (time.Millisecond + time.Millisecond + 1 + 40*time.Millisecond + 30*time.Second + time.Minute + 100*time.Millisecond).Seconds()
	if p.Sum != wantSum {
		t.Errorf("sum %v, want %v", p.Sum, wantSum)
	}
	if p.Bounds[0] != 0.001 || p.Bounds[len(p.Bounds)-1] != 30 {
		t.Errorf("bounds %v, want 0.001…30", p.Bounds)
	}
	if len(p.Exemplars) != 0 {
		t.Errorf("exemplars without any traced delivery: %v", p.Exemplars)
	}
}

func TestDeliveryExemplarOnlyForSampledSpans(t *testing.T) {
	t.Parallel()
	m, rec := recordedMetrics(t)

	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	sid := trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	m.DeliveryExemplar(unsampled, 3*time.Millisecond)
	m.DeliveryExemplar(context.Background(), 3*time.Millisecond)
	if p := deliveryPoint(t, rec); len(p.Exemplars) != 0 || p.Count != 0 {
		t.Fatalf("unsampled: exemplars %v, count %d", p.Exemplars, p.Count)
	}

	sampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	m.DeliveryExemplar(sampled, 3*time.Millisecond)
	p := deliveryPoint(t, rec)
	if len(p.Exemplars) != 1 {
		t.Fatalf("exemplars %v, want 1", p.Exemplars)
	}
	e := p.Exemplars[0]
	if !slices.Equal(e.TraceID, tid[:]) || !slices.Equal(e.SpanID, sid[:]) || e.Value != 0.003 {
		t.Errorf("exemplar %+v", e)
	}
	if p.Count != 0 {
		t.Errorf("an exemplar counted a delivery: count %d", p.Count)
	}
}

// Writers on many goroutines: every tallied latency is counted once.
func TestDeliveredConcurrent(t *testing.T) {
	t.Parallel()
	m, rec := recordedMetrics(t)
	const writers, writes, perWrite = 8, 500, 7
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			var tally DeliveryTally
			for i := range writes {
				for j := range perWrite {
					tally.Add(time.Duration(w*i+j) * time.Millisecond)
				}
				m.Delivered(&tally)
			}
		})
	}
	wg.Wait()
	p := deliveryPoint(t, rec)
	var sum uint64
	for _, c := range p.BucketCounts {
		sum += c
	}
	if p.Count != writers*writes*perWrite || sum != p.Count {
		t.Errorf("count %d, bucket total %d, want %d", p.Count, sum, writers*writes*perWrite)
	}
}

func TestDeliveredOnNilMetricsEmptiesTally(t *testing.T) {
	t.Parallel()
	var m *Metrics
	var tally DeliveryTally
	tally.Add(time.Millisecond)
	m.Delivered(&tally)
	m.DeliveryExemplar(context.Background(), time.Millisecond)
	if tally.Len() != 0 {
		t.Errorf("tally holds %d after Delivered on nil Metrics", tally.Len())
	}
}
