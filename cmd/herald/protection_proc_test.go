package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/sse"
	"github.com/heraldpush/herald/push/wire"
)

// Acceptance tests of the four protection layers (docs/adr/0005) on real
// herald processes: each test trips one layer, checks what clients see
// (status, Retry-After, retry:, JSON error code), the node's counters on
// GET /v1/protection, and the return to normal. Other layers are opened
// wide (unguarded) so that only the layer under test can refuse.

// unguarded lifts the layers a test is not about: publish rates (setup
// publishes thousands of events) and the connect rate (fleets connect at
// once).
var unguarded = []string{
	"HERALD_PROTECTION__INGRESS__PUBLISH_QPS=0",
	"HERALD_PROTECTION__INGRESS__TOPIC_QPS=0",
	"HERALD_PROTECTION__ADMISSION__CONNECT_RATE=0",
}

// protectionInfo is GET /v1/protection on the admin listener.
type protectionInfo struct {
	Counters map[string]uint64 `json:"counters"`
	Streams  int               `json:"streams"`
	Breakers map[string]string `json:"breakers"`
}

func (p *proc) protection(t testing.TB) protectionInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var pi protectionInfo
	if err := getJSON(ctx, p.Admin+"/v1/protection", &pi); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	return pi
}

// nodeStats is GET /v1/node with the stream counters.
type nodeStats struct {
	Streams int64 `json:"streams"`
	Stats   struct {
		Connected  uint64 `json:"connected"`
		Resets     uint64 `json:"resets"`
		Replayed   uint64 `json:"replayed"`
		Delivered  uint64 `json:"delivered"`
		LagCutoffs uint64 `json:"lag_cutoffs"`
	} `json:"stats"`
}

func (p *proc) stats(t testing.TB) nodeStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n nodeStats
	if err := getJSON(ctx, p.Admin+"/v1/node", &n); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	return n
}

// attempt is one new-stream request as a client sees it: admitted (a hello
// arrived; the stream is left open until close), shed browser-safely (200,
// a retry: field, the body ends without a hello) or refused with an HTTP
// error (status, Retry-After, JSON code).
type attempt struct {
	status     int
	retryAfter string // Retry-After header
	code       string // JSON error code of a non-200 answer
	hello      bool
	helloID    string
	retry      time.Duration // retry: field of a shed stream
	retrySet   bool
	closed     bool // the body ended without a hello
	events     int  // non-control events read (readAll only)
	// next reads the stream's next event (an SSE event, or a WebSocket
	// frame as the event an SSE client would read).
	next   func() (sse.Event, error)
	body   io.ReadCloser
	ws     *websocket.Conn
	cancel context.CancelFunc
}

func (a *attempt) close() {
	if a.cancel != nil {
		a.cancel()
	}
	if a.body != nil {
		_ = a.body.Close()
	}
	if a.ws != nil {
		_ = a.ws.CloseNow()
	}
}

// shed reports a browser-safe refusal: 200, retry:, closed, no hello.
func (a *attempt) shed() bool { return a.status == http.StatusOK && !a.hello && a.closed && a.retrySet }

