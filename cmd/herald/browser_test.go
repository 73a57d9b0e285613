package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/redistest"
)

// TestBrowserEventSourceResumesAcrossRestart drives a real headless
// Chromium: a native EventSource on two topics receives payloads with LF,
// CRLF, bare CR, leading spaces and Unicode exactly, then the Herald node
// (Redis store) is restarted on the same address; the browser reconnects by
// itself with Last-Event-ID and receives every event published meanwhile
// exactly once.
func TestBrowserEventSourceResumesAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test is not a -short test")
	}
	driver := requireTool(t, "chromedriver")
	browser := requireTool(t, "chromium")
	rs := redistest.StartServer(t)

	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, browserPage)
	}))
	defer page.Close()

	addr := freeAddr(t) // fixed, so the restarted node has the same URL
	start := func() *Main {
		return MustRunMain(t, func(c *Config) {
			c.Listen = addr
			c.Redis = rs.URL()
			c.RedisPrefix = "browser"
			c.CORS.AllowedOrigins = []string{page.URL}
			c.Stream.RetryMin, c.Stream.RetryMax = 1500*time.Millisecond, 2*time.Second
		})
	}
	m := start()
	base := m.URL()

	wd := startWebDriver(t, driver, browser)
	wd.navigate(page.URL + "/?herald=" + base)
	wd.waitFor(t, "hello", `return window.log.filter(e => e.type === "herald.hello").length >= 1`)

	payloads := []struct{ topic, data, want string }{
		{"t1", "line1\nline2", "line1\nline2"},
		{"t2", "crlf1\r\ncrlf2", "crlf1\ncrlf2"},
		{"t1", "cr1\rcr2", "cr1\ncr2"},
		{"t2", "   three leading spaces", "   three leading spaces"},
		{"t1", "ünïcødé ✓ 🚀 日本語", "ünïcødé ✓ 🚀 日本語"},
		{"t2", "", ""},
		{"t1", ` {"json": "text"} `, ` {"json": "text"} `},
	}
	for _, p := range payloads {
		publishJSON(t, base, p.topic, map[string]any{"event": "payload", "data": p.data})
	}
	wd.waitFor(t, "first payloads", fmt.Sprintf(`return window.log.filter(e => e.type === "payload").length >= %d`, len(payloads)))

	// Restart the node; publish while the browser is disconnected.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	wd.waitFor(t, "disconnect noticed", `return window.log.some(e => e.type === "error")`)
	start() // the same address: the browser reconnects by itself
	var missed []struct{ topic, data, want string }
	for i := range 6 {
		topic := []string{"t1", "t2"}[i%2]
		d := fmt.Sprintf("after-restart-%d\nline", i)
		publishJSON(t, base, topic, map[string]any{"event": "payload", "data": d})
		missed = append(missed, struct{ topic, data, want string }{topic, d, d})
	}
	want := append(payloads, missed...)
	wd.waitFor(t, "replay after restart", fmt.Sprintf(`return window.log.filter(e => e.type === "payload").length >= %d`, len(want)))
	// One more live event proves the resumed stream is live, and lets any
	// duplicate surface before we compare.
	publishJSON(t, base, "t1", map[string]any{"event": "payload", "data": "live-end"})
	want = append(want, struct{ topic, data, want string }{"t1", "live-end", "live-end"})
	wd.waitFor(t, "live after resume", `return window.log.some(e => e.data === "live-end")`)

	var log []struct {
		Type, Data, ID string
	}
	wd.execute(t, `return window.log`, &log)
	var got []string
	hellos := 0
	for _, e := range log {
		switch e.Type {
		case "payload":
			got = append(got, e.Data)
		case push.EventHello:
			hellos++
		case push.EventReset:
			t.Errorf("unexpected reset: %s", e.Data)
		}
	}
	if hellos != 2 {
		t.Errorf("saw %d hellos, want 2 (connect, resume)", hellos)
	}
	// Per-topic order and exactly-once: compare per topic.
	perTopic := func(items []string, topicOf func(i int) string) map[string][]string {
		out := map[string][]string{}
		for i, d := range items {
			out[topicOf(i)] = append(out[topicOf(i)], d)
		}
		return out
	}
	topicByData := map[string]string{}
	for _, w := range want {
		topicByData[w.want] = w.topic
	}
	wantData := make([]string, len(want))
	for i, w := range want {
		wantData[i] = w.want
	}
	g := perTopic(got, func(i int) string { return topicByData[got[i]] })
	w := perTopic(wantData, func(i int) string { return want[i].topic })
	for _, topic := range []string{"t1", "t2"} {
		if fmt.Sprintf("%q", g[topic]) != fmt.Sprintf("%q", w[topic]) {
			t.Errorf("topic %s: browser received\n  %q\nwant exactly\n  %q", topic, g[topic], w[topic])
		}
	}
	if len(got) != len(want) {
		t.Errorf("received %d payload events, want %d (loss or duplicate)", len(got), len(want))
	}
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// sentEvent is one acknowledged publish.
type sentEvent struct {
	topic, data string
	offset      uint64
}

