package observability

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func mustTestTelemetry(tb testing.TB, cfg Config) (*Telemetry, *Recorder) {
	tb.Helper()
	tel, rec, err := NewTestTelemetry(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, rec
}

func attrOf(s sdktrace.ReadOnlySpan, k attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func TestEventTraceparentRoundTrip(t *testing.T) {
	t.Parallel()
	tel, _ := mustTestTelemetry(t, Config{})
	ctx, span := tel.StartPublish(context.Background(), "orders")
	defer span.End()
	tp := EventTraceparent(ctx)
	// Same text as the standard propagator would inject.
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	if tp != carrier["traceparent"] {
		t.Fatalf("EventTraceparent = %q, propagator = %q", tp, carrier["traceparent"])
	}
	l, ok := LinkFromTraceparent(tp)
	if !ok {
		t.Fatalf("LinkFromTraceparent(%q) failed", tp)
	}
	sc := span.SpanContext()
	if l.SpanContext.TraceID() != sc.TraceID() || l.SpanContext.SpanID() != sc.SpanID() || !l.SpanContext.IsSampled() || !l.SpanContext.IsRemote() {
		t.Errorf("link %+v does not match span %+v", l.SpanContext, sc)
	}
	if got := EventTraceparent(context.Background()); got != "" {
		t.Errorf("EventTraceparent without span = %q", got)
	}
}

func TestLinkFromTraceparentRejectsMalformed(t *testing.T) {
	t.Parallel()
	const good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if _, ok := LinkFromTraceparent(good); !ok {
		t.Fatal("valid traceparent rejected")
	}
	if l, ok := LinkFromTraceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"); !ok || !l.SpanContext.IsValid() {
		t.Error("future version with extra fields rejected")
	}
	for _, s := range []string{
		"",
		"garbage",
		good[:54],
		good + "0",
		good + "-",      // version 00 has no extra fields
		"ff" + good[2:], // forbidden version
		"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", // upper case
		"00-00000000000000000000000000000000-b7ad6b7169203331-01", // zero trace id
		"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", // zero span id
		"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
		"00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",
		"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-10", // reserved flag bits in version 00
	} {
		if l, ok := LinkFromTraceparent(s); ok {
			t.Errorf("LinkFromTraceparent(%q) accepted: %+v", s, l.SpanContext)
		}
	}
}

func FuzzLinkFromTraceparent(f *testing.F) {
	f.Add("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	f.Add("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
	f.Add("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever")
	f.Fuzz(func(t *testing.T, s string) {
		l, ok := LinkFromTraceparent(s)
		if !ok {
			return
		}
		if !l.SpanContext.IsValid() || !l.SpanContext.IsRemote() {
			t.Fatalf("accepted %q as an invalid span context", s)
		}
		// What we accept, the standard propagator accepts identically.
		ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": s})
		if sc := trace.SpanContextFromContext(ctx); sc.TraceID() != l.SpanContext.TraceID() || sc.SpanID() != l.SpanContext.SpanID() {
			t.Fatalf("%q: ours %v, propagator %v", s, l.SpanContext, sc)
		}
	})
}

func TestStartPublishIsChildOfIncomingTraceparent(t *testing.T) {
	t.Parallel()
	tel, rec := mustTestTelemetry(t, Config{})
	h := http.Header{}
	h.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	ctx := tel.Propagator().Extract(context.Background(), propagation.HeaderCarrier(h))
	_, span := tel.StartPublish(ctx, "orders")
	span.End()
	spans := rec.EndedNamed(SpanPublish)
	if len(spans) != 1 {
		t.Fatalf("%d publish spans", len(spans))
	}
	s := spans[0]
	if s.SpanKind() != trace.SpanKindProducer || s.Parent().SpanID().String() != "b7ad6b7169203331" ||
		s.SpanContext().TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("kind %v parent %v trace %v", s.SpanKind(), s.Parent(), s.SpanContext().TraceID())
	}
	if v, _ := attrOf(s, KeyTopic); v.AsString() != "orders" {
		t.Errorf("%s = %q", KeyTopic, v.AsString())
	}
	if s.InstrumentationScope().Name != InstrumentationName {
		t.Errorf("scope %q", s.InstrumentationScope().Name)
	}
}

// Delivery spans are linked to the publish span (and the session), never
// children of either.
func TestStartDeliveryLinksNotParents(t *testing.T) {
	t.Parallel()
	tel, rec := mustTestTelemetry(t, Config{})
	pubCtx, pub := tel.StartPublish(context.Background(), "orders")
	tp := EventTraceparent(pubCtx)
	pub.End()

	sessCtx, sess := tel.StartSession(context.Background(), SessionAttrs{SessionID: "s1", Topics: []string{"orders"}})
	_, del := tel.StartDelivery(sessCtx, tp, DeliveryAttrs{Topic: "orders", Origin: "eu", Offset: 42})
	if !del.IsRecording() {
		t.Fatal("delivery of a sampled publish not recorded")
	}
	del.End()
	sess.End()

	d := rec.EndedNamed(SpanDeliver)[0]
	if d.Parent().IsValid() {
		t.Errorf("delivery has a parent %v", d.Parent())
	}
	if d.SpanContext().TraceID() == pub.SpanContext().TraceID() || d.SpanContext().TraceID() == sess.SpanContext().TraceID() {
		t.Error("delivery shares a trace with its publish or session")
	}
	if d.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kind %v", d.SpanKind())
	}
	links := d.Links()
	if len(links) != 2 {
		t.Fatalf("%d links, want publish + session", len(links))
	}
	want := map[string]trace.SpanContext{LinkKindPublish: pub.SpanContext(), LinkKindSession: sess.SpanContext()}
	for _, l := range links {
		var kind string
		for _, a := range l.Attributes {
			if a.Key == KeyLinkKind {
				kind = a.Value.AsString()
			}
		}
		if w := want[kind]; l.SpanContext.SpanID() != w.SpanID() || l.SpanContext.TraceID() != w.TraceID() {
			t.Errorf("link %q -> %v, want %v", kind, l.SpanContext, w)
		}
	}
	if v, _ := attrOf(d, KeyOffset); v.AsInt64() != 42 {
		t.Errorf("%s = %v", KeyOffset, v)
	}
	if v, _ := attrOf(d, KeyOrigin); v.AsString() != "eu" {
		t.Errorf("%s = %v", KeyOrigin, v)
	}
}

