package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/sse"
)

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

func do(t testing.TB, method, url, ctype, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestBadInputTable(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) { c.Limits.MaxEventBytes = 1024; c.Limits.MaxTopicsPerStream = 4 })
	const js = "application/json"
	big := strings.Repeat("x", 1025)
	tests := []struct {
		name, method, path, ctype, body string
		hdr                             map[string]string
		status                          int
		code                            string
	}{
		{"malformed json", "POST", "/v1/topics/a/events", js, `{"data":`, nil, 400, server.CodeInvalidJSON},
		{"unknown field", "POST", "/v1/topics/a/events", js, `{"data":"x","bogus":1}`, nil, 400, server.CodeInvalidJSON},
		{"trailing data", "POST", "/v1/topics/a/events", js, `{"data":"x"} {}`, nil, 400, server.CodeInvalidJSON},
		{"missing data", "POST", "/v1/topics/a/events", js, `{"event":"x"}`, nil, 400, server.CodeInvalidEvent},
		{"data too large", "POST", "/v1/topics/a/events", js, `{"data":"` + big + `"}`, nil, 400, server.CodeInvalidEvent},
		{"body too large", "POST", "/v1/topics/a/events", js, `{"data":"` + strings.Repeat("y", 8000) + `"}`, nil, 413, server.CodeBodyTooLarge},
		{"NUL in data", "POST", "/v1/topics/a/events", js, `{"data":"a\u0000b"}`, nil, 400, server.CodeInvalidEvent},
		{"bad event type", "POST", "/v1/topics/a/events", js, `{"event":"a\nb","data":"x"}`, nil, 400, server.CodeInvalidEvent},
		{"reserved event type", "POST", "/v1/topics/a/events", js, `{"event":"herald.reset","data":"x"}`, nil, 400, server.CodeInvalidEvent},
		{"bad topic", "POST", "/v1/topics/bad%20topic/events", js, `{"data":"x"}`, nil, 400, server.CodeInvalidTopic},
		{"topic with brace", "POST", "/v1/topics/%7Bx%7D/events", js, `{"data":"x"}`, nil, 400, server.CodeInvalidTopic},
		{"text/plain", "POST", "/v1/topics/a/events", "text/plain", `{"data":"x"}`, nil, 415, server.CodeUnsupportedType},
		{"form post", "POST", "/v1/topics/a/events", "application/x-www-form-urlencoded", `data=x`, nil, 415, server.CodeUnsupportedType},
		{"bad idempotency key", "POST", "/v1/topics/a/events", js, `{"data":"x"}`, map[string]string{"Idempotency-Key": "has space"}, 400, server.CodeInvalidEvent},
		{"empty batch", "POST", "/v1/events", js, `{"events":[]}`, nil, 400, server.CodeInvalidEvent},
		{"batch not array", "POST", "/v1/events", js, `{"events":{}}`, nil, 400, server.CodeInvalidJSON},
		{"stream no topic", "GET", "/v1/stream", "", "", nil, 400, server.CodeInvalidQuery},
		{"stream bad topic", "GET", "/v1/stream?topic=a%0Ab", "", "", nil, 400, server.CodeInvalidTopic},
		{"stream too many topics", "GET", "/v1/stream?topic=a&topic=b&topic=c&topic=d&topic=e", "", "", nil, 400, server.CodeInvalidQuery},
		{"stream bad from", "GET", "/v1/stream?topic=a&from=yesterday", "", "", nil, 400, server.CodeInvalidQuery},
		{"stream forged cursor", "GET", "/v1/stream?topic=a", "", "", map[string]string{"Last-Event-ID": "%%%", "Herald-Client": "test"}, 400, server.CodeInvalidCursor},
		{"stream oversized cursor", "GET", "/v1/stream?topic=a", "", "", map[string]string{"Last-Event-ID": strings.Repeat("A", 4096), "Herald-Client": "test"}, 400, server.CodeInvalidCursor},
		{"history bad after", "GET", "/v1/topics/a/events?after=-1", "", "", nil, 400, server.CodeInvalidQuery},
		{"history bad limit", "GET", "/v1/topics/a/events?limit=100000", "", "", nil, 400, server.CodeInvalidQuery},
		{"topic info bad topic", "GET", "/v1/topics/..", "", "", nil, 400, server.CodeInvalidTopic},
		{"unknown route", "GET", "/v2/nothing", "", "", nil, 404, server.CodeNotFound},
		{"wrong method", "DELETE", "/v1/stream", "", "", nil, 405, server.CodeMethod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := do(t, tt.method, n.URL+tt.path, tt.ctype, tt.body, tt.hdr)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			var eb struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error.Code != tt.code || eb.Error.Message == "" {
				t.Fatalf("body %q: want JSON error with code %q", body, tt.code)
			}
		})
	}
	// Nothing above was appended, and the node still serves.
	if info := topicInfo(t, n, "a"); info.Last != 0 {
		t.Fatalf("bad input appended %d events", info.Last)
	}
	n.publish("a", "", "still alive")
}

