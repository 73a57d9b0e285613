package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/heraldpush/herald/internal/promqlcheck"
	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/sse"
)

// Issue 5 acceptance: the metrics the dashboard and the alert rules use
// exist on a running node once its behaviours have been exercised, and the
// node's logs are JSON lines with trace ids and without secrets.

// Shipped deploy files, relative to this package.
var (
	telDashboardPath = filepath.Join("..", "..", "deploy", "grafana", "dashboards", "herald.json")
	telAlertsPath    = filepath.Join("..", "..", "deploy", "prometheus", "alerts.yaml")
)

// runTelemetryNode is MustRunMain with the log destination chosen before
// Run (MustRunMain discards logs).
func runTelemetryNode(tb testing.TB, logOut io.Writer, mutate func(*Config)) *Main {
	tb.Helper()
	m := NewMain()
	m.Config.Listen = "127.0.0.1:0"
	m.Config.AdminListen = "127.0.0.1:0"
	m.Config.Dev = true
	m.Config.LogLevel = "warn"
	m.LogOutput = logOut
	if mutate != nil {
		mutate(&m.Config)
	}
	if err := m.Config.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	if err := m.Run(context.Background()); err != nil {
		tb.Fatalf("run: %v", err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m
}

// scrapeNode GETs the admin /metrics as Prometheus' text scraper does and
// parses it with expfmt.
func scrapeNode(tb testing.TB, m *Main) map[string]*dto.MetricFamily {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.AdminURL()+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		tb.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// seriesValue sums the value of the series of family name whose labels
// include want (a counter's or gauge's value, a histogram's sample count),
// and reports whether any series matched.
func seriesValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
next:
	for _, mt := range f.GetMetric() {
		labels := map[string]string{}
		for _, lp := range mt.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case mt.Counter != nil:
			sum += mt.GetCounter().GetValue()
		case mt.Gauge != nil:
			sum += mt.GetGauge().GetValue()
		case mt.Histogram != nil:
			sum += float64(mt.GetHistogram().GetSampleCount())
		case mt.Untyped != nil:
			sum += mt.GetUntyped().GetValue()
		}
	}
	return sum, found
}

// metricAtLeast polls the node's /metrics until the series reaches min.
func metricAtLeast(t *testing.T, m *Main, timeout time.Duration, name string, labels map[string]string, min float64) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%s%v ≥ %v", name, labels, min), func() bool {
		v, _ := seriesValue(scrapeNode(t, m), name, labels)
		return v >= min
	})
}

// telPublish posts one event and returns the status and the decoded body.
func telPublish(t *testing.T, base, topic string, data any, header http.Header) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"data": data})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/topics/"+topic+"/events", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func mustPublish(t *testing.T, base, topic string, data any) {
	t.Helper()
	if st, body := telPublish(t, base, topic, data, nil); st != http.StatusCreated {
		t.Fatalf("publish %s: %d %v", topic, st, body)
	}
}

// telStream is one SSE stream read with the SSE decoder.
type telStream struct {
	resp   *http.Response
	dec    *sse.Decoder
	cancel context.CancelFunc
}