func TestStartDeliveryUnsampledOrInvalidIsFree(t *testing.T) {
	tel, rec := mustTestTelemetry(t, Config{})
	ctx := context.Background()
	for _, tp := range []string{
		"",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", // not sampled
		"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", // invalid
		"not a traceparent at all, but long enough to pass the length check..",
	} {
		gotCtx, span := tel.StartDelivery(ctx, tp, DeliveryAttrs{Topic: "t", Offset: 1})
		if span.IsRecording() || gotCtx != ctx {
			t.Errorf("StartDelivery(%q) recorded a span", tp)
		}
		span.End()
		allocs := testing.AllocsPerRun(100, func() {
			_, s := tel.StartDelivery(ctx, tp, DeliveryAttrs{Topic: "t", Offset: 1})
			s.End()
		})
		if allocs != 0 {
			t.Errorf("StartDelivery(%q): %v allocs", tp, allocs)
		}
	}
	if n := len(rec.EndedNamed(SpanDeliver)); n != 0 {
		t.Errorf("%d delivery spans recorded", n)
	}
}

func TestDeliverySpanRateCap(t *testing.T) {
	t.Parallel()
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	tel, rec := mustTestTelemetry(t, Config{DeliverySpanRate: 5})
	for range 50 {
		_, s := tel.StartDelivery(context.Background(), tp, DeliveryAttrs{})
		s.End()
	}
	// Burst of one second's worth; the loop takes far less than a second,
	// so at most one more token can have accrued.
	if n := len(rec.EndedNamed(SpanDeliver)); n < 5 || n > 6 {
		t.Errorf("%d delivery spans, want 5 (the cap)", n)
	}
	off, rec2 := mustTestTelemetry(t, Config{DeliverySpanRate: -1})
	_, s := off.StartDelivery(context.Background(), tp, DeliveryAttrs{})
	s.End()
	if n := len(rec2.EndedNamed(SpanDeliver)); n != 0 {
		t.Errorf("negative rate: %d delivery spans", n)
	}
}