func TestBatchAndIdempotency(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n := startNode(t, newStore(t, push.Retention{}), nil)
		body := `{"events":[{"topic":"a","data":"1"},{"topic":"b","data":{"k":[1, 2]}},{"topic":"bad topic","data":"x"},{"topic":"a","data":"2","idempotency_key":"k1"}]}`
		status, _, out := do(t, "POST", n.URL+"/v1/events", "application/json", body, nil)
		if status != http.StatusMultiStatus {
			t.Fatalf("batch status %d: %s", status, out)
		}
		var br struct {
			Results []struct {
				Offset uint64                 `json:"offset"`
				Topic  string                 `json:"topic"`
				Error  *struct{ Code string } `json:"error"`
			} `json:"results"`
		}
		decodeJSON(t, out, &br)
		if len(br.Results) != 4 || br.Results[0].Offset != 1 || br.Results[1].Offset != 1 ||
			br.Results[2].Error == nil || br.Results[2].Error.Code != server.CodeInvalidTopic || br.Results[3].Offset != 2 {
			t.Fatalf("batch results %s", out)
		}
		// JSON data is stored compacted; history returns it.
		_, _, hist := do(t, "GET", n.URL+"/v1/topics/b/events?after=0", "", "", nil)
		if !strings.Contains(hist, `"data":"{\"k\":[1,2]}"`) {
			t.Fatalf("history %s", hist)
		}
		// Retrying with the same key appends nothing and returns the original.
		for range 3 {
			status, _, out = do(t, "POST", n.URL+"/v1/topics/a/events", "application/json", `{"data":"2"}`, map[string]string{"Idempotency-Key": "k1"})
			var r publishResult
			decodeJSON(t, out, &r)
			if status != 201 || r.Offset != 2 || !r.Duplicate {
				t.Fatalf("idempotent retry: %d %s", status, out)
			}
		}
		if info := topicInfo(t, n, "a"); info.Last != 2 || info.Length != 2 {
			t.Fatalf("after retries: %+v", info)
		}
	})
}

func TestHealthAndReady(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), nil)
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, _, body := do(t, "GET", n.URL+p, "", "", nil); status != 200 {
			t.Errorf("%s: %d %s", p, status, body)
		}
	}
}

// TestSlowSubscriberIsCutOffOthersUnaffected: a subscriber that stops
// reading (its socket fills) is cut off as slow while another one on the
// same topic gets every event in order; the slow one, reading what it was
// sent and resuming from its last id, gets the rest with nothing lost or
// repeated. Over WebSocket the cut-off closes with 4004 when the socket
// has room for the close frame; a full one can only be dropped.
func TestSlowSubscriberIsCutOffOthersUnaffected(t *testing.T) {
	forTransports(t, testSlowSubscriberIsCutOffOthersUnaffected)
}

