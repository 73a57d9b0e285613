package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/sse"
	"github.com/heraldpush/herald/push/store/memstore"
	pushstream "github.com/heraldpush/herald/push/stream"
)

// testNode is one Herald HTTP node over a real listener.
type testNode struct {
	t     testing.TB
	URL   string
	Store push.Store
	Hub   *hub.Hub
	// transport is what openStream uses: "sse" or "ws" (transportOf).
	transport string
	Srv       *server.Server
	http      *httptest.Server
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startNode runs a dev-mode node over store; mutate adjusts the config.
func startNode(t testing.TB, store push.Store, mutate func(*server.Config)) *testNode {
	t.Helper()
	h, err := hub.New(hub.Config{Store: store, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return startNodeWithHub(t, store, h, mutate)
}

// startNodeWithHub is startNode over a hub the caller built.
func startNodeWithHub(t testing.TB, store push.Store, h *hub.Hub, mutate func(*server.Config)) *testNode {
	t.Helper()
	cfg := server.Config{Node: node.Config{Name: "n1"}, Store: store, Hub: h, Dev: true, Logger: quietLogger(), Stream: pushstream.Config{Heartbeat: time.Second}}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config = server.NewHTTPServer(srv.Handler(), quietLogger())
	hs.Start()
	n := &testNode{t: t, URL: hs.URL, Store: store, Hub: h, Srv: srv, http: hs, transport: transportOf(t)}
	t.Cleanup(n.Close)
	return n
}

func (n *testNode) Close() {
	n.Srv.Close()
	n.http.CloseClientConnections()
	n.http.Close()
	n.Hub.Close()
}

func newMemStore(t testing.TB, r push.Retention) push.Store {
	s := memstore.New(memstore.Config{Origin: "local", Retention: push.RetentionPolicy{Default: r}})
	t.Cleanup(func() { s.Close() })
	return s
}

// publish posts one event and returns its result.
func (n *testNode) publish(topic, typ, data string) publishResult {
	n.t.Helper()
	body, _ := json.Marshal(map[string]any{"event": typ, "data": data})
	resp, err := http.Post(n.URL+"/v1/topics/"+topic+"/events", "application/json", strings.NewReader(string(body)))
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r publishResult
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		n.t.Fatalf("publish %s: %d %s", topic, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		n.t.Fatal(err)
	}
	return r
}

type publishResult struct {
	Topic     string `json:"topic"`
	Origin    string `json:"origin"`
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
	Duplicate bool   `json:"duplicate"`
}

// stream is an open SSE connection read with the real decoder.
type stream struct {
	t    testing.TB
	resp *http.Response
	ws   *websocket.Conn
	// closed is the WebSocket's close status, once the stream ended.
	closed      websocket.StatusCode
	closeReason string
	shedID      string
	dec         *sse.Decoder
	cancel      context.CancelFunc
	events      chan sse.Event
	errc        chan error
}

// openStream connects to /v1/stream; lastID goes in the Last-Event-ID header.
func (n *testNode) openStream(t testing.TB, topics []string, lastID string, extra url.Values) *stream {
	t.Helper()
	s, status, body := n.tryStream(topics, lastID, extra)
	if status != http.StatusOK {
		t.Fatalf("stream: status %d: %s", status, body)
	}
	t.Cleanup(s.Close)
	return s
}

func (n *testNode) tryStream(topics []string, lastID string, extra url.Values) (*stream, int, string) {
	return n.tryStreamWith(topics, lastID, extra, nil)
}

// tryStreamWith is tryStream with extra request headers.
func (n *testNode) tryStreamWith(topics []string, lastID string, extra url.Values, header http.Header) (*stream, int, string) {
	if n.transport == "ws" {
		return n.tryWS(topics, lastID, extra, header)
	}
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	q["topic"] = topics
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v1/stream?"+q.Encode(), nil)
	for k, v := range header {
		req.Header[k] = v
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		n.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, string(b)
	}
	s := &stream{t: n.t, resp: resp, dec: sse.NewDecoder(bufio.NewReader(resp.Body)), cancel: cancel,
		events: make(chan sse.Event, 100000), errc: make(chan error, 1)}
	go func() {
		for {
			ev, err := s.dec.Next()
			if err != nil {
				s.errc <- err
				close(s.events)
				return
			}
			s.events <- ev
		}
	}()
	return s, resp.StatusCode, ""
}

// next returns the next event or fails after timeout.
func (s *stream) next(timeout time.Duration) sse.Event {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatalf("stream ended: %v", <-s.errc)
		}
		return ev
	case <-time.After(timeout):
		s.t.Fatalf("no event within %s", timeout)
	}
	return sse.Event{}
}

// noEvent asserts nothing but heartbeats arrives within d.
func (s *stream) noEvent(d time.Duration) {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if ok {
			s.t.Fatalf("unexpected event %+v", ev)
		}
	case <-time.After(d):
	}
}

func (s *stream) Close() {
	s.cancel()
	if s.resp != nil {
		s.resp.Body.Close()
	}
	if s.ws != nil {
		_ = s.ws.CloseNow()
	}
}

func decodeJSON(t testing.TB, data string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(data), v); err != nil {
		t.Fatalf("decode %q: %v", data, err)
	}
}

type resetEvent struct {
	Streams []push.StreamReset `json:"streams"`
}

type helloEvent struct {
	Session string   `json:"session"`
	Topics  []string `json:"topics"`
	Cursor  string   `json:"cursor"`
	Resumed bool     `json:"resumed"`
}

// offsets decodes a stream id into per-topic offsets (single origin "local").
func offsets(t testing.TB, id string, topics []string) map[string]uint64 {
	t.Helper()
	p, err := push.ParseCursor(id, topics, []string{"local"})
	if err != nil {
		t.Fatalf("event id %q is not a cursor: %v", id, err)
	}
	out := map[string]uint64{}
	for i := range p.Len() {
		out[p.Key(i).Topic] = p.Offset(i)
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