// tryStream opens a stream of topic on the test's transport (transportOf:
// GET /v1/stream or GET /v1/ws), resuming after lastID when set, and reads
// until the first event or the end of the stream, within 15s. sdk adds the
// Herald-Client header (503 instead of the browser-safe shed).
func tryStream(t testing.TB, hc *http.Client, base, topic, lastID string, sdk bool) *attempt {
	t.Helper()
	a, err := openAttempt(transportOf(t), hc, base, topic, lastID, sdk)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// openAttempt is tryStream for any goroutine: it returns its failure.
func openAttempt(transport string, hc *http.Client, base, topic, lastID string, sdk bool) (*attempt, error) {
	if transport == client.TransportWS {
		return openWSAttempt(hc, base, topic, lastID, sdk)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &attempt{cancel: cancel}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/stream?topic="+topic, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	if sdk {
		req.Header.Set("Herald-Client", "protection-test")
	}
	// Bound the wait for the headers and the first frame only: an admitted
	// stream stays open afterwards.
	guard := time.AfterFunc(15*time.Second, cancel)
	defer guard.Stop()
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("stream request: %w", err)
	}
	a.status, a.retryAfter, a.body = resp.StatusCode, resp.Header.Get("Retry-After"), resp.Body
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		a.code = errorCode(b)
		a.close()
		return a, nil
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		a.close()
		return nil, fmt.Errorf("stream answered 200 with Content-Type %q", ct)
	}
	dec := sse.NewDecoder(resp.Body)
	a.next = dec.Next
	ev, err := a.next()
	a.retry, a.retrySet = dec.Retry()
	switch {
	case err == nil && ev.Type == push.EventHello:
		a.hello, a.helloID = true, ev.ID
		return a, nil
	case errors.Is(err, io.EOF):
		a.closed = true
		a.close()
		return a, nil
	case err != nil:
		a.close()
		return nil, fmt.Errorf("stream: reading the first frame: %w", err)
	default:
		a.close()
		return nil, fmt.Errorf("stream: first event %q, want %s", ev.Type, push.EventHello)
	}
}

