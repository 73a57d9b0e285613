package observability

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// A node that exports no traces builds no span on the publish path (the
// request's server span, the publish span, the store call's span): each
// gets a valid span context of its own under its parent, sampled as the
// SDK's span would be, so the traceparent stored with the event is what it
// was; nothing is recorded (issue 20 item 4).
func TestPublishSpansWithoutExporterBuildNoSpan(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ratio       float64
		traceparent string // the publisher's, if any
		wantSampled bool
	}{
		{"root-sampled", 1, "", true},
		{"root-unsampled", -1, "", false}, // negative: no new trace sampled (0 is the 0.1 default)
		{"remote-parent-sampled", -1, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", true},
		{"remote-parent-unsampled", 1, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tel := telemetryWithoutExporter(t, tc.ratio)
			ctx := context.Background()
			if tc.traceparent != "" {
				ctx = tel.Propagator().Extract(ctx, propagation.MapCarrier{"traceparent": tc.traceparent})
			}
			parent := trace.SpanContextFromContext(ctx)
			ctx, srv := tel.StartSpan(ctx, "POST /v1/topics/:topic/events", trace.SpanKindServer, trace.WithSpanKind(trace.SpanKindServer))
			ctx, pub := tel.StartPublish(ctx, "t")
			_, st := tel.StartSpan(ctx, "herald.store.append", trace.SpanKindClient, trace.WithSpanKind(trace.SpanKindClient))
			spans := []trace.Span{srv, pub, st}
			for i, span := range spans {
				sc := span.SpanContext()
				if span.IsRecording() {
					t.Errorf("span %d is recording on a node that exports no traces", i)
				}
				if !sc.IsValid() || sc.IsSampled() != tc.wantSampled {
					t.Errorf("span %d: context %v, want valid, sampled=%v", i, sc, tc.wantSampled)
				}
				if parent.IsValid() && sc.TraceID() != parent.TraceID() {
					t.Errorf("span %d: trace %s, want the publisher's %s", i, sc.TraceID(), parent.TraceID())
				}
				if i > 0 && (sc.TraceID() != spans[0].SpanContext().TraceID() || sc.SpanID() == spans[i-1].SpanContext().SpanID()) {
					t.Errorf("span %d: want the request's trace and a span id of its own", i)
				}
			}
			if tp := EventTraceparent(ctx); tp == "" {
				t.Error("no traceparent to store with the event")
			}
		})
	}
}

// telemetryWithoutExporter is a node's telemetry with no trace exporter
// (no span processor), sampling roots at ratio.
func telemetryWithoutExporter(tb testing.TB, ratio float64) *Telemetry {
	tb.Helper()
	if t, ok := tb.(*testing.T); ok {
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
		t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	}
	tel, err := Setup(context.Background(), Config{Node: "n", TraceSampleRatio: ratio})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// BenchmarkPublishSpans: the publish path's three spans (request, publish,
// store call) started and ended on a node that exports no traces, as the
// SDK builds them ("sdk", what the path did before) and as it does now.
func BenchmarkPublishSpans(b *testing.B) {
	tel := telemetryWithoutExporter(b, 1)
	server := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	client := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	b.Run("sdk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx, srv := tel.Tracer().Start(context.Background(), "POST /v1/topics/:topic/events", server...)
			ctx, pub := tel.Tracer().Start(ctx, SpanPublish, producerSpan, trace.WithAttributes(KeyTopic.String("t")))
			_, st := tel.Tracer().Start(ctx, "herald.store.append", client...)
			st.End()
			pub.End()
			srv.End()
		}
	})
	b.Run("now", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx, srv := tel.StartSpan(context.Background(), "POST /v1/topics/:topic/events", trace.SpanKindServer, server...)
			ctx, pub := tel.StartPublish(ctx, "t")
			_, st := tel.StartSpan(ctx, "herald.store.append", trace.SpanKindClient, client...)
			st.End()
			pub.End()
			srv.End()
		}
	})
}

// A node that exports no traces builds no delivery span, even for a
// sampled publish: nothing would export it, and its context goes nowhere.
func TestDeliverySpanWithoutExporterIsFree(t *testing.T) {
	tel := telemetryWithoutExporter(t, 1)
	ctx := context.Background()
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	gotCtx, span := tel.StartDelivery(ctx, tp, DeliveryAttrs{Topic: "t", Origin: "eu", Offset: 1})
	if span.IsRecording() || gotCtx != ctx {
		t.Fatal("StartDelivery built a span on a node that exports no traces")
	}
	span.End()
	if allocs := testing.AllocsPerRun(100, func() {
		_, s := tel.StartDelivery(ctx, tp, DeliveryAttrs{Topic: "t", Origin: "eu", Offset: 1})
		s.End()
	}); allocs != 0 {
		t.Errorf("StartDelivery without an exporter: %v allocations", allocs)
	}
}