func openTelStream(t *testing.T, base, query string, header http.Header) *telStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/stream?"+query, nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("stream %s: %v", query, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("stream %s: %d %s", query, resp.StatusCode, b)
	}
	s := &telStream{resp: resp, dec: sse.NewDecoder(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *telStream) close() { s.cancel(); s.resp.Body.Close() }

// next returns the next event, failing the test after timeout (the stream
// is closed then, which unblocks the read).
func (s *telStream) next(t *testing.T, timeout time.Duration) sse.Event {
	t.Helper()
	tm := time.AfterFunc(timeout, s.cancel)
	defer tm.Stop()
	ev, err := s.dec.Next()
	if err != nil {
		t.Fatalf("stream: no event within %s: %v", timeout, err)
	}
	return ev
}

func (s *telStream) hello(t *testing.T) push.Hello {
	t.Helper()
	ev := s.next(t, 10*time.Second)
	if ev.Type != push.EventHello {
		t.Fatalf("first event %q, want %s", ev.Type, push.EventHello)
	}
	var h push.Hello
	if err := json.Unmarshal([]byte(ev.Data), &h); err != nil {
		t.Fatalf("hello %q: %v", ev.Data, err)
	}
	return h
}

// TestTelemetryDashboardAndAlertMetricsExistOnALiveNode runs one node on a
// real Redis with a one-node gossip pool, exercises publish (ok, duplicate,
// rate limited), subscribe with live delivery, an exact resume, a resume
// from a trimmed cursor (reset) and a slow consumer cut off, then scrapes
// the admin /metrics: every metric the Grafana dashboard and the alert
// rules reference must be there, and the exercised series must have
// counted what happened.
func TestTelemetryDashboardAndAlertMetricsExistOnALiveNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs redis-server and a node")
	}
	dashboard, err := os.ReadFile(telDashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := os.ReadFile(telAlertsPath)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := promqlcheck.ReferencedMetricNames(dashboard, alerts)
	if err != nil {
		t.Fatalf("ReferencedMetricNames: %v", err)
	}
	// The dashboard alone shows streams, publishes, deliveries, resumes,
	// protection, gossip, Redis and the Go runtime: far more than this.
	if len(refs) < 15 {
		t.Fatalf("only %d metric names referenced (%v): the extractor or the files are broken", len(refs), refs)
	}

	t.Logf("%d metric names referenced: %v", len(refs), refs)

	rs := redistest.StartServer(t)
	var logOut io.Writer = io.Discard
	if testing.Verbose() {
		logOut = os.Stderr
	}
	const (
		hotTopic  = "tel-hot"
		hotQPS    = 3
		maxLen    = 20
		bulkBytes = 60_000
	)
	m := runTelemetryNode(t, logOut, func(c *Config) {
		c.NodeName = "tel-node"
		c.Redis = rs.URL()
		c.GossipListen = "127.0.0.1:0" // a one-node pool: dev, so no gossip key
		c.Cluster.RebalanceWindow = 0
		c.Retention.Default = push.Retention{MaxLen: maxLen, MaxAge: time.Hour} // exact trim below 1000
		c.Limits.QueueMaxEvents = 4
		c.Limits.QueueMaxBytes = 256 << 10
		c.Stream.WriteTimeout = time.Second
		// Ingress layer: one hot topic limited to a few publishes a second.
		// (In dev mode every caller is the one tenant "dev", so a low
		// per-tenant publish_qps would throttle every step of this test;
		// the per-topic override blocks only this topic, in the same layer.)
		c.Protection.Ingress.Topics = map[string]int64{hotTopic: hotQPS}
	})
	base := m.URL()
	if m.Cluster == nil {
		t.Fatal("no cluster: gossip_listen was set")
	}

	// Publish: ok, then the same Idempotency-Key again (duplicate).
	mustPublish(t, base, "tel-pub", "first")
	idem := http.Header{"Idempotency-Key": {"tel-idem-1"}}
	if st, body := telPublish(t, base, "tel-pub", "once", idem); st != http.StatusCreated || body["duplicate"] == true {
		t.Fatalf("first idempotent publish: %d %v", st, body)
	}
	if st, body := telPublish(t, base, "tel-pub", "once", idem); st != http.StatusCreated || body["duplicate"] != true {
		t.Fatalf("repeated idempotent publish: %d %v, want 201 duplicate", st, body)
	}

	// Subscribe and receive events live. Events published right after the
	// hello may still come from the store (the subscription registers after
	// the hello); publish-and-read until a live delivery has been measured.
	st := openTelStream(t, base, "topic=tel-live", nil)
	if h := st.hello(t); h.Resumed {
		t.Fatalf("fresh stream says resumed: %+v", h)
	}
	sent := 0
	eventually(t, 15*time.Second, "a live delivery measured", func() bool {
		sent++
		mustPublish(t, base, "tel-live", map[string]int{"n": sent})
		ev := st.next(t, 10*time.Second)
		var got map[string]int
		if err := json.Unmarshal([]byte(ev.Data), &got); err != nil || got["n"] != sent {
			t.Fatalf("live event %q (%q), want n=%d", ev.Data, ev.Type, sent)
		}
		v, _ := seriesValue(scrapeNode(t, m), "herald_delivery_latency_seconds", nil)
		return v >= 1
	})
	// A stream start is counted once it goes live (after its hello and
	// replay): wait for it before leaving.
	metricAtLeast(t, m, 10*time.Second, "herald_resumes_total", map[string]string{"outcome": "live"}, 1)
	lastID := st.dec.LastEventID()
	if lastID == "" {
		t.Fatal("live events carry no id")
	}
	st.close()

	// Resume with a valid Last-Event-ID: what was published meanwhile is
	// replayed, after a hello that says resumed.
	mustPublish(t, base, "tel-live", map[string]int{"n": sent + 1})
	mustPublish(t, base, "tel-live", map[string]int{"n": sent + 2})
	re := openTelStream(t, base, "topic=tel-live", http.Header{"Last-Event-ID": {lastID}})
	if h := re.hello(t); !h.Resumed {
		t.Fatalf("resume hello %+v, want resumed", h)
	}
	for want := sent + 1; want <= sent+2; want++ {
		ev := re.next(t, 10*time.Second)
		var got map[string]int
		if err := json.Unmarshal([]byte(ev.Data), &got); err != nil || got["n"] != want {
			t.Fatalf("replayed event %q (%q), want n=%d", ev.Data, ev.Type, want)
		}
	}
	metricAtLeast(t, m, 10*time.Second, "herald_resumes_total", map[string]string{"outcome": "replayed"}, 1)
	re.close()

	// Resume from a cursor retention has trimmed away: a reset.
	mustPublish(t, base, "tel-trim", "seed")
	tr := openTelStream(t, base, "topic=tel-trim", nil)
	old := tr.hello(t).Cursor
	if old == "" {
		t.Fatal("hello carries no cursor")
	}
	tr.close()
	for i := range maxLen + 10 {
		mustPublish(t, base, "tel-trim", i)
	}
	rt := openTelStream(t, base, "topic=tel-trim", http.Header{"Last-Event-ID": {old}})
	rt.hello(t)
	ev := rt.next(t, 10*time.Second)
	if ev.Type != push.EventReset {
		t.Fatalf("resume from a trimmed cursor: event %q %q, want %s", ev.Type, ev.Data, push.EventReset)
	}
	var reset push.Reset
	if err := json.Unmarshal([]byte(ev.Data), &reset); err != nil || len(reset.Streams) != 1 || reset.Streams[0].Reason != push.ResetTrimmed {
		t.Fatalf("reset %q (%v), want one stream reset for %q", ev.Data, err, push.ResetTrimmed)
	}
	metricAtLeast(t, m, 10*time.Second, "herald_resumes_total", map[string]string{"outcome": "reset"}, 1)
	rt.close()

	// Slow consumer: a raw client asks for a stream, reads its response
	// head, then never reads again while large events are published. The
	// socket buffers fill, the write deadline (1s) passes and the queue
	// (4 events) overflows: the node cuts the stream off as slow.
	slowBefore, _ := seriesValue(scrapeNode(t, m), "herald_stream_disconnects_total", map[string]string{"reason": "slow"})
	liveBefore, _ := seriesValue(scrapeNode(t, m), "herald_resumes_total", map[string]string{"outcome": "live"})
	dialer := net.Dialer{Timeout: 5 * time.Second}
	raw, err := dialer.Dial("tcp", m.publicLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(raw, "GET /v1/stream?topic=tel-bulk HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", m.publicLn.Addr())
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(raw, 512)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("raw stream status %q: %v", status, err)
	}
	// The stream is live once its start is counted (after it subscribed).
	eventually(t, 10*time.Second, "the raw stream subscribed", func() bool {
		v, _ := seriesValue(scrapeNode(t, m), "herald_resumes_total", map[string]string{"outcome": "live"})
		return v > liveBefore
	})
	bulk := strings.Repeat("x", bulkBytes)
	deadline := time.Now().Add(60 * time.Second)
	cut := false
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ { // ≤ 60 MB
		mustPublish(t, base, "tel-bulk", bulk)
		if i%8 == 7 {
			fams := scrapeNode(t, m)
			v, _ := seriesValue(fams, "herald_stream_disconnects_total", map[string]string{"reason": "slow"})
			if cut = v > slowBefore; cut {
				t.Logf("slow consumer cut off after %d events of %d bytes", i+1, bulkBytes)
				break
			}
			// Every other stream of this test is closed: none open means the
			// raw stream ended, for another reason.
			if open, _ := seriesValue(fams, "herald_streams_open", nil); open == 0 {
				break
			}
		}
	}
	if !cut {
		fams := scrapeNode(t, m)
		reasons := map[string]float64{}
		for _, r := range []string{"client", "slow", "error", "shutdown"} {
			reasons[r], _ = seriesValue(fams, "herald_stream_disconnects_total", map[string]string{"reason": r})
		}
		t.Fatalf("a client that never reads was not cut off as slow: disconnects by reason %v, node stats %+v", reasons, m.Server.Stats())
	}
	raw.Close()

	// Protection block: a burst on the hot topic exceeds its 3/s budget.
	blocked := false
	for i := 0; i < 50 && !blocked; i++ {
		status, body := telPublish(t, base, hotTopic, i, nil)
		switch status {
		case http.StatusCreated:
		case http.StatusTooManyRequests:
			blocked = true
		default:
			t.Fatalf("hot topic publish: %d %v", status, body)
		}
	}
	if !blocked {
		t.Fatalf("50 publishes at once to a topic limited to %d/s were all accepted", hotQPS)
	}

	// The one-node pool: this node alive in its own member table.
	metricAtLeast(t, m, 10*time.Second, "herald_gossip_members", map[string]string{"state": "alive"}, 1)

	fams := scrapeNode(t, m)
	var missing []string
	for _, name := range refs {
		if _, ok := fams[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		have := make([]string, 0, len(fams))
		for n := range fams {
			have = append(have, n)
		}
		slices.Sort(have)
		t.Errorf("referenced by the dashboard or the alert rules but not exposed by a live node: %v\n(exposed: %v)", missing, have)
	}

	// What was exercised was counted.
	type want struct {
		name   string
		labels map[string]string
		min    float64
	}
	for _, w := range []want{
		{"herald_publishes_total", map[string]string{"result": "ok"}, 1},
		{"herald_publishes_total", map[string]string{"result": "duplicate"}, 1},
		{"herald_publishes_total", map[string]string{"result": "rejected"}, 1},
		{"herald_publish_duration_seconds", map[string]string{"result": "ok"}, 1},
		{"herald_stream_connects_total", map[string]string{"result": "accepted"}, 5},
		{"herald_stream_disconnects_total", map[string]string{"reason": "slow"}, 1},
		{"herald_stream_disconnects_total", map[string]string{"reason": "client"}, 1},
		{"herald_resumes_total", map[string]string{"outcome": "live"}, 1},
		{"herald_resumes_total", map[string]string{"outcome": "replayed"}, 1},
		{"herald_resumes_total", map[string]string{"outcome": "reset"}, 1},
		{"herald_replayed_events", nil, 1},
		{"herald_delivery_latency_seconds", nil, 1},
		{"herald_redis_call_duration_seconds", nil, 1},
		{"herald_redis_call_duration_seconds", map[string]string{"op": "append", "target": "redis:local", "result": "ok"}, 1},
		{"herald_protection_events_total", map[string]string{"layer": "ingress", "kind": "block"}, 1},
		{"herald_session_ownership_changes_total", nil, 1},
		{"herald_build_info", nil, 1},
	} {
		v, ok := seriesValue(fams, w.name, w.labels)
		if !ok || v < w.min {
			t.Errorf("%s%v = %v (present %v), want ≥ %v", w.name, w.labels, v, ok, w.min)
		}
	}
	// Gauges with exact values on one node.
	for _, w := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"herald_gossip_members", map[string]string{"state": "alive"}, 1},
		{"herald_breaker_state", map[string]string{"target": "redis:local"}, observability.BreakerClosed},
		{"herald_replication_lag_seconds", map[string]string{"origin": "local"}, 0},
	} {
		v, ok := seriesValue(fams, w.name, w.labels)
		if !ok || v != w.value {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, v, ok, w.value)
		}
	}
	// Every Herald series carries the node's constant labels, which the
	// dashboard's $region/$node variables select on.
	if f := fams["herald_build_info"]; f != nil {
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range mt.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["node"] != "tel-node" || labels["region"] != "local" {
				t.Errorf("herald_build_info labels %v, want node=tel-node region=local", labels)
			}
		}
	}
}

