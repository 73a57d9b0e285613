package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/sse"
)

var errDone = errors.New("test done")

// collector is a handler that records events and stops after a number of
// user (non-control) events.
type collector struct {
	mu     sync.Mutex
	all    []Event
	user   []Event
	stopAt int
}

func (c *collector) handle(e Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all = append(c.all, e)
	if e.IsControl() {
		return nil
	}
	if len(c.user)+1 == c.stopAt {
		return errDone // this event is not consumed
	}
	c.user = append(c.user, e)
	return nil
}

func (c *collector) users() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.user)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func fastConfig(endpoints ...string) StreamConfig {
	return StreamConfig{
		Endpoints:  endpoints,
		Topics:     []string{"a", "b"},
		From:       "earliest",
		Token:      "tok",
		MinBackoff: time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
	}
}

func TestStreamResumesAfterDrop(t *testing.T) {
	for _, end := range []endMode{endAbort, endClose} {
		t.Run(map[endMode]string{endAbort: "abort", endClose: "clean close"}[end], func(t *testing.T) {
			checkNoGoroutineLeak(t)
			f := newFake(t,
				connPlan{send: 3, partial: true, end: end},
				connPlan{send: -1, end: endHang},
			)
			cfg := fastConfig(f.URL())
			cfg.From = "earliest"
			var disconnects []error
			cfg.OnDisconnect = func(_ string, err error) { disconnects = append(disconnects, err) }
			s := Subscribe(cfg)
			c := &collector{stopAt: 6}
			if err := s.Run(testContext(t), c.handle); err != errDone {
				t.Fatalf("Run = %v, want the handler's error", err)
			}

			var ids, data []string
			for _, e := range c.users() {
				ids = append(ids, e.ID)
				data = append(data, e.Data)
			}
			if want := []string{"1", "2", "3", "4", "5"}; !slices.Equal(ids, want) {
				t.Fatalf("ids = %v, want %v (partial event 4 must not be delivered early or twice)", ids, want)
			}
			if data[2] != "multi\nline\nevent-3" || data[3] != "event-4" {
				t.Fatalf("data = %q", data)
			}
			if got := s.LastEventID(); got != "5" {
				t.Fatalf("LastEventID = %q, want 5: event 6 failed in the handler", got)
			}

			reqs := f.Requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			first, second := reqs[0], reqs[1]
			if q := first.URL.Query(); !slices.Equal(q["topic"], []string{"a", "b"}) || q.Get("from") != "earliest" || first.Header.Get("Last-Event-ID") != "" {
				t.Fatalf("first request: %v %v", first.URL, first.Header)
			}
			if q := second.URL.Query(); second.Header.Get("Last-Event-ID") != "3" || q.Has("last_event_id") || q.Has("from") || !slices.Equal(q["topic"], []string{"a", "b"}) {
				t.Fatalf("reconnect: %v Last-Event-ID=%q", second.URL, second.Header.Get("Last-Event-ID"))
			}
			for _, r := range reqs {
				if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Accept") != "text/event-stream" {
					t.Fatalf("headers: %v", r.Header)
				}
			}
			if len(disconnects) != 2 || disconnects[1] != errDone {
				t.Fatalf("OnDisconnect reasons = %v", disconnects)
			}
			if end == endClose && disconnects[0] != io.EOF {
				t.Fatalf("clean close reported as %v, want io.EOF", disconnects[0])
			}
		})
	}
}

func TestStreamControlEvents(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t, connPlan{send: 1, end: endHang})
	cfg := fastConfig(f.URL())
	cfg.LastEventID = "4"
	cfg.From = "earliest" // LastEventID takes precedence
	s := Subscribe(cfg)
	c := &collector{stopAt: 1}
	if err := s.Run(testContext(t), c.handle); err != errDone {
		t.Fatal(err)
	}
	if len(c.all) != 2 || c.all[0].Type != EventHello || c.all[1].ID != "5" {
		t.Fatalf("events = %+v", c.all)
	}
	h, err := ParseHello(c.all[0])
	if err != nil || h.Cursor != "4" || !slices.Equal(h.Topics, []string{"a", "b"}) {
		t.Fatalf("hello = %+v, %v", h, err)
	}
	if got := s.LastEventID(); got != "4" {
		t.Fatalf("LastEventID = %q: the hello's id was accepted", got)
	}
	// A configured cursor goes in the query of the first request only.
	if r := f.Requests()[0]; r.URL.Query().Get("last_event_id") != "4" || r.URL.Query().Has("from") || r.Header.Get("Last-Event-ID") != "" {
		t.Fatalf("first request with cursor: %v %v", r.URL, r.Header)
	}
}

