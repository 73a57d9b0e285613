package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/server"
)

// ended waits for the stream to end (the server closed it), failing the
// test after timeout.
func (s *stream) ended(timeout time.Duration) {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-deadline:
			s.t.Fatalf("stream still open after %s", timeout)
		}
	}
}

func hello(t *testing.T, s *stream) (helloEvent, string) {
	t.Helper()
	ev := s.next(5 * time.Second)
	if ev.Type != push.EventHello {
		t.Fatalf("first event %q, want hello", ev.Type)
	}
	var h helloEvent
	decodeJSON(t, ev.Data, &h)
	return h, ev.ID
}

func TestSessionCarriedInCursorAndTakenOver(t *testing.T) {
	forTransports(t, testSessionCarriedInCursorAndTakenOver)
}

func testSessionCarriedInCursorAndTakenOver(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), nil)
	first := n.openStream(t, []string{"a"}, "", nil)
	h1, id1 := hello(t, first)
	if _, err := node.ParseSessionID(h1.Session); err != nil {
		t.Fatalf("hello session %q: %v", h1.Session, err)
	}
	n.publish("a", "m", "1")
	ev := first.next(5 * time.Second)
	if ev.Data != "1" {
		t.Fatalf("got %+v", ev)
	}

	// Resuming with the first stream's id is the same session: the old
	// stream is closed, the new one has the same session id.
	second := n.openStream(t, []string{"a"}, ev.ID, nil)
	h2, _ := hello(t, second)
	if h2.Session != h1.Session {
		t.Fatalf("resumed session %q, want %q", h2.Session, h1.Session)
	}
	first.ended(5 * time.Second)
	// A fresh stream (no cursor) is another session and takes nothing over.
	third := n.openStream(t, []string{"a"}, "", nil)
	h3, _ := hello(t, third)
	if h3.Session == h1.Session {
		t.Fatal("a fresh stream reused a session id")
	}
	n.publish("a", "m", "2")
	for _, s := range []*stream{second, third} {
		if ev := s.next(5 * time.Second); ev.Data != "2" {
			t.Fatalf("live stream got %+v", ev)
		}
	}
	// The hello id of the first stream also carries the session.
	again := n.openStream(t, []string{"a"}, id1, nil)
	if h, _ := hello(t, again); h.Session != h1.Session {
		t.Fatalf("hello id resumed session %q, want %q", h.Session, h1.Session)
	}
	second.ended(5 * time.Second) // closed by the takeover
}

func adminDo(t *testing.T, method, url string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestAdminSessionsAndPresenceSingleNode(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) { c.Node.Region = "eu" })
	s := n.openStream(t, []string{"a", "b"}, "", nil)
	h, _ := hello(t, s)

	code, body := adminDo(t, http.MethodGet, n.URL+"/v1/sessions/"+h.Session)
	if code != http.StatusOK || body["node"] != "n1" || body["region"] != "eu" {
		t.Fatalf("GET session: %d %v", code, body)
	}
	code, body = adminDo(t, http.MethodGet, n.URL+"/v1/topics/b/presence")
	if code != http.StatusOK || body["count"].(float64) != 1 || body["consistency"] != "eventual" {
		t.Fatalf("presence: %d %v", code, body)
	}
	code, body = adminDo(t, http.MethodGet, n.URL+"/v1/cluster/members")
	if code != http.StatusOK || body["self"] != "n1" {
		t.Fatalf("members: %d %v", code, body)
	}
	for _, bad := range []string{"xyz", "0000000000000000", strings.Repeat("g", 16)} {
		if code, body := adminDo(t, http.MethodGet, n.URL+"/v1/sessions/"+bad); code != http.StatusBadRequest || body["error"] == nil {
			t.Fatalf("GET session %q: %d %v, want 400 JSON", bad, code, body)
		}
	}
	if code, _ := adminDo(t, http.MethodDelete, n.URL+"/v1/sessions/00000000000000ff"); code != http.StatusNotFound {
		t.Fatalf("DELETE unknown session: %d, want 404", code)
	}
	if code, body := adminDo(t, http.MethodDelete, n.URL+"/v1/sessions/"+h.Session); code != http.StatusAccepted {
		t.Fatalf("DELETE session: %d %v", code, body)
	}
	s.ended(5 * time.Second) // closed by the admin disconnect
	waitFor(t, 5*time.Second, "session gone", func() bool {
		code, _ := adminDo(t, http.MethodGet, n.URL+"/v1/sessions/"+h.Session)
		return code == http.StatusNotFound
	})
}

// A closed server (listener still up, as while the process stops) sheds new
// streams instead of opening one and ending it at once: SSE with 200 +
// retry: and no event (503 draining for a declared SDK client), WebSocket
// with a herald.error and close 4503 with retry_ms (ADR 0023), never an
// HTTP error to the handshake, which a browser cannot read.
func TestClosedServerShedsNewStreams(t *testing.T) { forTransports(t, testClosedServerShedsNewStreams) }