// telLogBuffer is an io.Writer safe for the node's concurrent loggers and
// the test reading it.
type telLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *telLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *telLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	hexTraceID = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hexSpanID  = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// TestTelemetryLogsCarryTraceIDsAndNoSecrets runs an authenticated node
// logging at debug, sends requests carrying credentials in every place
// Herald reads them (Authorization, X-API-Key, the token cookie) — valid,
// forged, expired and wrong — and a traceparent, then checks the log: every
// line is a JSON object, request-scoped records carry the trace id (for the
// publish that sent a traceparent, that trace's id), and no token, API key
// or key-file secret appears anywhere in it.
func TestTelemetryLogsCarryTraceIDsAndNoSecrets(t *testing.T) {
	dir := t.TempDir()
	secretBytes := make([]byte, 48)
	if _, err := rand.Read(secretBytes); err != nil {
		t.Fatal(err)
	}
	secret := hex.EncodeToString(secretBytes) // 96 printable bytes
	keyFile := filepath.Join(dir, "hs256.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	apiKey, apiHash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, _, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}

	logs := &telLogBuffer{}
	m := runTelemetryNode(t, logs, func(c *Config) {
		c.Dev = false
		c.LogLevel = "debug"
		c.NodeName = "tel-auth"
		c.Auth.Keys = []auth.KeyConfig{{ID: "k1", Algorithm: "HS256", File: keyFile}}
		c.Auth.Audience = "herald"
		c.Auth.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: apiHash, Tenant: "acme", Publish: []string{"*"}, Subscribe: []string{"*"}}}
	})
	base := m.URL()

	mint := func(o auth.MintOptions) string {
		t.Helper()
		tok, err := auth.Mint(o)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := mint(auth.MintOptions{Algorithm: "HS256", KeyFile: keyFile, KeyID: "k1", Audience: "herald",
		Subject: "user-1", Tenant: "acme", TTL: 10 * time.Minute, Subscribe: []string{"*"}, Publish: []string{"*"}})
	otherFile := filepath.Join(dir, "other.key")
	if err := os.WriteFile(otherFile, []byte(strings.Repeat("k", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	forged := mint(auth.MintOptions{Algorithm: "HS256", KeyFile: otherFile, KeyID: "k1", Audience: "herald",
		Subject: "mallory", TTL: 10 * time.Minute, Subscribe: []string{"*"}, Publish: []string{"*"}})
	wrongAud := mint(auth.MintOptions{Algorithm: "HS256", KeyFile: keyFile, KeyID: "k1", Audience: "someone-else",
		Subject: "user-1", TTL: 10 * time.Minute, Publish: []string{"*"}})
	// Mint refuses a past expiry: sign an expired token (well beyond the
	// leeway) with the real secret directly.
	past := time.Now().Add(-2 * time.Hour)
	expTok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "user-1", "aud": "herald", "iat": past.Unix(), "nbf": past.Unix(), "exp": past.Add(time.Minute).Unix(),
		"jti": "tel-expired", "herald": map[string]any{"sub": []string{"*"}, "pub": []string{"*"}},
	})
	expTok.Header["kid"] = "k1"
	expired, err := expTok.SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	// alg=none with a plausible payload, and a tampered valid token.
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "root", "aud": "herald",
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))

	const (
		traceIDPub  = "4bf92f3577b34da6a3ce929d0e0e4736"
		traceIDDeny = "0af7651916cd43dd8448eb211c80319c"
		traceIDSSE  = "5e0c63257de34c92bf9efcd03927272e"
	)
	tp := func(traceID string) string { return "00-" + traceID + "-00f067aa0ba902b7-01" }

	type call struct {
		name   string
		method string
		path   string
		header http.Header
		cookie string
		status int // expected status
		stream bool
	}
	bearer := func(s string) http.Header { return http.Header{"Authorization": {"Bearer " + s}} }
	with := func(h http.Header, k, v string) http.Header { h.Set(k, v); return h }
	calls := []call{
		{name: "valid JWT publish with traceparent", method: "POST", path: "/v1/topics/logs/events",
			header: with(bearer(valid), "traceparent", tp(traceIDPub)), status: http.StatusCreated},
		{name: "API key in X-API-Key", method: "POST", path: "/v1/topics/logs/events",
			header: http.Header{"X-Api-Key": {apiKey}}, status: http.StatusCreated},
		{name: "API key as Bearer", method: "POST", path: "/v1/topics/logs/events",
			header: bearer(apiKey), status: http.StatusCreated},
		{name: "wrong API key with traceparent", method: "POST", path: "/v1/topics/logs/events",
			header: with(http.Header{"X-Api-Key": {wrongKey}}, "traceparent", tp(traceIDDeny)), status: http.StatusUnauthorized},
		{name: "wrong API key as Bearer", method: "POST", path: "/v1/topics/logs/events",
			header: bearer(wrongKey), status: http.StatusUnauthorized},
		{name: "forged JWT", method: "POST", path: "/v1/topics/logs/events", header: bearer(forged), status: http.StatusUnauthorized},
		{name: "tampered JWT", method: "POST", path: "/v1/topics/logs/events", header: bearer(tampered), status: http.StatusUnauthorized},
		{name: "alg=none JWT", method: "POST", path: "/v1/topics/logs/events", header: bearer(noneTok), status: http.StatusUnauthorized},
		{name: "expired JWT", method: "POST", path: "/v1/topics/logs/events", header: bearer(expired), status: http.StatusUnauthorized},
		{name: "wrong audience JWT", method: "POST", path: "/v1/topics/logs/events", header: bearer(wrongAud), status: http.StatusUnauthorized},
		{name: "stream with JWT cookie", method: "GET", path: "/v1/stream?topic=logs",
			header: http.Header{"Traceparent": {tp(traceIDSSE)}}, cookie: valid, status: http.StatusOK, stream: true},
		{name: "stream with expired JWT cookie", method: "GET", path: "/v1/stream?topic=logs",
			cookie: expired, status: http.StatusUnauthorized},
		{name: "stream with valid JWT", method: "GET", path: "/v1/stream?topic=logs",
			header: bearer(valid), status: http.StatusOK, stream: true},
		{name: "stream with API key", method: "GET", path: "/v1/stream?topic=logs",
			header: http.Header{"X-Api-Key": {apiKey}}, status: http.StatusOK, stream: true},
		{name: "stream with forged JWT", method: "GET", path: "/v1/stream?topic=logs",
			header: bearer(forged), status: http.StatusUnauthorized},
	}
	for _, c := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var body io.Reader
		if c.method == http.MethodPost {
			body = strings.NewReader(`{"data":{"msg":"hello"}}`)
		}
		req, _ := http.NewRequestWithContext(ctx, c.method, base+c.path, body)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, vs := range c.header {
			req.Header[http.CanonicalHeaderKey(k)] = vs
		}
		if c.cookie != "" {
			req.AddCookie(&http.Cookie{Name: "herald_token", Value: c.cookie})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", c.name, err)
		}
		if resp.StatusCode != c.status {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			t.Fatalf("%s: %d %s, want %d", c.name, resp.StatusCode, b, c.status)
		}
		if c.stream {
			// Read the hello, then leave: the stream ends as a client
			// disconnect inside its session span.
			ev, err := sse.NewDecoder(resp.Body).Next()
			if err != nil || ev.Type != push.EventHello {
				t.Fatalf("%s: first event %+v %v", c.name, ev, err)
			}
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		resp.Body.Close()
		cancel()
	}
	// Streams end asynchronously after the client leaves.
	eventually(t, 10*time.Second, "every stream closed", func() bool { return m.Server.Stats().Streams == 0 })
	// Closing flushes what the node logs on the way out.
	if err := m.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	out := logs.String()
	if strings.TrimSpace(out) == "" {
		t.Fatal("no log output at debug level")
	}

	// Every line is one JSON object.
	var records []map[string]any
	for i, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %d is not JSON (%v): %q", i+1, err, line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("log line %d has no %q: %q", i+1, k, line)
			}
		}
		records = append(records, rec)
	}

	// Trace ids: well-formed wherever present; at least one request-scoped
	// record has one, and the publish that sent a traceparent (or the
	// refused one that did) logged inside that trace.
	traced, inPublishTrace := 0, false
	for _, rec := range records {
		tid, ok := rec[observability.LogKeyTraceID].(string)
		if !ok {
			continue
		}
		traced++
		sid, _ := rec[observability.LogKeySpanID].(string)
		if !hexTraceID.MatchString(tid) || !hexSpanID.MatchString(sid) {
			t.Errorf("malformed trace context in log record %v", rec)
		}
		if tid == traceIDPub || tid == traceIDDeny {
			inPublishTrace = true
			if sid == "00f067aa0ba902b7" {
				t.Errorf("record carries the client's span id, not the server span's: %v", rec)
			}
		}
	}
	if traced == 0 {
		t.Errorf("no log record carries %s: nothing is logged with a request's context (%d records)", observability.LogKeyTraceID, len(records))
	} else if !inPublishTrace {
		t.Errorf("%d records carry a trace id, none of the publish traces %s/%s sent as traceparent", traced, traceIDPub, traceIDDeny)
	}

	// No secret anywhere: whole credentials, their signature or random
	// parts (a partial leak), the cookie header form, the key file.
	secrets := map[string]string{
		"valid JWT": valid, "forged JWT": forged, "tampered JWT": tampered, "alg=none JWT": noneTok,
		"expired JWT": expired, "wrong-audience JWT": wrongAud,
		"API key": apiKey, "wrong API key": wrongKey,
		"API key body":       strings.TrimPrefix(apiKey, auth.APIKeyPrefix),
		"wrong API key body": strings.TrimPrefix(wrongKey, auth.APIKeyPrefix),
		"cookie":             "herald_token=" + valid,
		"key file":           secret,
		"key file (half)":    secret[:len(secret)/2],
		"other key file":     strings.Repeat("k", 40),
	}
	for name, tok := range map[string]string{"valid JWT": valid, "forged JWT": forged, "expired JWT": expired, "wrong-audience JWT": wrongAud} {
		secrets[name+" signature"] = tok[strings.LastIndexByte(tok, '.')+1:]
		secrets[name+" claims"] = strings.Split(tok, ".")[1]
	}
	for name, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("secret %q too short to search for meaningfully", name)
		}
		if i := strings.Index(out, s); i >= 0 {
			t.Errorf("the %s appears in the logs: …%s…", name, out[max(0, i-80):min(len(out), i+len(s)+20)])
		}
	}
	t.Logf("%d log records, %d with a trace id", len(records), traced)
	if testing.Verbose() {
		t.Logf("log:\n%s", out)
	}
}