// TestBrowserEventSourceResumesAcrossKill9AndRedisRestart: a native
// EventSource on two topics follows a Herald process (Redis store) that is
// killed with SIGKILL and restarted on the same address, twice; the second
// time Redis (AOF on) is also restarted while the node is down, and once
// more later under the open connection. Events are told apart by when they
// were published: "live" ones while the browser is connected, "down" ones
// while no node serves it, which can only arrive as replay on the next
// connection. Every connection must bring exactly its share, in order per
// topic, each event once:
//
//	connection 1: live1
//	connection 2 (after kill -9): down1 (replay), then live2
//	connection 3 (after kill -9 and a Redis restart): a herald.reset, then
//	    down2b (replay), live3, (Redis restart) a reset per topic, live4
//
// A Redis restart changes every stream's epoch (ADR 0002: Herald cannot
// tell a clean restart from one that lost data), so connection 3 must open
// with an epoch_changed reset per topic naming exactly the events published
// between the kill and the Redis restart (down2a, which the new lineage
// does not replay), and the restart under the open connection must show as
// one epoch_changed reset per topic with an empty lost range, just before
// that topic's first new event; no other reset may appear.
func TestBrowserEventSourceResumesAcrossKill9AndRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test is not a -short test")
	}
	driver := requireTool(t, "chromedriver")
	browser := requireTool(t, "chromium")
	rs := redistest.StartServer(t, redistest.WithAppendOnly(true))
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, browserPage)
	}))
	defer page.Close()

	addr := freeAddr(t)
	env := []string{"HERALD_CORS__ALLOWED_ORIGINS=" + page.URL,
		"HERALD_STREAM__RETRY_MIN=200ms", "HERALD_STREAM__RETRY_MAX=400ms"}
	start := func(name string) *proc {
		p := startRaceProc(t, name, env, "--redis", rs.URL(), "--listen", addr)
		if p.URL != "http://"+addr {
			t.Fatalf("%s listens on %s, want %s", name, p.URL, addr)
		}
		return p
	}
	// Publishes go through a second node, which stays up throughout.
	publisher := client.NewPublisher(client.PublisherConfig{Endpoints: []string{MustRunMain(t, func(c *Config) { c.Redis = rs.URL() }).URL()},
		MaxAttempts: 20, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	defer publisher.CloseIdleConnections()
	publish := func(label string, n int) []sentEvent {
		var out []sentEvent
		for i := range n {
			topic := []string{"t1", "t2"}[i%2]
			data := fmt.Sprintf("%s-%d\nsecond line", label, i)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			r, err := publisher.Publish(ctx, topic, client.Message{Event: "payload", Text: data})
			cancel()
			if err != nil {
				t.Fatalf("publish %s: %v", data, err)
			}
			out = append(out, sentEvent{topic, data, r.Offset})
		}
		return out
	}
	node := start("node-1")
	wd := startWebDriver(t, driver, browser)
	wd.navigate(page.URL + "/?herald=" + node.URL)
	count := func(typ string) int {
		var n int
		wd.execute(t, fmt.Sprintf(`return window.log.filter(e => e.type === %q).length`, typ), &n)
		return n
	}
	waitCount := func(what, typ string, n int) {
		wd.waitFor(t, what, fmt.Sprintf(`return window.log.filter(e => e.type === %q).length >= %d`, typ, n))
	}
	kill := func(p *proc) {
		errs := count("error")
		p.kill()
		select {
		case <-p.exited:
		default:
			t.Fatalf("%s survived SIGKILL", p.name)
		}
		waitCount("the browser noticed "+p.name+" died", "error", errs+1)
	}
	waitCount("first hello", push.EventHello, 1)

	live1 := publish("live1", 4)
	waitCount("live1", "payload", len(live1))

	kill(node)
	down1 := publish("down1", 4)
	node = start("node-2")
	waitCount("second hello", push.EventHello, 2)
	live2 := publish("live2", 4)
	waitCount("down1 and live2", "payload", len(live1)+len(down1)+len(live2))

	kill(node)
	down2a := publish("down2a", 4) // before the Redis restart: kept, inherited by the new lineage, replayed
	rs.Restart(t)
	down2b := publish("down2b", 4) // after it: the new lineage, replayed
	node = start("node-3")
	waitCount("third hello", push.EventHello, 3)
	live3 := publish("live3", 4)
	want := [][]sentEvent{nil, live1, append(down1, live2...), slices.Concat(down2a, down2b, live3)}
	total := 0
	for _, w := range want {
		total += len(w)
	}
	waitCount("down2b and live3", "payload", total)
	// Redis restarts again, under the open connection this time.
	rs.Restart(t)
	live4 := publish("live4", 4)
	want[3] = append(want[3], live4...)
	// A final live event lets a late duplicate surface before we compare.
	end := publish("end", 1)
	want[3] = append(want[3], end...)
	wd.waitFor(t, "the end event", fmt.Sprintf(`return window.log.some(e => e.data === %q)`, end[0].data))

	var log []struct{ Type, Data, ID string }
	wd.execute(t, `return window.log`, &log)
	topicOf := map[string]string{}
	for _, evs := range [][]sentEvent{live1, down1, live2, down2a, down2b, live3, live4, end} {
		for _, e := range evs {
			topicOf[e.data] = e.topic
		}
	}
	// Split the log by connection (each opens with its hello).
	conn := 0
	got := make([]map[string][]string, len(want))
	var hellos []push.Hello
	// Every reset stream as "connection topic after-n-payloads-of-its-topic
	// reason lost_from continue_from".
	var resets []string
	for _, e := range log {
		switch e.Type {
		case push.EventHello:
			conn++
			var h push.Hello
			if err := json.Unmarshal([]byte(e.Data), &h); err != nil {
				t.Fatalf("hello %q: %v", e.Data, err)
			}
			hellos = append(hellos, h)
		case push.EventReset:
			var r push.Reset
			if err := json.Unmarshal([]byte(e.Data), &r); err != nil {
				t.Fatalf("reset %q: %v", e.Data, err)
			}
			for _, st := range r.Streams {
				resets = append(resets, fmt.Sprintf("conn %d %s after %d: %s lost_from %d continue_from %d",
					conn, st.Topic, len(got[min(conn, len(got)-1)][st.Topic]), st.Reason, st.LostFrom, st.ContinueFrom))
			}
		case "payload":
			if conn >= len(got) {
				t.Fatalf("payload %q on connection %d", e.Data, conn)
			}
			if got[conn] == nil {
				got[conn] = map[string][]string{}
			}
			got[conn][topicOf[e.Data]] = append(got[conn][topicOf[e.Data]], e.Data)
		}
	}
	if len(hellos) != 3 {
		t.Fatalf("%d hellos, want 3 (connect, resume after each kill)", len(hellos))
	}
	for i, h := range hellos[1:] {
		if !h.Resumed || h.Session != hellos[0].Session {
			t.Errorf("hello %d: %+v, want the resumed session %s", i+2, h, hellos[0].Session)
		}
	}
	for c := 1; c < len(want); c++ {
		for _, topic := range []string{"t1", "t2"} {
			var w []string
			for _, e := range want[c] {
				if e.topic == topic {
					w = append(w, e.data)
				}
			}
			if fmt.Sprintf("%q", got[c][topic]) != fmt.Sprintf("%q", w) {
				t.Errorf("connection %d, topic %s: browser received\n  %q\nwant exactly\n  %q", c, topic, got[c][topic], w)
			}
		}
	}
	// No reset at all (epoch lineage, ADR 0024): the events published
	// between the kill and the first Redis restart were kept, the new
	// epochs forked at the head they found, and the browser had read
	// nothing that no longer exists; the second restart, under the open
	// connection, is as silent. The events each connection received are
	// checked exactly above, offsets included.
	var wantResets []string
	for _, topic := range []string{"t1", "t2"} {
		of := func(evs []sentEvent) (offs []uint64) {
			for _, e := range evs {
				if e.topic == topic {
					offs = append(offs, e.offset)
				}
			}
			return offs
		}
		if kept, next := of(down2a), of(down2b); next[0] != kept[len(kept)-1]+1 {
			t.Fatalf("%s: the new lineage starts at %d, want right after down2a %v", topic, next[0], kept)
		}
	}
	slices.Sort(resets)
	slices.Sort(wantResets)
	t.Logf("resets seen:\n  %s", strings.Join(resets, "\n  "))
	if !slices.Equal(resets, wantResets) {
		t.Errorf("resets\n  %s\nwant exactly\n  %s", strings.Join(resets, "\n  "), strings.Join(wantResets, "\n  "))
	}
}

const browserPage = `<!doctype html><meta charset="utf-8"><title>herald</title><script>
window.log = [];
const herald = new URLSearchParams(location.search).get("herald");
const es = new EventSource(herald + "/v1/stream?topic=t1&topic=t2");
for (const type of ["herald.hello", "herald.reset", "payload", "message"]) {
  es.addEventListener(type, e => window.log.push({type, data: e.data, id: e.lastEventId}));
}
es.onerror = () => window.log.push({type: "error", data: String(es.readyState), id: ""});
</script>`

// requireTool finds a binary; a missing one fails the test in CI and skips it elsewhere.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (make test installs it with apt as root)", name)
		}
		t.Skipf("%s not installed; run make deps as root", name)
	}
	return p
}