func TestParseReset(t *testing.T) {
	data := `{"streams":[{"topic":"a","origin":"eu","reason":"trimmed","lost_from":3,"lost_to":9,"epoch":"e2","continue_from":12},` +
		`{"topic":"b","origin":"eu","reason":"epoch_changed","lost_from":5,"lost_to":0,"epoch":"f","continue_from":4}]}`
	rs, err := ParseReset(Event{Type: EventReset, Data: data})
	want := []StreamReset{
		{Topic: "a", Origin: "eu", Reason: "trimmed", LostFrom: 3, LostTo: 9, Epoch: "e2", ContinueFrom: 12},
		{Topic: "b", Origin: "eu", Reason: "epoch_changed", LostFrom: 5, Epoch: "f", ContinueFrom: 4},
	}
	if err != nil || len(rs) != 2 || rs[0] != want[0] || rs[1] != want[1] {
		t.Fatalf("ParseReset = %+v, %v", rs, err)
	}
	if _, err := ParseReset(Event{Type: "update", Data: "{}"}); err == nil {
		t.Fatal("ParseReset accepted a user event")
	}
}

func TestStreamRetryAfter(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t,
		connPlan{status: http.StatusServiceUnavailable, code: "draining", retryAfter: "1"},
		connPlan{send: -1, end: endHang},
	)
	s := Subscribe(fastConfig(f.URL()))
	c := &collector{stopAt: 1}
	if err := s.Run(testContext(t), c.handle); err != errDone {
		t.Fatal(err)
	}
	times := f.Times()
	if len(times) != 2 {
		t.Fatalf("%d requests, want 2", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Fatalf("reconnected after %v, Retry-After was 1s", gap)
	}
}

// A server shedding load answers 200, sends retry: and closes; the client
// comes back, and since it has no cursor yet it repeats its first request.
func TestStreamDrainWithRetry(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t,
		connPlan{noHello: true, send: 0, end: endClose},
		connPlan{send: -1, end: endHang},
	)
	cfg := fastConfig(f.URL())
	cfg.From = "earliest"
	s := Subscribe(cfg)
	c := &collector{stopAt: 2}
	if err := s.Run(testContext(t), c.handle); err != errDone {
		t.Fatal(err)
	}
	reqs := f.Requests()
	if len(reqs) != 2 || reqs[1].URL.Query().Get("from") != "earliest" || reqs[1].Header.Get("Last-Event-ID") != "" {
		t.Fatalf("requests: %v", reqs)
	}
	if s.retry != 10*time.Millisecond {
		t.Fatalf("server retry not recorded: %v", s.retry)
	}
}

func TestStreamFailover(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t, connPlan{send: -1, end: endHang})
	dead := deadURL(t)
	cfg := fastConfig(dead, f.URL())
	var connected []string
	cfg.OnConnect = func(ep string) { connected = append(connected, ep) }
	s := Subscribe(cfg)
	c := &collector{stopAt: 1}
	if err := s.Run(testContext(t), c.handle); err != errDone {
		t.Fatal(err)
	}
	if !slices.Equal(connected, []string{f.URL()}) {
		t.Fatalf("connected to %v, want only %s", connected, f.URL())
	}
}

func TestStreamCancel(t *testing.T) {
	t.Run("while streaming", func(t *testing.T) {
		checkNoGoroutineLeak(t)
		f := newFake(t, connPlan{send: -1, end: endHang})
		ctx, cancel := context.WithCancel(testContext(t))
		cfg := fastConfig(f.URL())
		var reason error
		cfg.OnDisconnect = func(_ string, err error) { reason = err }
		s := Subscribe(cfg)
		got := 0
		errc := make(chan error, 1)
		go func() {
			errc <- s.Run(ctx, func(e Event) error {
				if got++; got == 3 {
					cancel()
				}
				return nil
			})
		}()
		assertReturnsPromptly(t, errc, context.Canceled)
		if reason != context.Canceled {
			t.Fatalf("OnDisconnect reason = %v", reason)
		}
	})
	t.Run("while backing off", func(t *testing.T) {
		checkNoGoroutineLeak(t)
		f := newFake(t, connPlan{status: http.StatusServiceUnavailable, code: "overloaded", retryAfter: "60"})
		ctx, cancel := context.WithCancel(testContext(t))
		s := Subscribe(fastConfig(f.URL()))
		errc := make(chan error, 1)
		go func() { errc <- s.Run(ctx, func(Event) error { return nil }) }()
		eventually(t, "first request", func() bool { return len(f.Requests()) == 1 })
		cancel()
		assertReturnsPromptly(t, errc, context.Canceled)
	})
}

