package observability

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
)

// deliveryBounds are the upper bounds of herald_delivery_latency_seconds'
// buckets (1ms…30s); a value equal to a bound falls into that bound's bucket.
var deliveryBounds = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
	10 * time.Second, 30 * time.Second,
}

// deliveryBuckets is the number of buckets: one per bound and one above the
// last.
const deliveryBuckets = len(deliveryBounds) + 1

// DeliveryTally gathers the delivery latencies of the events of one write,
// so that a write of many events records them with a few atomic adds
// (Metrics.Delivered) instead of a histogram measurement per event. The zero
// value is empty; a tally belongs to one goroutine.
type DeliveryTally struct {
	n      uint32
	sum    time.Duration
	counts [deliveryBuckets]uint32
}

// Add counts one event written latency after its publish timestamp.
// Negative values (clock skew between nodes) count as 0.
func (t *DeliveryTally) Add(latency time.Duration) {
	latency = max(latency, 0)
	t.counts[deliveryBucket(latency)]++
	t.n++
	t.sum += latency
}

// deliveryBucket is the index of the bucket a non-negative latency falls
// into.
func deliveryBucket(latency time.Duration) int {
	i := 0
	for i < len(deliveryBounds) && latency > deliveryBounds[i] {
		i++
	}
	return i
}

// Len is the number of latencies gathered since the tally was last
// recorded.
func (t *DeliveryTally) Len() int { return int(t.n) }

// deliveryHistogram holds herald_delivery_latency_seconds. Herald keeps it
// itself rather than in an OTel instrument, which costs a measurement (~200
// ns, a contended sum) per event: at a million deliveries a second that was
// over a quarter of a node's CPU (docs/adr/0012-delivery-latency-histogram.md).
// It reaches the Prometheus exporter and the OTLP reader as a Producer of
// one cumulative histogram. Exemplars: the last traced delivery per bucket.
type deliveryHistogram struct {
	scope     instrumentation.Scope
	start     time.Time
	sum       atomic.Int64 // nanoseconds
	counts    [deliveryBuckets]atomic.Uint64
	exemplars [deliveryBuckets]atomic.Pointer[metricdata.Exemplar[float64]]
}

func newDeliveryHistogram(version string) *deliveryHistogram {
	return &deliveryHistogram{
		scope: instrumentation.Scope{Name: InstrumentationName, Version: version},
		start: time.Now(),
	}
}

// add moves a tally into the histogram and empties the tally.
func (h *deliveryHistogram) add(t *DeliveryTally) {
	if t.n == 0 {
		return
	}
	for i, c := range t.counts {
		if c != 0 {
			h.counts[i].Add(uint64(c))
		}
	}
	h.sum.Add(int64(t.sum))
	*t = DeliveryTally{}
}

// exemplar records ctx's span, when it is sampled, as the exemplar of the
// bucket latency falls into. It does not count the latency (a tally does).
func (h *deliveryHistogram) exemplar(ctx context.Context, latency time.Duration) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return
	}
	latency = max(latency, 0)
	tid, sid := sc.TraceID(), sc.SpanID()
	h.exemplars[deliveryBucket(latency)].Store(&metricdata.Exemplar[float64]{
		Time: time.Now(), Value: latency.Seconds(), TraceID: tid[:], SpanID: sid[:],
	})
}

// Produce implements sdkmetric.Producer: the histogram's current state,
// with Count always the sum of the bucket counts read.
func (h *deliveryHistogram) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	counts := make([]uint64, deliveryBuckets)
	var total uint64
	for i := range counts {
		counts[i] = h.counts[i].Load()
		total += counts[i]
	}
	bounds := make([]float64, len(deliveryBounds))
	for i, b := range deliveryBounds {
		bounds[i] = b.Seconds()
	}
	var ex []metricdata.Exemplar[float64]
	for i := range h.exemplars {
		if e := h.exemplars[i].Load(); e != nil {
			ex = append(ex, *e)
		}
	}
	d := instruments[instDeliveryLatency]
	return []metricdata.ScopeMetrics{{
		Scope: h.scope,
		Metrics: []metricdata.Metrics{{
			Name: d.otel, Description: d.desc, Unit: d.unit,
			Data: metricdata.Histogram[float64]{
				Temporality: metricdata.CumulativeTemporality,
				DataPoints: []metricdata.HistogramDataPoint[float64]{{
					StartTime:    h.start,
					Time:         time.Now(),
					Count:        total,
					Bounds:       bounds,
					BucketCounts: counts,
					Sum:          time.Duration(h.sum.Load()).Seconds(),
					Exemplars:    ex,
				}},
			},
		}},
	}}, nil
}