func testClosedServerShedsNewStreams(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), nil)
	s := n.openStream(t, []string{"a"}, "", nil)
	hello(t, s)
	if err := n.Srv.Close(); err != nil {
		t.Fatal(err)
	}
	s.ended(5 * time.Second)
	shed, code, body := n.tryStream([]string{"a"}, "", nil)
	if code != http.StatusOK {
		t.Fatalf("stream on a closed server: %d %s, want a browser-safe shed", code, body)
	}
	shed.shedOnly(5 * time.Second)
	_, code, body = n.tryStreamWith([]string{"a"}, "", nil, http.Header{"Herald-Client": {"test"}})
	var eb map[string]any
	_ = json.Unmarshal([]byte(body), &eb)
	if e, _ := eb["error"].(map[string]any); code != http.StatusServiceUnavailable || e["code"] != server.CodeDraining {
		t.Fatalf("SDK stream on a closed server: %d %s, want 503 %s", code, body, server.CodeDraining)
	}
}

// shedOnly checks that s, a stream the server answered browser-safely
// (SSE: 200 with retry: only; WebSocket: a herald.error, then close 4503
// with retry_ms), ended within timeout without any event and with a
// reconnection delay, and returns the delay.
func (s *stream) shedOnly(timeout time.Duration) time.Duration {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if ok {
			s.t.Fatalf("shed stream sent %+v", ev)
		}
	case <-time.After(timeout):
		s.t.Fatalf("shed stream still open after %s", timeout)
	}
	if s.ws != nil && s.closed != server.CloseRetry {
		s.t.Fatalf("shed socket closed with %d, want %d", s.closed, server.CloseRetry)
	}
	r, ok := s.finalRetry()
	if !ok || r <= 0 {
		s.t.Fatalf("shed stream's reconnection delay %v (set %v)", r, ok)
	}
	return r
}

// getStream opens a stream as a browser would, or as a declared SDK client
// (Herald-Client), and reads the whole answer: for a refused or shed
// stream, the server ends it itself.
func getStream(t *testing.T, url string, sdk bool) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if sdk {
		req.Header.Set("Herald-Client", "test")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func TestDrainSpreadsClosesAndSheds(t *testing.T) { forTransports(t, testDrainSpreadsClosesAndSheds) }

func testDrainSpreadsClosesAndSheds(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) { c.Stream.RetryMin = 400 * time.Millisecond })
	const streams = 20
	var ss []*stream
	for range streams {
		s := n.openStream(t, []string{"a"}, "", nil)
		hello(t, s)
		ss = append(ss, s)
	}
	window := 600 * time.Millisecond
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- n.Srv.Node().Drain(context.Background(), window) }()
	waitFor(t, 2*time.Second, "draining", n.Srv.Node().Draining)

	// Readiness fails, new browser streams are shed with 200 + retry,
	// declared SDK clients get 503 + Retry-After.
	code, body := adminDo(t, http.MethodGet, n.URL+"/readyz")
	if code != http.StatusServiceUnavailable || body["error"].(map[string]any)["code"] != server.CodeDraining {
		t.Fatalf("readyz while draining: %d %v", code, body)
	}
	code, _, b := getStream(t, n.URL+"/v1/stream?topic=a", false)
	if code != http.StatusOK || !strings.HasPrefix(string(b), "retry: ") {
		t.Fatalf("stream while draining: %d %q, want 200 + retry", code, b)
	}
	code, hdr, _ := getStream(t, n.URL+"/v1/stream?topic=a", true)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("SDK stream while draining: %d Retry-After %q", code, hdr.Get("Retry-After"))
	}

	var firstEnd, lastEnd time.Duration
	for i, s := range ss {
		s.ended(5 * time.Second)
		el := time.Since(start)
		if i == 0 || el < firstEnd {
			firstEnd = el
		}
		lastEnd = max(lastEnd, el)
		r, ok := s.finalRetry()
		if !ok || r > 400*time.Millisecond || r < 100*time.Millisecond {
			t.Fatalf("stream %d: final retry %v (set %v), want within 100..400ms", i, r, ok)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	// Closes are spread over the window, not all at once.
	if lastEnd < window/2 {
		t.Fatalf("all %d streams closed within %v of a %v window", streams, lastEnd, window)
	}
	if got := n.Srv.Stats().Streams; got != 0 {
		t.Fatalf("%d streams open after drain", got)
	}
}

func TestOverTargetShedsWithoutCluster(t *testing.T) {
	forTransports(t, testOverTargetShedsWithoutCluster)
}

func testOverTargetShedsWithoutCluster(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) { c.Node.ConnectionTarget = 2 })
	for range 2 {
		hello(t, n.openStream(t, []string{"a"}, "", nil))
	}
	shed, code, body := n.tryStream([]string{"a"}, "", nil)
	if code != http.StatusOK {
		t.Fatalf("third stream over target: %d %s, want a browser-safe shed", code, body)
	}
	shed.shedOnly(5 * time.Second)
}