func testSlowSubscriberIsCutOffOthersUnaffected(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{MaxLen: 100000}), func(c *server.Config) {
		c.Stream.Queue = hub.Limits{MaxEvents: 1024, MaxBytes: 1 << 20}
		c.Stream.WriteTimeout = 500 * time.Millisecond
	})
	slow := openNonReader(t, n, "a")
	fast := n.openStream(t, []string{"a"}, "", nil)
	fast.next(wait)
	waitFor(t, wait, "both streams open", func() bool { return n.Srv.Stats().Streams == 2 })
	payload := strings.Repeat("z", 4000)
	const total = 5000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < total; i++ {
			n.publish("a", "", payload)
		}
	}()
	for i := 1; i <= total; i++ {
		ev := fast.next(wait)
		if got := offsets(t, ev.ID, []string{"a"})["a"]; got != uint64(i) {
			t.Fatalf("fast subscriber got offset %d, want %d", got, i)
		}
	}
	<-done
	waitFor(t, wait, "slow stream cut off", func() bool { return n.Srv.Stats().Streams == 1 })
	if st := n.Srv.Stats(); st.SlowEnded != 1 {
		t.Fatalf("node stats %+v: want the one stream ended as slow", st)
	}
	// The slow one reads what it was sent, to the end of the connection…
	lastID, got, end := slow()
	if lastID == "" {
		t.Fatalf("slow subscriber read no id before the end (%v)", end)
	}
	from := offsets(t, lastID, []string{"a"})["a"]
	t.Logf("slow subscriber read %d events (to offset %d) before the cut-off; end: %v", got, from, end)
	if from != uint64(got) {
		t.Fatalf("slow subscriber's events end at offset %d after %d events", from, got)
	}
	// …and resumes from its last id: the rest, once each, in order. The
	// replay is held to the same queue and write deadline, which a reader
	// on a loaded machine can miss too: it then resumes again, as a client
	// would, from the last id it read.
	last, id, resumes := from, lastID, 0
	for last < total {
		if resumes++; resumes > 10 {
			t.Fatalf("resumed slow subscriber cut off %d times, at offset %d of %d", resumes-1, last, total)
		}
		r := n.openStream(t, []string{"a"}, id, nil)
		hello(t, r)
	read:
		for last < total {
			select {
			case ev, ok := <-r.events:
				if !ok {
					break read
				}
				if off := offsets(t, ev.ID, []string{"a"})["a"]; off != last+1 || strings.HasPrefix(ev.Type, "herald.") {
					t.Fatalf("resumed slow subscriber got %q at offset %d after %d", ev.Type, off, last)
				}
				last, id = last+1, ev.ID
			case <-time.After(wait):
				t.Fatalf("resumed slow subscriber: nothing within %s after offset %d", wait, last)
			}
		}
		if last == total {
			r.noEvent(200 * time.Millisecond)
		}
		r.Close()
	}
	t.Logf("the slow subscriber resumed %d time(s) to catch up", resumes)
}

// openNonReader opens a stream of topic on the test's transport over a
// connection with a tiny receive buffer, and reads nothing more than the
// answer's head, so that the server's writes back up. The function it
// returns then reads the stream to its end (within 20s): the last id
// received, the number of non-control events, and what ended it — for
// WebSocket a close with CloseSlow, or none at all (close status -1: the
// close frame did not fit into the full socket).
func openNonReader(t *testing.T, n *testNode, topic string) func() (lastID string, events int, end error) {
	t.Helper()
	var tcp *net.TCPConn
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = mobileMSS(fd) }); err != nil {
				return err
			}
			return serr
		}}
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			tcp = c.(*net.TCPConn)
			err = tcp.SetReadBuffer(4096)
		}
		return c, err
	}
	// Draining, the client opens its receive window again. (With a 4 KiB
	// buffer under loopback's 64 KiB segments the window it can offer
	// stays too small for the sender to resume — TCP's silly-window
	// avoidance —, hence also the segment size of a real network,
	// mobileMSS.)
	widen := func() { _ = tcp.SetReadBuffer(1 << 20) }
	control := func(typ string) bool { return strings.HasPrefix(typ, "herald.") }
	if n.transport == "ws" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hc := &http.Client{Transport: &http.Transport{DialContext: dial}}
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.URL, "http")+"/v1/ws?topic="+topic, &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadLimit(1 << 20)
		t.Cleanup(func() { _ = conn.CloseNow() })
		return func() (string, int, error) {
			widen()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			last, count := "", 0
			for {
				f, err := readFrame(ctx, conn)
				if err != nil {
					if code := websocket.CloseStatus(err); code != server.CloseSlow && code != -1 {
						t.Fatalf("slow socket closed with %d (%v), want %d or no close frame", code, err, server.CloseSlow)
					}
					return last, count, err
				}
				if f.ID != "" {
					last = f.ID
				}
				if !control(f.Event) {
					count++
				}
			}
		}
	}
	raw, err := dial(context.Background(), "tcp", strings.TrimPrefix(n.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	fmt.Fprintf(raw, "GET /v1/stream?topic=%s HTTP/1.1\r\nHost: x\r\n\r\n", topic)
	resp, err := http.ReadResponse(bufio.NewReader(raw), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("slow client's answer: %v %v", resp, err)
	}
	return func() (string, int, error) {
		widen()
		_ = raw.SetReadDeadline(time.Now().Add(20 * time.Second))
		dec := sse.NewDecoder(bufio.NewReader(resp.Body))
		last, count := "", 0
		for {
			ev, err := dec.Next()
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("slow stream still open 20s after its cut-off (read %d events, last %q)", count, last)
				}
				return last, count, err
			}
			if ev.ID != "" {
				last = ev.ID
			}
			if !control(ev.Type) {
				count++
			}
		}
	}
}

