package observability

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// A node that exports no traces builds no session span: the session still
// gets a valid, fresh span context (its traceparent goes out in the hello
// and links the session's next connection), but nothing is recorded and
// the connect pays a few allocations, not the SDK span's attributes and
// options (issue 20 item 4).
func TestStartSessionWithoutExporterBuildsNoSpan(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tel, err := Setup(context.Background(), Config{Node: "n", TraceSampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	attrs := SessionAttrs{SessionID: "0123456789abcdef", Topics: []string{"a", "b"}, Transport: "sse", Node: "n", Region: "r"}

	ctx, span := tel.StartSession(context.Background(), attrs)
	if span.IsRecording() {
		t.Error("session span is recording on a node that exports no traces")
	}
	sc := span.SpanContext()
	if !sc.IsValid() || !trace.SpanContextFromContext(ctx).Equal(sc) || EventTraceparent(ctx) == "" {
		t.Fatalf("session span context %v (in ctx: %v), want a valid one carried by ctx", sc, trace.SpanContextFromContext(ctx))
	}
	if !sc.IsSampled() {
		t.Error("ratio 1: the session's span context is not marked sampled")
	}
	_, again := tel.StartSession(context.Background(), attrs)
	if again.SpanContext().TraceID() == sc.TraceID() || again.SpanContext().SpanID() == sc.SpanID() {
		t.Error("two sessions got the same trace or span id")
	}
	// A parent in ctx keeps its trace, as the SDK's span would.
	child, cspan := tel.StartSession(ctx, attrs)
	if cspan.SpanContext().TraceID() != sc.TraceID() || cspan.SpanContext().SpanID() == sc.SpanID() || EventTraceparent(child) == EventTraceparent(ctx) {
		t.Errorf("child session %v of %v: want the parent's trace and a span id of its own", cspan.SpanContext(), sc)
	}

	allocs := testing.AllocsPerRun(200, func() {
		_, s := tel.StartSession(context.Background(), attrs)
		s.End()
	})
	if allocs > 3 {
		t.Errorf("StartSession without an exporter: %.0f allocations, want at most 3", allocs)
	}
}

// With a span processor (an exporter, here the test recorder), session
// spans are still built and recorded with their attributes.
func TestStartSessionWithExporterRecords(t *testing.T) {
	tel, rec, err := NewTestTelemetry(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	_, span := tel.StartSession(context.Background(), SessionAttrs{SessionID: "0123456789abcdef", Topics: []string{"a"}})
	if !span.IsRecording() {
		t.Fatal("session span not recording with a span processor")
	}
	span.End()
	if got := rec.EndedNamed(SpanSession); len(got) != 1 {
		t.Fatalf("%d session spans recorded, want 1", len(got))
	}
}