// webDriver is a minimal W3C WebDriver client for chromedriver.
type webDriver struct {
	t       *testing.T
	base    string
	session string
	client  *http.Client
}

func startWebDriver(t *testing.T, driver, browser string) *webDriver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(driver, fmt.Sprintf("--port=%d", port), "--allowed-ips=127.0.0.1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	wd := &webDriver{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), client: &http.Client{Timeout: 60 * time.Second}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := wd.client.Get(wd.base + "/status")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": browser,
			"args": []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
				"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"},
		},
	}}}
	var out struct {
		Value struct {
			SessionID string `json:"sessionId"`
		} `json:"value"`
	}
	wd.call(t, http.MethodPost, "/session", caps, &out)
	if out.Value.SessionID == "" {
		t.Fatal("no webdriver session")
	}
	wd.session = out.Value.SessionID
	t.Cleanup(func() { wd.call(t, http.MethodDelete, "/session/"+wd.session, nil, nil) })
	return wd
}

func (wd *webDriver) call(t *testing.T, method, path string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, wd.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := wd.client.Do(req)
	if err != nil {
		t.Fatalf("webdriver %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("webdriver %s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("webdriver response %s: %v", b, err)
		}
	}
}

func (wd *webDriver) navigate(u string) {
	wd.call(wd.t, http.MethodPost, "/session/"+wd.session+"/url", map[string]any{"url": u}, nil)
}

