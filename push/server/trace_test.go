package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/server"
)

func linksTo(s sdktrace.ReadOnlySpan, sc trace.SpanContext) bool {
	for _, l := range s.Links() {
		if l.SpanContext.TraceID() == sc.TraceID() && l.SpanContext.SpanID() == sc.SpanID() {
			return true
		}
	}
	return false
}

// Publish spans are stored with their events; every delivery — live or
// replayed — is a span linked (not parented) to the publish span.
func TestTracesLinkDeliveriesAndReplaysToPublish(t *testing.T) {
	tel, rec, err := observability.NewTestTelemetry(observability.Config{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(t.Context()) })
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) { c.Telemetry = tel })
	s := n.openStream(t, []string{"tr"}, "", nil)
	h, start := hello(t, s)
	if h.Session == "" {
		t.Fatal("no session")
	}

	// The publisher's own trace is the parent of the publish span.
	parent := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	body, _ := json.Marshal(map[string]any{"data": "x"})
	req, _ := http.NewRequest(http.MethodPost, n.URL+"/v1/topics/tr/events", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", parent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	s.next(5 * time.Second)

	var pub sdktrace.ReadOnlySpan
	waitFor(t, 5*time.Second, "publish span", func() bool {
		ps := rec.EndedNamed(observability.SpanPublish)
		if len(ps) == 1 {
			pub = ps[0]
		}
		return pub != nil
	})
	if got := pub.Parent().TraceID().String(); got != "0af7651916cd43dd8448eb211c80319c" {
		t.Fatalf("publish span's parent trace %s, want the publisher's", got)
	}
	// The request's server span and the append's client span, with the
	// names and kinds the publish path gives them (built once, not per call).
	for name, kind := range map[string]trace.SpanKind{
		"POST /v1/topics/:topic/events": trace.SpanKindServer,
		"herald.store.append":           trace.SpanKindClient,
	} {
		waitFor(t, 5*time.Second, name+" span", func() bool {
			ss := rec.EndedNamed(name)
			return len(ss) == 1 && ss[0].SpanKind() == kind && ss[0].SpanContext().TraceID() == pub.SpanContext().TraceID()
		})
	}
	waitFor(t, 5*time.Second, "a live delivery span linked to the publish span", func() bool {
		for _, d := range rec.EndedNamed(observability.SpanDeliver) {
			if linksTo(d, pub.SpanContext()) && d.Parent().TraceID() != pub.SpanContext().TraceID() {
				return true
			}
		}
		return false
	})

	// A resume from before the event replays it: that delivery links to
	// the same publish span, from another node-side trace (the new session).
	before := len(rec.EndedNamed(observability.SpanDeliver))
	r := n.openStream(t, []string{"tr"}, start, nil)
	hello(t, r)
	if ev := r.next(5 * time.Second); ev.Data != "x" {
		t.Fatalf("replay got %+v", ev)
	}
	waitFor(t, 5*time.Second, "a replayed delivery span linked to the publish span", func() bool {
		ds := rec.EndedNamed(observability.SpanDeliver)
		for _, d := range ds[before:] {
			if linksTo(d, pub.SpanContext()) {
				return true
			}
		}
		return false
	})
}
