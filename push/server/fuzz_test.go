package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/sse"
)

// Fuzz limits. Inputs past them exercise nothing new (topics are capped at
// 128 bytes, keys at 128) but could push the request head past the
// server's MaxHeaderBytes, which net/http answers itself with a plain-text
// 431 before any Herald code runs.
const (
	fuzzMaxPathInput   = 2048
	fuzzMaxHeaderInput = 1024
)

// fuzzClient never follows redirects: a 3xx must be seen, not resolved.
func fuzzClient() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fuzzHeaderOK reports whether net/http will send v as a header value
// (RFC 9110 field-value: no control characters but tab). The client refuses
// anything else before it reaches the server.
func fuzzHeaderOK(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// fuzzCheckError asserts a 4xx answer carries the JSON error body.
func fuzzCheckError(t *testing.T, what string, status int, body []byte) {
	t.Helper()
	if status < 400 || status > 499 {
		t.Fatalf("%s: status %d, want 2xx or 4xx; body %q", what, status, body)
	}
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("%s: status %d without a JSON error body (%v): %q", what, status, err, body)
	}
}

// FuzzPublishBody fuzzes POST /v1/topics/{topic}/events: the topic path
// segment, the Idempotency-Key header and the body. The answer is 201 or a
// 4xx JSON error, never a 5xx or a panic; after a 201 the stored event holds
// exactly the accepted data (a JSON string as its text, any other JSON value
// compacted) and type.
func FuzzPublishBody(f *testing.F) {
	// Short retention keeps a long fuzz run far from memstore's memory bound
	// (past it appends fail with 503, correctly, but not what is fuzzed here).
	store := newMemStore(f, push.Retention{MaxLen: 64})
	n := startNode(f, store, func(c *server.Config) { c.MaxEventBytes = 4096 })
	client := fuzzClient()

	for _, s := range []struct{ topic, key, body string }{
		{"orders", "", `{"event":"created","data":{"id":42,"items":[{"sku":"A-1","qty":2}],"total":19.99}}`},
		{"chat.room-7", "msg-0001", `{"data":"hello, world"}`},
		{"prices:EURUSD", "", "{\n  \"event\": \"tick\",\n  \"data\": { \"bid\": 1.0841, \"ask\": 1.0843 }\n}"},
		{"logs_app", "k", `{"data":"line one\nline two\r\nline three\rend"}`},
		{"a", "", `{"data":"caf\u00e9 \ud83d\ude00 \"quoted\" \\ back"}`},
		{"a", "", `{"data":[1, 2.5e3, true, null, "x"]}`},
		{"a", "", `{"data":null}`},
		{"a", "", `{"data":""}`},
		{"a", "", `{"event":"message","data":"default type"}`},
		{"a", "same-key", `{"data":"first"}`},
		{"a", "same-key", `{"data":"second"}`},
		{"a", "has space", `{"data":"x"}`},
		{"a", "", `{"event":"herald.reset","data":"x"}`},
		{"a", "", `{"event":"bad type","data":"x"}`},
		{"a", "", `{"data":"a\u0000b"}`},
		{"a", "", `{"data":`},
		{"a", "", `{"data":"x"} {}`},
		{"a", "", `{"data":"x","extra":1}`},
		{"a", "", `{"DATA":"case-insensitive field"}`},
		{"a", "", `{"data":"x","data":{"dup":true}}`},
		{"a", "", `[]`},
		{"a", "", ``},
		{"bad topic", "", `{"data":"x"}`},
		{"", "", `{"data":"x"}`},
		{"..", "", `{"data":"x"}`},
		{"a/b", "", `{"data":"x"}`},
		{"{x}", "", `{"data":"x"}`},
		{strings.Repeat("t", 129), "", `{"data":"x"}`},
		{"a", "", `{"data":"` + strings.Repeat("y", 5000) + `"}`},
	} {
		f.Add(s.topic, s.key, []byte(s.body))
	}

	f.Fuzz(func(t *testing.T, topic, key string, body []byte) {
		if len(topic) > fuzzMaxPathInput || len(key) > fuzzMaxHeaderInput || !fuzzHeaderOK(key) {
			t.Skip("not sendable, or only net/http's own limits would answer")
		}
		req, err := http.NewRequest(http.MethodPost, n.URL+"/v1/topics/"+url.PathEscape(topic)+"/events", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("building the request: %v", err)
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		if resp.StatusCode != http.StatusCreated {
			fuzzCheckError(t, "publish", resp.StatusCode, got)
			return
		}

		var res struct {
			Topic     string `json:"topic"`
			Epoch     string `json:"epoch"`
			Offset    uint64 `json:"offset"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := json.Unmarshal(got, &res); err != nil {
			t.Fatalf("201 with an undecodable body %q: %v", got, err)
		}
		if res.Topic != topic || res.Offset == 0 || res.Epoch == "" {
			t.Fatalf("201 result %+v for topic %q", res, topic)
		}
		if res.Duplicate {
			return // the key matched an earlier append: that event is the answer
		}
		// What was accepted: the same decoding rules the API documents
		// (strict JSON object, fields matched as encoding/json does).
		var in struct {
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("201 for a body encoding/json rejects (%v): %q", err, body)
		}
		var want []byte
		if len(in.Data) > 0 && in.Data[0] == '"' {
			var s string
			if err := json.Unmarshal(in.Data, &s); err != nil {
				t.Fatalf("201 for undecodable string data %q: %v", in.Data, err)
			}
			want = []byte(s)
		} else {
			var buf bytes.Buffer
			if err := json.Compact(&buf, in.Data); err != nil {
				t.Fatalf("201 for invalid data %q: %v", in.Data, err)
			}
			want = buf.Bytes()
		}
		wantType := in.Event
		if wantType == "" {
			wantType = push.DefaultEventType
		}
		evs, info, err := store.Read(context.Background(), topic, res.Offset-1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Offset != res.Offset || info.Epoch != res.Epoch {
			t.Fatalf("stored event at %s:%d not found: %d events, info %+v", topic, res.Offset, len(evs), info)
		}
		if !bytes.Equal(evs[0].Data, want) || evs[0].Type != wantType {
			t.Fatalf("stored %q type %q, want %q type %q (body %q)", evs[0].Data, evs[0].Type, want, wantType, body)
		}
	})
}

// FuzzStreamQuery fuzzes GET /v1/stream: the Last-Event-ID header and the
// raw query string. The answer is 200 with herald.hello as the first event
// (naming the requested topic set), or a 4xx JSON error; never a 5xx or a
// panic.
func FuzzStreamQuery(f *testing.F) {
	n := startNode(f, newMemStore(f, push.Retention{MaxLen: 64}), nil)
	for i := range 5 {
		n.publish("orders", "created", `{"n":`+string(rune('0'+i))+`}`)
		n.publish("prices", "tick", "1.08")
	}
	client := fuzzClient()

	// Cursors as clients send them. memstore epochs are random per process,
	// so one minted here with a fixed epoch resumes as epoch_changed; one at
	// offset 0 verifies; one for another topic set is foreign.
	mint := func(topics []string, epoch string, offs ...uint64) string {
		c, err := push.NewCursor(topics, []string{"local"})
		if err != nil {
			f.Fatal(err)
		}
		for i, o := range offs {
			c.SetAt(i, push.Position{Epoch: epoch, Offset: o})
		}
		return c.String()
	}
	resume := mint([]string{"orders"}, "0123456789abcdef", 3)
	pair := mint([]string{"orders", "prices"}, "0123456789abcdef", 2, 9)
	zero := mint([]string{"orders"}, "")
	ahead := mint([]string{"orders"}, "0123456789abcdef", 1<<40)
	for _, s := range []struct{ lastID, query string }{
		{"", "topic=orders"},
		{"", "topic=orders&topic=prices"},
		{"", "topic=orders&from=earliest"},
		{"", "topic=prices&topic=orders&from=latest"},
		{"", "topic=orders&topic=orders"},
		{"", "topic=new-topic"},
		{resume, "topic=orders"},
		{zero, "topic=orders"},
		{ahead, "topic=orders"},
		{pair, "topic=orders&topic=prices"},
		{pair, "topic=orders"},
		{"", "topic=orders&last_event_id=" + resume},
		{"", "topic=orders&topic=prices&last_event_id=" + url.QueryEscape(pair)},
		{"%%%", "topic=orders"},
		{strings.Repeat("A", 600), "topic=orders"},
		{"AQID", "topic=orders"},
		{"", "topic=orders&from=yesterday"},
		{"", "topic=bad%20topic"},
		{"", "topic=a%0Ab"},
		{"", "topic=" + strings.Repeat("t", 129)},
		{"", "topic=a&topic=b&topic=c&topic=d&topic=e&topic=f&topic=g&topic=h&topic=i&topic=j&topic=k&topic=l&topic=m&topic=n&topic=o&topic=p&topic=q&topic=r&topic=s&topic=t&topic=u&topic=v&topic=w&topic=x&topic=y&topic=z&topic=0&topic=1&topic=2&topic=3&topic=4&topic=5&topic=6"},
		{"", ""},
		{"", "topic"},
		{"", "topic=orders;from=earliest"},
		{"", "topic=%zz&topic=orders"},
	} {
		f.Add(s.lastID, s.query)
	}

	f.Fuzz(func(t *testing.T, lastID, query string) {
		if len(query) > fuzzMaxPathInput || len(lastID) > fuzzMaxHeaderInput || !fuzzHeaderOK(lastID) {
			t.Skip("not sendable, or only net/http's own limits would answer")
		}
		// A request-target cannot hold spaces or controls, and '#' starts a
		// fragment the client never sends: such queries are not requests.
		if strings.ContainsFunc(query, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' }) {
			t.Skip("not a request-target")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v1/stream?"+query, nil)
		if err != nil {
			t.Skipf("not a URL: %v", err)
		}
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			fuzzCheckError(t, "stream", resp.StatusCode, body)
			return
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("200 with Content-Type %q", ct)
		}
		type result struct {
			ev  sse.Event
			err error
		}
		first := make(chan result, 1)
		go func() {
			ev, err := sse.NewDecoder(bufio.NewReader(resp.Body)).Next()
			first <- result{ev, err}
		}()
		timer := time.NewTimer(3 * time.Second)
		defer timer.Stop()
		var r result
		select {
		case r = <-first:
		case <-timer.C:
			cancel()
			<-first
			t.Fatal("200 but no event within 3s")
		}
		if r.err != nil {
			t.Fatalf("200 but the first event does not decode: %v", r.err)
		}
		if r.ev.Type != server.EventHello {
			t.Fatalf("first event %q, want %q", r.ev.Type, server.EventHello)
		}
		var hello struct {
			Topics []string `json:"topics"`
		}
		if err := json.Unmarshal([]byte(r.ev.Data), &hello); err != nil {
			t.Fatalf("hello data %q: %v", r.ev.Data, err)
		}
		q, _ := url.ParseQuery(query) // the server drops malformed pairs the same way
		want := slices.Compact(slices.Sorted(slices.Values(q["topic"])))
		if !slices.Equal(hello.Topics, want) {
			t.Fatalf("hello topics %q, want %q for query %q", hello.Topics, want, query)
		}
	})
}