// execute runs script in the page and decodes its return value into out.
func (wd *webDriver) execute(t *testing.T, script string, out any) {
	t.Helper()
	var resp struct {
		Value json.RawMessage `json:"value"`
	}
	wd.call(t, http.MethodPost, "/session/"+wd.session+"/execute/sync", map[string]any{"script": script, "args": []any{}}, &resp)
	if err := json.Unmarshal(resp.Value, out); err != nil {
		t.Fatalf("script result %s: %v", resp.Value, err)
	}
}

// waitFor polls a boolean script until true (bounded).
func (wd *webDriver) waitFor(t *testing.T, what, script string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ok bool
		wd.execute(t, script, &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var log any
			wd.execute(t, "return window.log", &log)
			t.Fatalf("browser: timed out waiting for %s; log: %v", what, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrowserEventSourceSurvivesABadCursor: a browser EventSource whose
// last event id is not a Herald cursor (here a proxy in front of Herald
// answered the first connection with an id of its own) reconnects with
// that Last-Event-ID. Herald must answer 200 with a herald.reset naming
// the stream invalid_cursor and keep streaming: any non-200 would close
// that EventSource for good.
func TestBrowserEventSourceSurvivesABadCursor(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test is not a -short test")
	}
	driver := requireTool(t, "chromedriver")
	browser := requireTool(t, "chromium")
	m := MustRunMain(t, nil)
	target, err := url.Parse(m.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	const badID = "from-an-old-proxy"
	var mu sync.Mutex
	streams := 0
	var sentIDs []string
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/stream" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, badCursorPage)
			return
		}
		mu.Lock()
		streams++
		first := streams == 1
		sentIDs = append(sentIDs, r.Header.Get("Last-Event-ID"))
		mu.Unlock()
		if first {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "retry: 200\nid: "+badID+"\ndata: stale\n\n")
			return // the connection ends: the browser reconnects with badID
		}
		rp.ServeHTTP(w, r)
	}))
	// Registered before the browser's cleanups, so it runs after them: the
	// proxied stream is held open until the browser is gone.
	t.Cleanup(func() { front.CloseClientConnections(); front.Close() })

	wd := startWebDriver(t, driver, browser)
	wd.navigate(front.URL + "/")
	wd.waitFor(t, "the reset", `return window.log.some(e => e.type === "herald.reset")`)
	publishJSON(t, m.URL(), "t1", map[string]any{"data": "after-1"})
	publishJSON(t, m.URL(), "t1", map[string]any{"data": "after-2"})
	wd.waitFor(t, "events after the reset", `return window.log.filter(e => e.type === "message" && e.data.startsWith("after-")).length >= 2`)

	var log []struct{ Type, Data, ID string }
	wd.execute(t, `return window.log`, &log)
	var state int
	wd.execute(t, `return es.readyState`, &state)
	if state != 1 {
		t.Errorf("EventSource readyState %d, want 1 (OPEN)", state)
	}
	var reset struct{ Streams []push.StreamReset }
	var got []string
	for _, e := range log {
		switch e.Type {
		case push.EventReset:
			if err := json.Unmarshal([]byte(e.Data), &reset); err != nil {
				t.Fatalf("reset %q: %v", e.Data, err)
			}
			if e.ID == "" || e.ID == badID {
				t.Errorf("reset carried id %q, want a fresh cursor", e.ID)
			}
		case "message":
			got = append(got, e.Data)
		}
	}
	if len(reset.Streams) != 1 || reset.Streams[0].Reason != push.ResetInvalidCursor || reset.Streams[0].Topic != "t1" {
		t.Errorf("reset %+v, want one invalid_cursor stream for t1", reset)
	}
	if want := []string{"stale", "after-1", "after-2"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("browser received %q, want %q", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sentIDs) < 2 || sentIDs[1] != badID {
		t.Errorf("Last-Event-ID of the browser's requests: %q, want the bad id on the reconnect", sentIDs)
	}
}

const badCursorPage = `<!doctype html><meta charset="utf-8"><title>herald</title><script>
window.log = [];
window.es = new EventSource("/v1/stream?topic=t1");
for (const type of ["herald.hello", "herald.reset", "message"]) {
  es.addEventListener(type, e => window.log.push({type, data: e.data, id: e.lastEventId}));
}
es.onerror = () => window.log.push({type: "error", data: String(es.readyState), id: ""});
</script>`
