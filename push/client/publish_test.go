package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"
)

func newTestPublisher(t *testing.T, endpoints ...string) *Publisher {
	p := NewPublisher(PublisherConfig{
		Endpoints:  endpoints,
		Token:      "key",
		MinBackoff: time.Millisecond,
		MaxBackoff: 10 * time.Millisecond,
	})
	t.Cleanup(p.CloseIdleConnections)
	return p
}

func TestPublish(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t)
	p := newTestPublisher(t, f.URL())
	ctx := testContext(t)

	r, err := p.Publish(ctx, "orders", Message{Event: "created", Data: json.RawMessage(`{"id": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Topic: "orders", Origin: "eu", Epoch: "e1", Offset: 1,
		Time: time.Date(2025, 6, 18, 10, 0, 0, 123e6, time.UTC)}
	if r != want {
		t.Fatalf("Result = %+v, want %+v", r, want)
	}
	if _, err := p.Publish(ctx, "orders", Message{Text: "plain \"text\""}); err != nil {
		t.Fatal(err)
	}
	bodies := f.Bodies()
	if bodies[0] != `{"event":"created","data":{"id":1}}` || bodies[1] != `{"data":"plain \"text\""}` {
		t.Fatalf("bodies = %q", bodies)
	}
	req := f.Requests()[0]
	if req.URL.Path != "/v1/topics/orders/events" || req.Header.Get("Authorization") != "Bearer key" ||
		req.Header.Get("Content-Type") != "application/json" || req.Header.Get("Idempotency-Key") == "" {
		t.Fatalf("request: %s %v", req.URL, req.Header)
	}
	if _, err := p.Publish(ctx, "orders", Message{Data: json.RawMessage(`{bad`)}); err == nil {
		t.Fatal("invalid JSON data accepted")
	}
}

// A publish whose response is lost is retried with the same key, and the
// server's deduplication makes it land once.
func TestPublishIdempotentRetries(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t,
		connPlan{applyThenAbort: true},
		connPlan{status: http.StatusBadGateway, code: "bad_gateway"},
		connPlan{},
	)
	p := newTestPublisher(t, f.URL())
	r, err := p.Publish(testContext(t), "orders", Message{Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Duplicate || r.Offset != 1 {
		t.Fatalf("Result = %+v, want the first attempt's offset, marked duplicate", r)
	}
	reqs := f.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d attempts, want 3", len(reqs))
	}
	key := reqs[0].Header.Get("Idempotency-Key")
	for i, r := range reqs {
		if got := r.Header.Get("Idempotency-Key"); got != key || got == "" {
			t.Fatalf("attempt %d key %q, first %q", i, got, key)
		}
	}

	// A caller's key is used as is; a single attempt needs no generated key.
	f2 := newFake(t)
	p2 := NewPublisher(PublisherConfig{Endpoints: []string{f2.URL()}, MaxAttempts: 1})
	t.Cleanup(p2.CloseIdleConnections)
	if _, err := p2.Publish(testContext(t), "t", Message{Text: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Publish(testContext(t), "t", Message{Text: "x", IdempotencyKey: "mine"}); err != nil {
		t.Fatal(err)
	}
	if k0, k1 := f2.Requests()[0].Header.Get("Idempotency-Key"), f2.Requests()[1].Header.Get("Idempotency-Key"); k0 != "" || k1 != "mine" {
		t.Fatalf("keys = %q, %q", k0, k1)
	}
}

func TestPublishRetryAfter(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t, connPlan{status: http.StatusTooManyRequests, code: "rate_limited", retryAfter: "1"}, connPlan{})
	p := newTestPublisher(t, f.URL())
	if _, err := p.Publish(testContext(t), "orders", Message{Text: "x"}); err != nil {
		t.Fatal(err)
	}
	times := f.Times()
	if len(times) != 2 || times[1].Sub(times[0]) < time.Second {
		t.Fatalf("attempts at %v, want 2 at least 1s apart", times)
	}

	// A Retry-After beyond the caller's deadline ends the call at once.
	f2 := newFake(t, connPlan{status: http.StatusServiceUnavailable, code: "overloaded", retryAfter: "30"})
	p2 := newTestPublisher(t, f2.URL())
	ctx, cancel := context.WithTimeout(testContext(t), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := p2.Publish(ctx, "orders", Message{Text: "x"})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 503 || apiErr.RetryAfter != 30*time.Second {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v: waited for a retry it could not make", d)
	}
}

func TestPublishFailover(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t)
	p := newTestPublisher(t, deadURL(t), f.URL())
	for range 3 {
		if _, err := p.Publish(testContext(t), "orders", Message{Text: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.Requests()); n != 3 {
		t.Fatalf("%d requests reached the live endpoint, want 3", n)
	}
	if got := p.preferred.Load(); got != 1 {
		t.Fatalf("preferred endpoint = %d, want 1 after the first failed", got)
	}
}

func TestPublishErrors(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t, connPlan{status: http.StatusBadRequest, code: "invalid_event"})
	p := newTestPublisher(t, f.URL())
	_, err := p.Publish(testContext(t), "orders", Message{Text: "x"})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Code != "invalid_event" || apiErr.Message != "fake says invalid_event" {
		t.Fatalf("err = %#v", err)
	}
	if n := len(f.Requests()); n != 1 {
		t.Fatalf("permanent error retried: %d requests", n)
	}

	f2 := newFake(t, connPlan{status: http.StatusServiceUnavailable, code: "unavailable"})
	p2 := newTestPublisher(t, f2.URL())
	_, err = p2.Publish(testContext(t), "orders", Message{Text: "x"})
	if !errors.As(err, &apiErr) || apiErr.Status != 503 || !apiErr.Temporary() {
		t.Fatalf("err = %v", err)
	}
	if n := len(f2.Requests()); n != DefaultMaxAttempts {
		t.Fatalf("%d attempts, want %d", n, DefaultMaxAttempts)
	}

	if _, err := NewPublisher(PublisherConfig{}).Publish(testContext(t), "t", Message{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no endpoints: %v", err)
	}
}

func TestPublishBatch(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t, connPlan{applyThenAbort: false, status: http.StatusServiceUnavailable, code: "unavailable"}, connPlan{})
	p := newTestPublisher(t, f.URL())
	items := []BatchItem{
		{Topic: "a", Message: Message{Event: "e", Data: json.RawMessage(`[1,2]`)}},
		{Topic: "bad-topic", Message: Message{Text: "x"}},
		{Topic: "b", Message: Message{Text: "y", IdempotencyKey: "k-b"}},
	}
	res, err := p.PublishBatch(testContext(t), items)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Err != nil || res[0].Offset != 1 || res[0].Time.UnixMilli() != 1750240800123 ||
		res[1].Err == nil || res[1].Err.Code != "invalid_topic" || res[2].Err != nil || res[2].Topic != "b" {
		t.Fatalf("results = %+v", res)
	}
	var bodies [2]struct {
		Events []struct {
			IdempotencyKey string `json:"idempotency_key"`
		} `json:"events"`
	}
	for i, b := range f.Bodies() {
		if err := json.Unmarshal([]byte(b), &bodies[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range items {
		k0, k1 := bodies[0].Events[i].IdempotencyKey, bodies[1].Events[i].IdempotencyKey
		if k0 == "" || k0 != k1 {
			t.Fatalf("item %d keys across retries: %q, %q", i, k0, k1)
		}
	}
	if bodies[0].Events[2].IdempotencyKey != "k-b" {
		t.Fatal("caller's key replaced")
	}
}