func TestStartSessionAttributesAndLinks(t *testing.T) {
	t.Parallel()
	// Ratio below 1 with a never-matching root: only the link can sample it.
	tel, rec := mustTestTelemetry(t, Config{TraceSampleRatio: -1, Node: "n7", Region: "eu"})
	prev, ok := LinkFromTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if !ok {
		t.Fatal("link")
	}
	links := []trace.Link{prev}
	_, span := tel.StartSession(context.Background(), SessionAttrs{
		SessionID: "sess-1", Topics: []string{"a", "b"}, Cursor: "c1", Resumed: true, Reset: true, Replayed: 3,
	}, links...)
	span.End()
	if len(links[0].Attributes) != 0 {
		t.Error("StartSession modified the caller's links")
	}
	got := rec.EndedNamed(SpanSession)
	if len(got) != 1 {
		t.Fatalf("%d session spans (a sampled link must sample the session)", len(got))
	}
	s := got[0]
	if s.Parent().IsValid() {
		t.Error("the previous session became a parent")
	}
	if s.SpanKind() != trace.SpanKindServer || len(s.Links()) != 1 || s.Links()[0].SpanContext.TraceID() != prev.SpanContext.TraceID() {
		t.Errorf("kind %v links %v", s.SpanKind(), s.Links())
	}
	for k, want := range map[attribute.Key]any{
		KeySessionID: "sess-1", KeyCursor: "c1", KeyResumed: true, KeyReset: true, KeyReplayed: int64(3),
		KeyNode: "n7", KeyRegion: "eu",
	} {
		v, ok := attrOf(s, k)
		if !ok || v.AsInterface() != want {
			t.Errorf("%s = %v, want %v", k, v.AsInterface(), want)
		}
	}
	if v, _ := attrOf(s, KeyTopics); len(v.AsStringSlice()) != 2 {
		t.Errorf("%s = %v", KeyTopics, v.AsStringSlice())
	}

	// Without a sampled link the root sampler (here: never) decides.
	_, span = tel.StartSession(context.Background(), SessionAttrs{SessionID: "sess-2"})
	span.End()
	if n := len(rec.EndedNamed(SpanSession)); n != 1 {
		t.Errorf("unlinked session sampled despite ratio -1 (%d spans)", n)
	}
}

func TestRootSamplerFromConfigAndEnv(t *testing.T) {
	for _, tt := range []struct {
		ratio        float64
		env, arg     string
		wantDescPart string
		wantErr      bool
	}{
		{ratio: 0, wantDescPart: "TraceIDRatioBased{0.1}"},
		{ratio: 1, wantDescPart: "TraceIDRatioBased{1}"},
		{ratio: -1, wantDescPart: "TraceIDRatioBased{0}"},
		{env: "always_on", wantDescPart: "AlwaysOnSampler"},
		{env: "parentbased_traceidratio", arg: "0.25", wantDescPart: "TraceIDRatioBased{0.25}"},
		{env: "PARENTBASED_ALWAYS_OFF", wantDescPart: "ParentBased{root:AlwaysOffSampler"},
		{ratio: 0.5, env: "always_off", wantDescPart: "TraceIDRatioBased{0.5}"}, // config wins
		{env: "jaeger_remote", wantErr: true},
		{env: "traceidratio", arg: "2", wantErr: true},
	} {
		t.Run(tt.env+tt.arg, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_SAMPLER", tt.env)
			t.Setenv("OTEL_TRACES_SAMPLER_ARG", tt.arg)
			s, err := rootSampler(tt.ratio)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want error, got %v", s.Description())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := s.Description(); !strings.Contains(d, tt.wantDescPart) {
				t.Errorf("ratio %v env %q: sampler %s, want %s", tt.ratio, tt.env, d, tt.wantDescPart)
			}
		})
	}
}

func TestRateLimiter(t *testing.T) {
	t.Parallel()
	if newRateLimiter(-1).Allow() {
		t.Error("negative rate allowed")
	}
	inf := newRateLimiter(math.Inf(1))
	for range 1000 {
		if !inf.Allow() {
			t.Fatal("infinite rate refused")
		}
	}
	l := newRateLimiter(0.5) // burst 1
	if !l.Allow() || l.Allow() {
		t.Error("rate 0.5: want exactly one token at start")
	}
	if newRateLimiter(0).Allow() {
		t.Error("rate 0 allowed")
	}
	l = newRateLimiter(3) // burst 3, starting full
	for i := range 3 {
		if !l.Allow() {
			t.Fatalf("rate 3: token %d of the initial burst refused", i+1)
		}
	}
	if l.Allow() {
		t.Error("rate 3: a fourth token at once")
	}
}

func BenchmarkStartDeliveryUnsampled(b *testing.B) {
	tel := MustSetup(b, Config{Node: "bench"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, s := tel.StartDelivery(ctx, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", DeliveryAttrs{Topic: "t"})
		s.End()
	}
}

func BenchmarkEventTraceparent(b *testing.B) {
	tel := MustSetup(b, Config{Node: "bench", TraceSampleRatio: 1})
	ctx, span := tel.StartPublish(context.Background(), "t")
	defer span.End()
	b.ReportAllocs()
	for b.Loop() {
		_ = EventTraceparent(ctx)
	}
}
