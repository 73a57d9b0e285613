package observability

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
)

// MustSetup builds a Telemetry (no OTLP) and shuts it down at cleanup.
func MustSetup(tb testing.TB, cfg Config) *Telemetry {
	tb.Helper()
	tel, err := Setup(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("Setup: %v", err)
	}
	tb.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// scrape GETs the metrics handler the way Prometheus' text scraper or a
// curl does, and parses it with expfmt.
func scrape(tb testing.TB, tel *Telemetry) map[string]*dto.MetricFamily {
	tb.Helper()
	rr := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	if rr.Code != 200 {
		tb.Fatalf("GET /metrics: %d %s", rr.Code, rr.Body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rr.Body)
	if err != nil {
		tb.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// exerciseMetrics calls every Metrics method once.
func exerciseMetrics(m *Metrics) {
	ctx := context.Background()
	m.StreamOpened(ctx)
	m.StreamOpened(ctx)
	m.StreamClosed(ctx, TransportSSE, DisconnectSlow)
	m.Connect(ctx, TransportSSE, ConnectAccepted)
	m.Resume(ctx, ResumeReplayed, 7)
	m.Publish(ctx, PublishOK, 3*time.Millisecond)
	m.IngestLines(ctx, IngestOK, 500)
	var tally DeliveryTally
	tally.Add(20 * time.Millisecond)
	m.Delivered(&tally)
	m.RedisCall(ctx, "append", "primary", "ok", time.Millisecond)
	m.Protection(ctx, "ingress", "publish", "qps", "block")
	m.BreakerState("primary", BreakerOpen)
	m.OwnershipChange(ctx, OwnershipTakeover)
	m.JWKSRefreshed(true)
	m.JWKSRefreshed(false)
	m.JWKSKeysLoaded(4)
	m.JWKSUnknownKID(false)
	m.RegisterGauges(func() GaugeSnapshot {
		return GaugeSnapshot{
			QueueDepth:        12,
			GossipMembers:     map[string]int{"alive": 3, "suspect": 1},
			GossipHealthScore: 2,
			ReplicationLag:    map[string]time.Duration{"us-east": 1500 * time.Millisecond},
		}
	})
}

func TestExposedMetricNames(t *testing.T) {
	t.Parallel()
	tel := MustSetup(t, Config{Version: "v1.2.3", Node: "n1", Region: "eu-west", Zone: "eu-west-1a"})
	exerciseMetrics(tel.Metrics())
	fams := scrape(t, tel)

	wantType := map[string]dto.MetricType{
		MetricStreamsOpen: dto.MetricType_GAUGE, MetricStreamConnects: dto.MetricType_COUNTER,
		MetricStreamDisconnects: dto.MetricType_COUNTER, MetricResumes: dto.MetricType_COUNTER,
		MetricReplayedEvents: dto.MetricType_HISTOGRAM, MetricPublishes: dto.MetricType_COUNTER,
		MetricPublishDuration: dto.MetricType_HISTOGRAM, MetricDeliveryLatency: dto.MetricType_HISTOGRAM,
		MetricQueueDepth: dto.MetricType_GAUGE, MetricRedisCallDuration: dto.MetricType_HISTOGRAM,
		MetricProtectionEvents: dto.MetricType_COUNTER, MetricBreakerState: dto.MetricType_GAUGE,
		MetricGossipMembers: dto.MetricType_GAUGE, MetricGossipHealthScore: dto.MetricType_GAUGE,
		MetricSessionOwnershipChanges: dto.MetricType_COUNTER, MetricReplicationLag: dto.MetricType_GAUGE,
		MetricBuildInfo: dto.MetricType_GAUGE, MetricJWKSRefreshes: dto.MetricType_COUNTER,
		MetricJWKSKeys: dto.MetricType_GAUGE, MetricJWKSUnknownKID: dto.MetricType_COUNTER,
		MetricIngestLines: dto.MetricType_COUNTER,
	}
	names := MetricNames()
	if len(names) != len(wantType) {
		t.Errorf("MetricNames has %d names, test knows %d", len(names), len(wantType))
	}
	for _, n := range names {
		f, ok := fams[n]
		if !ok {
			t.Errorf("%s not exposed", n)
			continue
		}
		if f.GetType() != wantType[n] {
			t.Errorf("%s: type %v, want %v", n, f.GetType(), wantType[n])
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels[LabelNode] != "n1" || labels[LabelRegion] != "eu-west" || labels[LabelZone] != "eu-west-1a" {
				t.Errorf("%s: constant labels missing: %v", n, labels)
			}
			for k := range labels {
				if strings.HasPrefix(k, "otel_scope") {
					t.Errorf("%s: scope label %s exposed", n, k)
				}
			}
		}
	}
	// Every exposed herald_ family is listed (no accidental extra names).
	for n := range fams {
		if strings.HasPrefix(n, "herald_") && !slices.Contains(names, n) {
			t.Errorf("exposed %s is not in MetricNames", n)
		}
	}
	for _, n := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total",
		"process_resident_memory_bytes", "process_open_fds", "process_max_fds", "target_info"} {
		if _, ok := fams[n]; !ok {
			t.Errorf("%s not exposed", n)
		}
	}

	// Spot-check values and labels.
	checks := []struct {
		fam    string
		labels map[string]string
		want   float64
	}{
		{MetricStreamsOpen, nil, 1},
		{MetricStreamDisconnects, map[string]string{LabelReason: DisconnectSlow}, 1},
		{MetricStreamDisconnects, map[string]string{LabelReason: DisconnectDrain}, 0}, // pre-initialised
		{MetricStreamConnects, map[string]string{LabelResult: ConnectAccepted}, 1},
		{MetricStreamConnects, map[string]string{LabelResult: ConnectShed}, 0},
		{MetricJWKSRefreshes, map[string]string{LabelResult: JWKSRefreshOK}, 1},
		{MetricJWKSRefreshes, map[string]string{LabelResult: JWKSRefreshFailed}, 1},
		{MetricJWKSKeys, nil, 4},
		{MetricJWKSUnknownKID, map[string]string{LabelOutcome: JWKSKIDLimited}, 1},
		{MetricJWKSUnknownKID, map[string]string{LabelOutcome: JWKSKIDRefresh}, 0},
		{MetricResumes, map[string]string{LabelOutcome: ResumeReplayed}, 1},
		{MetricPublishes, map[string]string{LabelResult: PublishOK}, 1},
		{MetricIngestLines, map[string]string{LabelResult: IngestOK}, 500},
		{MetricIngestLines, map[string]string{LabelResult: IngestLimited}, 0}, // pre-initialised
		{MetricQueueDepth, nil, 12},
		{MetricBreakerState, map[string]string{LabelTarget: "primary"}, 2},
		{MetricGossipMembers, map[string]string{LabelState: "suspect"}, 1},
		{MetricGossipHealthScore, nil, 2},
		{MetricSessionOwnershipChanges, map[string]string{LabelKind: OwnershipTakeover}, 1},
		{MetricReplicationLag, map[string]string{LabelOrigin: "us-east"}, 1.5},
		{MetricReplicationLag, map[string]string{LabelOrigin: "eu-west"}, 0}, // own region
		{MetricProtectionEvents, map[string]string{LabelLayer: "ingress", LabelResource: "publish", LabelReason: "qps", LabelKind: "block"}, 1},
		{MetricBuildInfo, map[string]string{LabelVersion: "v1.2.3"}, 1},
	}
	for _, c := range checks {
		if got, ok := sampleValue(fams[c.fam], c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.fam, c.labels, got, ok, c.want)
		}
	}
	if h, ok := histogram(fams[MetricReplayedEvents], nil); !ok || h.GetSampleCount() != 1 || h.GetSampleSum() != 7 {
		t.Errorf("%s: %v", MetricReplayedEvents, h)
	}
	if h, ok := histogram(fams[MetricPublishDuration], map[string]string{LabelResult: PublishOK}); !ok || h.GetSampleCount() != 1 {
		t.Errorf("%s: %v", MetricPublishDuration, h)
	}
	if h, ok := histogram(fams[MetricRedisCallDuration], map[string]string{LabelOp: "append", LabelTarget: "primary", LabelResult: "ok"}); !ok || h.GetSampleCount() != 1 {
		t.Errorf("%s: %v", MetricRedisCallDuration, h)
	}
	if h, ok := histogram(fams[MetricDeliveryLatency], nil); !ok || h.GetSampleCount() != 1 || h.GetSampleSum() != 0.02 {
		t.Errorf("%s: %v", MetricDeliveryLatency, h)
	}
}

func matches(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func sampleValue(f *dto.MetricFamily, labels map[string]string) (float64, bool) {
	for _, m := range f.GetMetric() {
		if !matches(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

func histogram(f *dto.MetricFamily, labels map[string]string) (*dto.Histogram, bool) {
	for _, m := range f.GetMetric() {
		if matches(m, labels) && m.Histogram != nil {
			return m.Histogram, true
		}
	}
	return nil, false
}

func TestConstantLabelsOmittedWhenEmpty(t *testing.T) {
	t.Parallel()
	tel := MustSetup(t, Config{Node: "solo"})
	fams := scrape(t, tel)
	for _, m := range fams[MetricStreamsOpen].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == LabelRegion || l.GetName() == LabelZone {
				t.Errorf("empty %s exposed as a label", l.GetName())
			}
		}
	}
	if _, ok := sampleValue(fams["go_goroutines"], map[string]string{LabelNode: "solo"}); !ok {
		t.Error("go_goroutines lacks the node label")
	}
}

func TestRegisterGaugesReplaceAndRemove(t *testing.T) {
	t.Parallel()
	tel, rec, err := NewTestTelemetry(Config{Region: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	m := tel.Metrics()
	if got := rec.Value(MetricQueueDepth); got != 0 {
		t.Fatalf("queue depth before registration = %v", got)
	}
	m.RegisterGauges(func() GaugeSnapshot { return GaugeSnapshot{QueueDepth: 5} })
	m.RegisterGauges(func() GaugeSnapshot { return GaugeSnapshot{QueueDepth: 9, GossipMembers: map[string]int{"alive": 2}} })
	if got := rec.Value(MetricQueueDepth); got != 9 {
		t.Errorf("queue depth = %v, want 9 (last registration wins)", got)
	}
	if got := rec.Value(MetricGossipMembers, attribute.String(LabelState, "alive")); got != 2 {
		t.Errorf("alive members = %v, want 2", got)
	}
	if got := rec.Value(MetricReplicationLag, attribute.String(LabelOrigin, "eu")); got != 0 {
		t.Errorf("own-region lag = %v, want 0", got)
	}
	m.RegisterGauges(nil)
	rm, err := rec.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, x := range sm.Metrics {
			if x.Name == "herald.queue.depth" {
				t.Errorf("queue depth still reported after RegisterGauges(nil): %+v", x.Data)
			}
		}
	}
}

func TestRecorderReadsMetrics(t *testing.T) {
	t.Parallel()
	tel, rec, err := NewTestTelemetry(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	exerciseMetrics(tel.Metrics())
	tel.Metrics().Connect(context.Background(), TransportSSE, ConnectShed)
	tel.Metrics().Connect(context.Background(), TransportSSE, ConnectShed)
	if got := rec.Value(MetricStreamConnects, attribute.String(LabelResult, ConnectShed)); got != 2 {
		t.Errorf("shed connects = %v, want 2", got)
	}
	if got := rec.Value("herald.stream.connects"); got != 3 {
		t.Errorf("all connects by instrument name = %v, want 3", got)
	}
	if got := rec.HistogramCount(MetricPublishDuration, attribute.String(LabelResult, PublishOK)); got != 1 {
		t.Errorf("publish duration count = %v, want 1", got)
	}
	if got := rec.HistogramSum(MetricReplayedEvents); got != 7 {
		t.Errorf("replayed sum = %v, want 7", got)
	}
	// The production Prometheus handler works on a test Telemetry too.
	if _, ok := scrape(t, tel)[MetricStreamConnects]; !ok {
		t.Errorf("test telemetry does not expose %s", MetricStreamConnects)
	}
}

func TestNilMetricsAndTelemetryAreNoOps(t *testing.T) {
	t.Parallel()
	var tel *Telemetry
	exerciseMetrics(tel.Metrics())
	ctx, span := tel.StartPublish(context.Background(), "t")
	span.End()
	_, span = tel.StartDelivery(ctx, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", DeliveryAttrs{})
	span.End()
	_, span = tel.StartSession(ctx, SessionAttrs{SessionID: "s"})
	span.End()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	_ = tel.TracerProvider().Tracer("x")
	_ = tel.MeterProvider().Meter("x")
	if tel.Propagator() == nil || tel.MetricsHandler() == nil || tel.Registerer() == nil {
		t.Error("nil Telemetry returned a nil part")
	}
}

func TestUncachedLabelSetsStillRecorded(t *testing.T) {
	t.Parallel()
	tel, rec, err := NewTestTelemetry(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	n := maxCachedAttrSets + 10
	for i := range n {
		tel.Metrics().RedisCall(context.Background(), "op", fmt.Sprintf("replica:%d", i), "ok", time.Millisecond)
	}
	if got := rec.HistogramCount(MetricRedisCallDuration); got != uint64(n) {
		t.Errorf("redis calls recorded = %d, want %d", got, n)
	}
}

// Hot paths must not allocate: Delivered runs once per write to a subscriber.
func TestHotPathAllocations(t *testing.T) {
	tel := MustSetup(t, Config{Node: "n"})
	m := tel.Metrics()
	ctx := context.Background()
	m.Publish(ctx, PublishOK, time.Millisecond) // warm the caches
	var tally DeliveryTally
	for name, fn := range map[string]func(){
		"Delivered": func() {
			tally.Add(3 * time.Millisecond)
			tally.Add(40 * time.Millisecond)
			m.Delivered(&tally)
		},
		"Publish":      func() { m.Publish(ctx, PublishOK, time.Millisecond) },
		"Connect":      func() { m.Connect(ctx, TransportSSE, ConnectAccepted) },
		"StreamClosed": func() { m.StreamClosed(ctx, TransportSSE, DisconnectClient) },
		"RedisCall":    func() { m.RedisCall(ctx, "append", "primary", "ok", time.Millisecond) },
	} {
		fn()
		if a := testing.AllocsPerRun(200, fn); a != 0 {
			t.Errorf("%s: %v allocs per call, want 0", name, a)
		}
	}
}

func benchmarkMetrics(b *testing.B, fn func(context.Context, *Metrics)) {
	tel := MustSetup(b, Config{Node: "bench", Region: "eu"})
	m := tel.Metrics()
	ctx := context.Background()
	fn(ctx, m)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			fn(ctx, m)
		}
	})
}

// BenchmarkMetricsDelivered is the cost of recording one delivery: a write
// of 64 events, per event.
func BenchmarkMetricsDelivered(b *testing.B) {
	tel := MustSetup(b, Config{Node: "bench", Region: "eu"})
	m := tel.Metrics()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var tally DeliveryTally
		lat := time.Duration(0)
		for pb.Next() {
			lat = (lat + 97*time.Microsecond) % (300 * time.Millisecond)
			tally.Add(lat)
			if tally.Len() == 64 {
				m.Delivered(&tally)
			}
		}
	})
}

func BenchmarkMetricsPublish(b *testing.B) {
	benchmarkMetrics(b, func(ctx context.Context, m *Metrics) { m.Publish(ctx, PublishOK, time.Millisecond) })
}

func BenchmarkMetricsConnect(b *testing.B) {
	benchmarkMetrics(b, func(ctx context.Context, m *Metrics) { m.Connect(ctx, TransportSSE, ConnectAccepted) })
}

func BenchmarkMetricsRedisCall(b *testing.B) {
	benchmarkMetrics(b, func(ctx context.Context, m *Metrics) { m.RedisCall(ctx, "append", "primary", "ok", time.Millisecond) })
}