func TestStreamsReleaseGoroutines(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), nil)
	n.publish("warm", "", "x")
	waitFor(t, wait, "idle", func() bool { return n.Srv.Stats().Streams == 0 })
	runtime.GC()
	base := runtime.NumGoroutine()
	const streams = 1000
	tr := &http.Transport{MaxIdleConnsPerHost: -1, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var bodies []io.ReadCloser
	for i := range streams {
		resp, err := client.Get(fmt.Sprintf("%s/v1/stream?topic=t%d&topic=shared", n.URL, i%50))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("stream %d: %d", i, resp.StatusCode)
		}
		bodies = append(bodies, resp.Body)
	}
	waitFor(t, wait, "1000 streams open", func() bool { return n.Srv.Stats().Streams == streams })
	n.publish("shared", "", "to everyone")
	for _, b := range bodies {
		b.Close()
	}
	waitFor(t, 10*time.Second, "streams closed", func() bool { return n.Srv.Stats().Streams == 0 })
	tr.CloseIdleConnections()
	waitFor(t, 10*time.Second, fmt.Sprintf("goroutines back to baseline %d", base), func() bool {
		return runtime.NumGoroutine() <= base+2
	})
}

// String data is stored as json.Unmarshal decodes it, whichever way the
// handler gets there (plain strings are copied without the decoder):
// escapes decoded, invalid UTF-8 replaced with U+FFFD, in single and batch
// publishes alike.
func TestPublishStringDataDecodedAsUnmarshal(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), nil)
	raws := []string{`"plain text"`, `""`, `"q\"x\u00e9\\n"`, "\"a\xffb\"", `"é ✓"`}
	var batch strings.Builder
	batch.WriteString(`{"events":[`)
	for i, raw := range raws {
		resp, err := http.Post(n.URL+"/v1/topics/single/events", "application/json", strings.NewReader(`{"data":`+raw+`}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%s: %d", raw, resp.StatusCode)
		}
		if i > 0 {
			batch.WriteByte(',')
		}
		batch.WriteString(`{"topic":"batch","data":` + raw + `}`)
	}
	batch.WriteString(`]}`)
	resp, err := http.Post(n.URL+"/v1/events", "application/json", strings.NewReader(batch.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("batch: %d", resp.StatusCode)
	}
	for _, topic := range []string{"single", "batch"} {
		evs, _, err := n.Store.Read(t.Context(), topic, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != len(raws) {
			t.Fatalf("%s: %d events, want %d", topic, len(evs), len(raws))
		}
		for i, raw := range raws {
			var want string
			if err := json.Unmarshal([]byte(raw), &want); err != nil {
				t.Fatal(err)
			}
			if string(evs[i].Data) != want {
				t.Errorf("%s %s: stored %q, want %q", topic, raw, evs[i].Data, want)
			}
		}
	}
}