// openWSAttempt is openAttempt over GET /v1/ws. Every answer after the
// handshake is in band (ADR 0023): a refusal is a herald.error, then a
// close with 4000 + the HTTP status and the retry in its reason. The
// server answers browsers and SDK clients alike; the attempt reports what
// each makes of it: a 4503 is a browser's shed (200, closed, retry from
// retry_ms) and an SDK client's 503 (status, code and Retry-After from the
// herald.error).
func openWSAttempt(hc *http.Client, base, topic, lastID string, sdk bool) (*attempt, error) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &attempt{cancel: cancel}
	h := http.Header{}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	if sdk {
		h.Set("Herald-Client", "protection-test")
	}
	guard := time.AfterFunc(15*time.Second, cancel)
	defer guard.Stop()
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws?topic="+topic,
		&websocket.DialOptions{HTTPClient: hc, HTTPHeader: h})
	if err != nil {
		cancel()
		if resp != nil {
			return nil, fmt.Errorf("ws handshake answered %d (every refusal must be in band): %w", resp.StatusCode, err)
		}
		return nil, fmt.Errorf("ws dial: %w", err)
	}
	conn.SetReadLimit(1 << 20)
	a.ws = conn
	a.next = func() (sse.Event, error) {
		typ, b, err := conn.Read(ctx)
		if err != nil {
			return sse.Event{}, err
		}
		var f wire.Frame
		if typ != websocket.MessageText {
			return sse.Event{}, errors.New("binary frame")
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return sse.Event{}, fmt.Errorf("frame %q: %w", b, err)
		}
		return sse.Event{ID: f.ID, Type: f.Event, Data: f.Data}, nil
	}
	ev, err := a.next()
	switch {
	case err == nil && ev.Type == push.EventHello:
		a.status, a.hello, a.helloID = http.StatusOK, true, ev.ID
		return a, nil
	case err == nil && ev.Type == wire.EventError:
		var eb struct {
			Error      struct{ Code string } `json:"error"`
			RetryAfter int                   `json:"retry_after"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &eb); err != nil {
			a.close()
			return nil, fmt.Errorf("herald.error %q: %w", ev.Data, err)
		}
		_, _, cerr := conn.Read(ctx)
		a.close()
		code := websocket.CloseStatus(cerr)
		var ce websocket.CloseError
		if code < 4000 || !errors.As(cerr, &ce) {
			return nil, fmt.Errorf("after herald.error %s: %v, want a close with a code", ev.Data, cerr)
		}
		if code == 4503 && !sdk {
			var r struct {
				RetryMS int64 `json:"retry_ms"`
			}
			_ = json.Unmarshal([]byte(ce.Reason), &r)
			a.status, a.closed = http.StatusOK, true
			a.retry, a.retrySet = time.Duration(r.RetryMS)*time.Millisecond, r.RetryMS > 0
			return a, nil
		}
		a.status, a.code = int(code)-4000, eb.Error.Code
		if eb.RetryAfter > 0 {
			a.retryAfter = strconv.Itoa(eb.RetryAfter)
		}
		return a, nil
	case err != nil:
		a.close()
		return nil, fmt.Errorf("ws stream: reading the first frame: %w", err)
	default:
		a.close()
		return nil, fmt.Errorf("ws stream: first frame %q, want %s", ev.Type, push.EventHello)
	}
}

// readUntil reads an admitted stream's events until one with offset ≥
// want, counting them and checking they follow from `after` one by one.
func (a *attempt) readUntil(after, want uint64, within time.Duration) error {
	timer := time.AfterFunc(within, a.cancel)
	defer timer.Stop()
	last := after
	for last < want {
		ev, err := a.next()
		if err != nil {
			return fmt.Errorf("after offset %d (want %d): %w", last, want, err)
		}
		if ev.Type == push.EventHello || ev.Type == push.EventReset {
			return fmt.Errorf("unexpected %s mid-stream", ev.Type)
		}
		offs, err := push.DecodeOffsets(ev.ID, 1, nil)
		if err != nil || len(offs) != 1 {
			return fmt.Errorf("event id %q: %v", ev.ID, err)
		}
		if offs[0] != last+1 {
			return fmt.Errorf("offset %d after %d", offs[0], last)
		}
		last = offs[0]
		a.events++
	}
	return nil
}

// errorCode reads a JSON error body's code.
func errorCode(b []byte) string {
	var eb struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(b, &eb)
	return eb.Error.Code
}

// publishRaw posts one event with an API key (or none in dev mode) and
// returns the status, Retry-After and JSON error code.
func publishRaw(ctx context.Context, hc *http.Client, base, key, topic, data string) (status int, retryAfter, code string, err error) {
	body, _ := json.Marshal(map[string]any{"data": data})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/topics/"+topic+"/events", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusCreated {
		code = errorCode(b)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), code, nil
}

// publishBatch appends n events to topic in batches of 100 (dev mode).
func publishBatch(t testing.TB, base, topic string, n int) {
	t.Helper()
	for sent := 0; sent < n; {
		k := min(100, n-sent)
		items := make([]map[string]any, k)
		for i := range items {
			items[i] = map[string]any{"topic": topic, "data": fmt.Sprintf("history-%d", sent+i)}
		}
		b, _ := json.Marshal(map[string]any{"events": items})
		resp, err := http.Post(base+"/v1/events", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("batch publish: %d %s", resp.StatusCode, rb)
		}
		sent += k
	}
}

// topicLast returns a topic's last offset (GET /v1/topics/{topic}).
func topicLast(t testing.TB, base, key, topic string) uint64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/topics/"+topic, nil)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Last uint64 `json:"last_offset"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("topic %s: %d %s", topic, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Last
}

// writeConfig writes a YAML config file for --config.
func writeConfig(t testing.TB, path, yaml string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestProtectionIngressFloodIsolatesTenants: tenant A publishes at 10× its
// publish_qps; the excess gets 429 + Retry-After + rate_limited, roughly
// limit × seconds are accepted, tenant B publishing just under the same
// limit at the same time is never refused, and A is served again once it
// slows down. The node runs with authentication (two API-key tenants), not
// in dev mode, where every caller is the one tenant "dev".
func TestProtectionIngressFloodIsolatesTenants(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process protection test")
	}
	const limit = 20 // publishes per second per tenant
	keyA, hashA, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	keyB, hashB, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "herald.yaml")
	writeConfig(t, cfg, fmt.Sprintf(`auth:
  api_keys:
    - {id: key-a, hash: "%s", tenant: tenant-a, publish: ["*"], subscribe: ["*"]}
    - {id: key-b, hash: "%s", tenant: tenant-b, publish: ["*"], subscribe: ["*"]}
protection:
  ingress:
    publish_qps: %d
    topic_qps: 0
`, hashA, hashB, limit))
	// startProc always passes --dev; the later --dev=false wins.
	p := startProc(t, "ingress", nil, "--dev=false", "--config", cfg)

	// Authentication is on: no key, no publish.
	if st, _, code, err := publishRaw(context.Background(), http.DefaultClient, p.URL, "", "a-events", "x"); err != nil || st != http.StatusUnauthorized {
		t.Fatalf("publish without a key: %d %s %v, want 401", st, code, err)
	}

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	defer hc.CloseIdleConnections()

	type outcome struct {
		status     int
		retryAfter string
		code       string
	}
	const flood = 4 * time.Second
	var (
		mu       sync.Mutex
		outA     []outcome
		outB     []outcome
		errCount atomic.Int64
	)
	record := func(dst *[]outcome, st int, ra, code string, err error) {
		if err != nil {
			errCount.Add(1)
			return
		}
		mu.Lock()
		*dst = append(*dst, outcome{st, ra, code})
		mu.Unlock()
	}
	start := time.Now()
	var wg sync.WaitGroup
	// Tenant A: 10× the limit, paced by a ticker, sent by a bounded pool.
	jobs := make(chan int, 64)
	for range 16 {
		wg.Go(func() {
			for i := range jobs {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				st, ra, code, err := publishRaw(ctx, hc, p.URL, keyA, "a-events", "flood-"+strconv.Itoa(i))
				cancel()
				record(&outA, st, ra, code, err)
			}
		})
	}
	wg.Go(func() {
		defer close(jobs)
		tick := time.NewTicker(time.Second / (10 * limit))
		defer tick.Stop()
		for i := 0; time.Since(start) < flood; i++ {
			<-tick.C
			jobs <- i
		}
	})
	// Tenant B: 80% of the same limit, sequential. (The hotspot bucket
	// refills once per window of more than one second, so a client paced at
	// exactly the limit races the window edge; 80% is a tenant well within
	// its budget.)
	wg.Go(func() {
		tick := time.NewTicker(time.Second * 10 / (8 * limit))
		defer tick.Stop()
		for i := 0; time.Since(start) < flood; i++ {
			<-tick.C
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, ra, code, err := publishRaw(ctx, hc, p.URL, keyB, "b-events", "steady-"+strconv.Itoa(i))
			cancel()
			record(&outB, st, ra, code, err)
		}
	})
	wg.Wait()
	took := time.Since(start)
	if n := errCount.Load(); n > 0 {
		t.Fatalf("%d publish requests failed at the transport level", n)
	}

	acceptedA, refusedA := 0, 0
	for _, o := range outA {
		switch o.status {
		case http.StatusCreated:
			acceptedA++
		case http.StatusTooManyRequests:
			refusedA++
			if ra, err := strconv.Atoi(o.retryAfter); err != nil || ra < 1 {
				t.Fatalf("429 with Retry-After %q, want an integer ≥ 1", o.retryAfter)
			}
			if o.code != "rate_limited" {
				t.Fatalf("429 with error code %q, want rate_limited", o.code)
			}
		default:
			t.Fatalf("tenant A got status %d (%s)", o.status, o.code)
		}
	}
	acceptedB := 0
	for _, o := range outB {
		if o.status != http.StatusCreated {
			t.Fatalf("tenant B (under its limit) got %d %s during A's flood", o.status, o.code)
		}
		acceptedB++
	}
	secs := took.Seconds()
	t.Logf("flood %.1fs: tenant A sent %d (%.0f/s), accepted %d (%.1f/s, limit %d/s), refused %d with 429; tenant B sent %d (%.1f/s), accepted %d",
		secs, len(outA), float64(len(outA))/secs, acceptedA, float64(acceptedA)/secs, limit, refusedA, len(outB), float64(len(outB))/secs, acceptedB)
	if len(outA) < int(8*limit*flood.Seconds()) {
		t.Fatalf("tenant A sent only %d requests in %v; the flood did not reach 10× the limit", len(outA), took)
	}
	// The bucket holds `limit` tokens per window of just over a second:
	// about limit × seconds (+ one initial bucket) pass.
	lo, hi := int(0.6*limit*flood.Seconds()), int(1.3*limit*flood.Seconds())+limit
	if acceptedA < lo || acceptedA > hi {
		t.Fatalf("tenant A: %d accepted over %v, want %d..%d (≈ %d/s)", acceptedA, took, lo, hi, limit)
	}
	if refusedA < len(outA)-hi {
		t.Fatalf("tenant A: only %d of %d refused", refusedA, len(outA))
	}

	// A slows down: after its Retry-After it is served again, and at half
	// its limit nothing is refused.
	recovered := time.Now()
	eventually(t, 5*time.Second, "tenant A served again", func() bool {
		st, _, _, err := publishRaw(context.Background(), hc, p.URL, keyA, "a-events", "after")
		if err == nil && st == http.StatusTooManyRequests {
			refusedA++
		}
		if err == nil && st == http.StatusCreated {
			acceptedA++
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
	for i := range 10 {
		time.Sleep(time.Second / (limit / 2)) // pacing the publisher, not waiting for a condition
		st, _, code, err := publishRaw(context.Background(), hc, p.URL, keyA, "a-events", "normal-"+strconv.Itoa(i))
		if err != nil || st != http.StatusCreated {
			t.Fatalf("tenant A at half its limit after the flood: %d %s %v", st, code, err)
		}
		acceptedA++
	}
	t.Logf("tenant A served normally again %v after the flood stopped", time.Since(recovered).Round(time.Millisecond))

	// Nothing refused was appended; everything accepted was.
	if last := topicLast(t, p.URL, keyA, "a-events"); last != uint64(acceptedA) {
		t.Fatalf("topic a-events holds %d events, tenant A had %d accepted", last, acceptedA)
	}
	if last := topicLast(t, p.URL, keyB, "b-events"); last != uint64(acceptedB) {
		t.Fatalf("topic b-events holds %d events, tenant B had %d accepted", last, acceptedB)
	}
	c := p.protection(t).Counters
	t.Logf("counters: %v", c)
	if got := c["ingress/publish/tenant_qps/block"]; got != uint64(refusedA) {
		t.Fatalf("counter ingress/publish/tenant_qps/block = %d, tenant A saw %d refusals", got, refusedA)
	}
}

// TestProtectionAdmissionStreamCap: with max_streams 50, streams 51..60 are
// shed browser-safely (200, retry: ≥ busy_retry_after, close, no hello) or,
// for SDK clients, refused with 503 + Retry-After + "overloaded"; closing
// streams frees slots.
func TestProtectionAdmissionStreamCap(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process protection test")
	}
	forTransports(t, protectionAdmissionStreamCap)
}

func protectionAdmissionStreamCap(t *testing.T) {
	const maxStreams = 50
	p := startProc(t, "cap", append(slices.Clone(unguarded), "HERALD_PROTECTION__ADMISSION__MAX_STREAMS="+strconv.Itoa(maxStreams)))
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	defer hc.CloseIdleConnections()

	var open []*attempt
	defer func() {
		for _, a := range open {
			a.close()
		}
	}()
	for i := range maxStreams {
		a := tryStream(t, hc, p.URL, "cap", "", false)
		if !a.hello {
			t.Fatalf("stream %d of %d refused: status %d, retry %v", i+1, maxStreams, a.status, a.retry)
		}
		open = append(open, a)
	}
	checkCapRefusals(t, hc, p, "streams", 10, 3)

	// Closing five streams frees five slots.
	for _, a := range open[:5] {
		a.close()
	}
	open = open[5:]
	eventually(t, 10*time.Second, "the node counting 45 streams", func() bool { return p.protection(t).Streams == maxStreams-5 })
	for i := range 5 {
		a := tryStream(t, hc, p.URL, "cap", "", i%2 == 0)
		if !a.hello {
			t.Fatalf("after closing 5 streams, new stream %d refused (status %d)", i+1, a.status)
		}
		open = append(open, a)
	}
	if a := tryStream(t, hc, p.URL, "cap", "", false); !a.shed() {
		t.Fatalf("stream over the cap again: status %d hello %v closed %v retry %v; want a browser-safe shed", a.status, a.hello, a.closed, a.retry)
	}
	c := p.protection(t).Counters
	t.Logf("counters: %v", c)
	if got := c["admission/connect/streams/block"]; got != 14 {
		t.Fatalf("admission/connect/streams/block = %d, want 14 (10 shed + 3 refused + 1)", got)
	}
	onTransport(t, p, true)
}

// checkCapRefusals opens browsers browser-style and sdks SDK-style streams
// on a node at its cap and checks each is refused the right way.
func checkCapRefusals(t *testing.T, hc *http.Client, p *proc, reason string, browsers, sdks int) {
	t.Helper()
	busy := 5 * time.Second // admission.busy_retry_after default
	for i := range browsers {
		a := tryStream(t, hc, p.URL, "cap", "", false)
		if !a.shed() {
			t.Fatalf("%s: browser stream %d over the cap: status %d hello %v closed %v retry %v (set %v); want 200 + retry: + close",
				reason, i+1, a.status, a.hello, a.closed, a.retry, a.retrySet)
		}
		if a.retry < busy || a.retry > 2*busy {
			t.Fatalf("%s: shed with retry: %v, want %v..%v (busy_retry_after, jittered)", reason, a.retry, busy, 2*busy)
		}
	}
	for i := range sdks {
		a := tryStream(t, hc, p.URL, "cap", "", true)
		if a.status != http.StatusServiceUnavailable || a.code != "overloaded" {
			t.Fatalf("%s: SDK stream %d over the cap: %d %q, want 503 overloaded", reason, i+1, a.status, a.code)
		}
		if ra, err := strconv.Atoi(a.retryAfter); err != nil || ra != int(busy/time.Second) {
			t.Fatalf("%s: SDK refusal Retry-After %q, want %d", reason, a.retryAfter, int(busy/time.Second))
		}
	}
}

// onTransport checks that the node counted the test's streams on its
// transport (transportOf): accepted and shed connects, and (only) none on
// the other.
func onTransport(t *testing.T, p *proc, only bool) {
	t.Helper()
	other := client.TransportWS
	if transportOf(t) == other {
		other = client.TransportSSE
	}
	for _, result := range []string{"accepted", "shed"} {
		if n := p.metricSum(t, "herald_stream_connects_total", `transport="`+transportOf(t)+`"`, `result="`+result+`"`); n == 0 {
			t.Fatalf("no %s connect counted on transport %s", result, transportOf(t))
		}
	}
	if n := p.metricSum(t, "herald_stream_connects_total", `transport="`+other+`"`); only && n != 0 {
		t.Fatalf("%v connects counted on transport %s, want the test's (%s) only", n, other, transportOf(t))
	}
}

// TestProtectionAdmissionPerIPCap: every test client is 127.0.0.1, so
// max_streams_per_ip 5 admits five streams and sheds the rest; a SIGHUP
// with a raised cap admits more without a restart; closing streams frees
// slots.
func TestProtectionAdmissionPerIPCap(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process protection test")
	}
	forTransports(t, protectionAdmissionPerIPCap)
}

func protectionAdmissionPerIPCap(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "herald.yaml")
	writeConfig(t, cfg, "protection:\n  admission:\n    max_streams_per_ip: 5\n")
	p := startProc(t, "perip", unguarded, "--config", cfg)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	defer hc.CloseIdleConnections()

	var open []*attempt
	defer func() {
		for _, a := range open {
			a.close()
		}
	}()
	for i := range 5 {
		a := tryStream(t, hc, p.URL, "cap", "", false)
		if !a.hello {
			t.Fatalf("stream %d of 5 refused (status %d)", i+1, a.status)
		}
		open = append(open, a)
	}
	checkCapRefusals(t, hc, p, "per_ip", 3, 2)
	if got := p.protection(t).Counters["admission/connect/per_ip/block"]; got != 5 {
		t.Fatalf("admission/connect/per_ip/block = %d, want 5", got)
	}

	// Raise the cap to 7 and reload: two more streams fit, the eighth not.
	writeConfig(t, cfg, "protection:\n  admission:\n    max_streams_per_ip: 7\n")
	p.signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the reload admitting a sixth stream", func() bool {
		a := tryStream(t, hc, p.URL, "cap", "", false)
		if a.hello {
			open = append(open, a)
			return true
		}
		time.Sleep(50 * time.Millisecond)
		return false
	})
	a := tryStream(t, hc, p.URL, "cap", "", false)
	if !a.hello {
		t.Fatalf("seventh stream under the reloaded cap refused (status %d)", a.status)
	}
	open = append(open, a)
	if a := tryStream(t, hc, p.URL, "cap", "", false); !a.shed() {
		t.Fatalf("eighth stream over the reloaded cap: status %d hello %v; want a shed", a.status, a.hello)
	}
	// Closing two streams frees two slots.
	for _, a := range open[:2] {
		a.close()
	}
	open = open[2:]
	eventually(t, 10*time.Second, "the node counting 5 streams", func() bool { return p.protection(t).Streams == 5 })
	for range 2 {
		a := tryStream(t, hc, p.URL, "cap", "", true)
		if !a.hello {
			t.Fatalf("stream after closing two refused (status %d)", a.status)
		}
		open = append(open, a)
	}
	t.Logf("counters: %v", p.protection(t).Counters)
	onTransport(t, p, true)
}