func assertReturnsPromptly(t *testing.T, errc <-chan error, want error) {
	t.Helper()
	start := time.Now()
	select {
	case err := <-errc:
		if !errors.Is(err, want) {
			t.Fatalf("Run = %v, want %v", err, want)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Run took %v to return after cancel", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestStreamPermanentErrors(t *testing.T) {
	tests := []struct {
		name   string
		plan   connPlan
		status int
		code   string
		is     error
	}{
		{"401", connPlan{status: 401, code: "unauthorized"}, 401, "unauthorized", nil},
		{"403", connPlan{status: 403, code: "forbidden"}, 403, "forbidden", nil},
		{"404", connPlan{status: 404, code: "not_found"}, 404, "not_found", nil},
		{"invalid cursor", connPlan{status: 400, code: "invalid_cursor"}, 400, "invalid_cursor", nil},
		{"204", connPlan{status: 204}, 0, "", ErrStopped},
		{"not an event stream", connPlan{send: -1, end: endClose, ctype: "text/html; charset=utf-8"}, 0, "", ErrNotEventStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkNoGoroutineLeak(t)
			f := newFake(t, tt.plan, connPlan{send: -1, end: endHang})
			err := Subscribe(fastConfig(f.URL())).Run(testContext(t), func(Event) error { return nil })
			if tt.is != nil {
				if !errors.Is(err, tt.is) {
					t.Fatalf("Run = %v, want %v", err, tt.is)
				}
			} else {
				var apiErr *APIError
				if !errors.As(err, &apiErr) || apiErr.Status != tt.status || apiErr.Code != tt.code || apiErr.Temporary() {
					t.Fatalf("Run = %#v, want APIError %d %s", err, tt.status, tt.code)
				}
			}
			if n := len(f.Requests()); n != 1 {
				t.Fatalf("%d requests after a permanent error, want 1", n)
			}
		})
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t, connPlan{send: 2, end: endQuiet}, connPlan{send: -1, end: endHang})
	cfg := fastConfig(f.URL())
	cfg.From = "earliest"
	cfg.IdleTimeout = 100 * time.Millisecond
	var reasons []error
	cfg.OnDisconnect = func(_ string, err error) { reasons = append(reasons, err) }
	s := Subscribe(cfg)
	c := &collector{stopAt: 4}
	if err := s.Run(testContext(t), c.handle); err != errDone {
		t.Fatal(err)
	}
	if len(reasons) == 0 || reasons[0] != ErrIdleTimeout {
		t.Fatalf("reasons = %v", reasons)
	}
	if got := f.Requests()[1].Header.Get("Last-Event-ID"); got != "2" {
		t.Fatalf("resumed from %q", got)
	}
}

func TestStreamTooLarge(t *testing.T) {
	checkNoGoroutineLeak(t)
	f := newFake(t, connPlan{send: -1, end: endHang})
	cfg := fastConfig(f.URL())
	cfg.From = "earliest"
	cfg.MaxEventSize = 8 // smaller than the hello
	err := Subscribe(cfg).Run(testContext(t), func(Event) error { return nil })
	if !errors.Is(err, sse.ErrTooLarge) {
		t.Fatalf("Run = %v, want ErrTooLarge", err)
	}
	if n := len(f.Requests()); n != 1 {
		t.Fatalf("%d requests: an oversized event must not cause a reconnect loop", n)
	}
}

func TestStreamConfigAndReentry(t *testing.T) {
	ctx := testContext(t)
	for _, cfg := range []StreamConfig{
		{Topics: []string{"a"}},
		{Endpoints: []string{"ftp://x"}, Topics: []string{"a"}},
		{Endpoints: []string{"http://"}, Topics: []string{"a"}},
		{Endpoints: []string{"http://x"}},
	} {
		if err := Subscribe(cfg).Run(ctx, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("Run(%+v) = %v, want ErrConfig", cfg, err)
		}
	}

	checkNoGoroutineLeak(t)
	f := newFake(t, connPlan{send: -1, end: endHang})
	s := Subscribe(fastConfig(f.URL()))
	entered := make(chan struct{})
	release := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- s.Run(ctx, func(Event) error {
			close(entered)
			<-release
			return errDone
		})
	}()
	<-entered
	if err := s.Run(ctx, nil); err != ErrRunning {
		t.Fatalf("concurrent Run = %v, want ErrRunning", err)
	}
	_ = s.LastEventID() // concurrent use is safe (checked by -race)
	close(release)
	if err := <-errc; err != errDone {
		t.Fatal(err)
	}
}
