package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/wire"
)

// TestBrowserWebSocketResumesAcrossRestart drives a real headless Chromium
// with its native WebSocket (ADR 0023): the page subscribes to two topics
// on /v1/ws, receives payloads with LF, CRLF, bare CR and Unicode exactly as
// an EventSource would, publishes on the socket and gets its herald.ack;
// then the node (Redis store) restarts on the same address, the page
// reconnects with its last id in last_event_id and receives every event
// published meanwhile exactly once.
func TestBrowserWebSocketResumesAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test is not a -short test")
	}
	driver := requireTool(t, "chromedriver")
	browser := requireTool(t, "chromium")
	rs := redistest.StartServer(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, browserWSPage)
	}))
	defer page.Close()
	addr := freeAddr(t)
	start := func() *Main {
		return MustRunMain(t, func(c *Config) {
			c.Listen = addr
			c.Redis = rs.URL()
			c.RedisPrefix = "browserws"
			c.CORS.AllowedOrigins = []string{page.URL}
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
		{"t1", "ünïcødé ✓ 🚀 日本語 \u2028", "ünïcødé ✓ 🚀 日本語 \u2028"},
		{"t2", "", ""},
	}
	for _, p := range payloads {
		publishJSON(t, base, p.topic, map[string]any{"event": "payload", "data": p.data})
	}
	wd.waitFor(t, "first payloads", fmt.Sprintf(`return window.log.filter(e => e.type === "payload").length >= %d`, len(payloads)))

	// Publish from the browser, on the socket.
	var sent bool
	wd.execute(t, `window.ws.send(JSON.stringify({type: "publish", ref: "b1", topic: "t1", event: "payload", data: "from-the-browser"})); return true`, &sent)
	wd.waitFor(t, "ack", `return window.log.some(e => e.type === "herald.ack")`)
	want := append(payloads, struct{ topic, data, want string }{"t1", "from-the-browser", "from-the-browser"})

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	wd.waitFor(t, "close noticed", `return window.log.some(e => e.type === "close")`)
	start()
	for i := range 6 {
		topic := []string{"t1", "t2"}[i%2]
		d := fmt.Sprintf("after-restart-%d\r\nline", i)
		publishJSON(t, base, topic, map[string]any{"event": "payload", "data": d})
		want = append(want, struct{ topic, data, want string }{topic, d, strings.ReplaceAll(d, "\r\n", "\n")})
	}
	publishJSON(t, base, "t1", map[string]any{"event": "payload", "data": "live-end"})
	want = append(want, struct{ topic, data, want string }{"t1", "live-end", "live-end"})
	wd.waitFor(t, "replay and live after the restart", `return window.log.some(e => e.data === "live-end")`)

	var log []struct{ Type, Data, ID, Topic string }
	wd.execute(t, `return window.log`, &log)
	got := map[string][]string{}
	hellos, acks := 0, 0
	for _, e := range log {
		switch e.Type {
		case "payload":
			got[e.Topic] = append(got[e.Topic], e.Data)
		case push.EventHello:
			hellos++
		case wire.EventAck:
			acks++
		case push.EventReset, wire.EventError:
			t.Errorf("unexpected %s: %s", e.Type, e.Data)
		}
	}
	wantBy := map[string][]string{}
	for _, w := range want {
		wantBy[w.topic] = append(wantBy[w.topic], w.want)
	}
	for _, topic := range []string{"t1", "t2"} {
		if fmt.Sprintf("%q", got[topic]) != fmt.Sprintf("%q", wantBy[topic]) {
			t.Errorf("topic %s: browser received\n  %q\nwant exactly\n  %q", topic, got[topic], wantBy[topic])
		}
	}
	if hellos < 2 || acks != 1 {
		t.Errorf("saw %d hellos (want ≥ 2: connect, resume) and %d acks (want 1)", hellos, acks)
	}
}

// browserWSPage is a minimal browser client of /v1/ws: it keeps the last
// id it received and reconnects with it after any close.
const browserWSPage = `<!doctype html><meta charset="utf-8"><title>herald ws</title><script>
window.log = [];
let last = "";
const base = new URLSearchParams(location.search).get("herald").replace(/^http/, "ws");
function connect() {
  let u = base + "/v1/ws?topic=t1&topic=t2";
  if (last) u += "&last_event_id=" + encodeURIComponent(last);
  const ws = new WebSocket(u);
  window.ws = ws;
  ws.onmessage = (m) => {
    const f = JSON.parse(m.data);
    if (f.id) last = f.id;
    window.log.push({type: f.event, data: f.data, id: f.id || "", topic: f.topic || ""});
  };
  ws.onclose = (e) => {
    window.log.push({type: "close", data: String(e.code) + " " + e.reason, id: "", topic: ""});
    setTimeout(connect, 300);
  };
}
connect();
</script>`