// TestProtectionReplayCapShedsAndEveryoneCatchesUp: with one replay slot
// and a short wait, a burst of streams resuming from an old cursor is
// partly shed (browser: 200 + retry: + close; SDK: 503 + Retry-After), and
// resuming SDK clients all complete their replay of a few thousand events
// in the end with nothing lost or duplicated.
func TestProtectionReplayCapShedsAndEveryoneCatchesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process protection test")
	}
	forTransports(t, protectionReplayCapShedsAndEveryoneCatchesUp)
}

func protectionReplayCapShedsAndEveryoneCatchesUp(t *testing.T) {
	rd := redistest.StartServer(t)
	p := startProc(t, "replay", append(slices.Clone(unguarded),
		"HERALD_PROTECTION__REPLAY__MAX_CONCURRENT=1",
		"HERALD_PROTECTION__REPLAY__MAX_WAIT=10ms"), "--redis", rd.URL())
	const topic, history = "replayed", 3000
	const burst, resumers = 20, 40

	// One event, then one cursor per future client (each its own session:
	// streams of one session take each other over), then the history.
	publishBatch(t, p.URL, topic, 1)
	cursors := make([]string, 2*burst+resumers)
	for i := range cursors {
		rs := openRaw(t, p.URL, topic, "")
		cursors[i] = rs.hello
		rs.cancel()
	}
	publishBatch(t, p.URL, topic, history)
	head := uint64(history + 1)
	eventually(t, 10*time.Second, "cursor streams closed", func() bool { return p.protection(t).Streams == 0 })

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	defer hc.CloseIdleConnections()
	// burstOf starts n resuming streams at once; admitted ones read their
	// whole replay (holding the slot), as a real client would.
	burstOf := func(cursors []string, sdk bool) (admitted, refused int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		gate := make(chan struct{})
		for _, cur := range cursors {
			wg.Go(func() {
				<-gate
				a, err := openAttempt(transportOf(t), hc, p.URL, topic, cur, sdk)
				if err != nil {
					t.Error(err)
					return
				}
				defer a.close()
				switch {
				case a.hello:
					if err := a.readUntil(1, head, 30*time.Second); err != nil {
						t.Errorf("admitted replay: %v", err)
					}
					mu.Lock()
					admitted++
					mu.Unlock()
					return
				case sdk:
					if a.status != http.StatusServiceUnavailable || a.code != "overloaded" || a.retryAfter == "" {
						t.Errorf("SDK replay refusal: %d %q Retry-After %q; want 503 overloaded with Retry-After", a.status, a.code, a.retryAfter)
					}
				default:
					if !a.shed() || a.retry < time.Second {
						t.Errorf("browser replay refusal: status %d hello %v closed %v retry %v; want 200 + retry: ≥ 1s + close", a.status, a.hello, a.closed, a.retry)
					}
				}
				mu.Lock()
				refused++
				mu.Unlock()
			})
		}
		close(gate)
		wg.Wait()
		return admitted, refused
	}
	ab, rb := burstOf(cursors[:burst], false)
	as, rs := burstOf(cursors[burst:2*burst], true)
	t.Logf("burst of %d browser resumes: %d replayed, %d shed (200 + retry:); burst of %d SDK resumes: %d replayed, %d refused (503)",
		burst, ab, rb, burst, as, rs)
	if t.Failed() {
		t.FailNow()
	}
	if rb == 0 || rs == 0 || ab == 0 || as == 0 {
		t.Fatalf("want both replays and refusals in each burst (one slot, 10ms wait)")
	}

	// Resuming SDK clients, all at once: every one replays everything.
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fleet{cancel: cancel, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}}
	for _, cur := range cursors[2*burst:] {
		c := &fleetClient{topic: topic, last: 1, started: true, sessions: map[string]bool{}}
		c.stream = client.Subscribe(client.StreamConfig{
			Endpoints: []string{p.URL}, Topics: []string{topic}, LastEventID: cur, HTTPClient: f.hc,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second, Transport: transportOf(t),
			OnConnect: func(ep string) {
				c.mu.Lock()
				c.connects = append(c.connects, connectRecord{at: time.Now(), endpoint: ep})
				c.mu.Unlock()
			},
		})
		f.clients = append(f.clients, c)
		f.wg.Go(func() { _ = c.stream.Run(ctx, c.handle) })
	}
	t.Cleanup(f.stop)
	heads := map[string]uint64{topic: head}
	eventually(t, 60*time.Second, "every resuming client replayed the history", func() bool { return f.caughtUp(heads) == 0 })
	r := f.report(heads)
	t.Logf("%d SDK clients resumed from offset 1 with one replay slot: all caught up to %d in %v; received %d, lost %d, duplicated %d, resets %d",
		r.clients, head, time.Since(start).Round(time.Millisecond), r.received, r.lost, r.dups, r.resets)
	if r.lost != 0 || r.dups != 0 || r.resets != 0 || r.received != resumers*history {
		t.Fatalf("lost %d, duplicated %d, resets %d, received %d (want %d)", r.lost, r.dups, r.resets, r.received, resumers*history)
	}
	c := p.protection(t).Counters
	t.Logf("counters: %v", c)
	if got := c["replay/replay/replay_wait/block"]; got < uint64(rb+rs) {
		t.Fatalf("replay/replay/replay_wait/block = %d, clients saw %d refusals", got, rb+rs)
	}
	onTransport(t, p, false) // the cursors were taken over SSE
}
