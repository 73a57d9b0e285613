package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// fuzzPost posts a JSON body to target, with an Idempotency-Key unless key
// is "", and returns the answer's status and body.
func fuzzPost(t *testing.T, client *http.Client, target, key string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
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
	return resp.StatusCode, got
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
	n := startNode(f, store, func(c *server.Config) { c.Limits.MaxEventBytes = 4096 })
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
		status, got := fuzzPost(t, client, n.URL+"/v1/topics/"+url.PathEscape(topic)+"/events", key, body)
		if status != http.StatusCreated {
			fuzzCheckError(t, "publish", status, got)
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
		fuzzCheckStored(t, store, topic, res.Epoch, res.Offset, in.Event, in.Data, body)
	})
}

// fuzzCheckStored asserts the event stored at topic:offset is the one
// accepted from typ and data: a JSON string as its text, any other JSON
// value compacted; an empty type is the default type.
func fuzzCheckStored(t *testing.T, store push.Store, topic, epoch string, offset uint64, typ string, data json.RawMessage, body []byte) {
	t.Helper()
	var want []byte
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			t.Fatalf("accepted undecodable string data %q: %v", data, err)
		}
		want = []byte(s)
	} else {
		var buf bytes.Buffer
		if err := json.Compact(&buf, data); err != nil {
			t.Fatalf("accepted invalid data %q: %v", data, err)
		}
		want = buf.Bytes()
	}
	if typ == "" {
		typ = push.DefaultEventType
	}
	evs, info, err := store.Read(context.Background(), topic, offset-1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Offset != offset || info.Epoch != epoch {
		t.Fatalf("stored event at %s:%d not found: %d events, info %+v", topic, offset, len(evs), info)
	}
	if !bytes.Equal(evs[0].Data, want) || evs[0].Type != typ {
		t.Fatalf("stored %q type %q, want %q type %q (body %q)", evs[0].Data, evs[0].Type, want, typ, body)
	}
}

// Limits of FuzzBatchDecoder's node: small, so that fuzzed bodies reach
// every bound (the item window is 2*512+1024 bytes, the body cap 8 windows
// plus 4 KiB).
const (
	fuzzBatchEvents     = 8
	fuzzBatchEventBytes = 512
)

// FuzzBatchDecoder fuzzes POST /v1/events, whose body is decoded as a
// stream one item at a time. The answer is 200/207 or a 4xx JSON error,
// never a 5xx or a panic, and it agrees with encoding/json decoding the
// whole body strictly: a 200/207 is for a body encoding/json accepts, with
// one result per event in order and each accepted event stored as sent;
// a body encoding/json accepts with 1..max events and a single top-level
// member is refused only for size (413) or by an item's own error.
func FuzzBatchDecoder(f *testing.F) {
	store := newMemStore(f, push.Retention{MaxLen: 64})
	n := startNode(f, store, func(c *server.Config) {
		c.Limits.MaxBatchEvents = fuzzBatchEvents
		c.Limits.MaxEventBytes = fuzzBatchEventBytes
	})
	client := fuzzClient()

	item := `{"topic":"a","data":"x"}`
	repeat := func(s string, k int) string { return strings.Repeat(s+",", k-1) + s }
	for _, body := range []string{
		// Real bodies: the API tests', the SDK's, the benchmark's.
		`{"events":[{"topic":"a","data":"1"},{"topic":"b","data":{"k":[1, 2]}},{"topic":"bad topic","data":"x"},{"topic":"a","data":"2","idempotency_key":"k1"}]}`,
		`{"events":[{"topic":"orders.a","data":"1"},{"topic":"chat","data":"2"}]}`,
		`{"events":[{"topic":"bench-0","event":"price","data":{"sym":"ABC","price":123.45,"seq":0}},{"topic":"bench-1","event":"price","data":{"sym":"ABC","price":123.45,"seq":1}}]}`,
		`{"events":[{"topic":"orders","event":"created","data":"{\"id\":1}","idempotency_key":"o-1"}]}`,
		"{\n  \"events\": [\n    {\"topic\": \"a\", \"data\": null}\n  ]\n}",
		`{"EVENTS":[{"Topic":"a","DATA":"x"}]}`,
		`{"events":[{"topic":"a","data":"caf\u00e9 \ud83d\ude00"},{"topic":"a","data":"a\u0000b"}]}`,
		`{"events":[{"topic":"a","event":"herald.reset","data":"x"},{"topic":"a","event":"bad type","data":"x"}]}`,
		`{"events":[{"topic":"a","data":"` + strings.Repeat("y", fuzzBatchEventBytes+1) + `"}]}`,
		// Malformed arrays and shapes.
		`{"events":[` + item + `,]}`,
		`{"events":[,` + item + `]}`,
		`{"events":[` + item + item + `]}`,
		`{"events":[` + item,
		`{"events":[` + item + `]`,
		`{"events":[` + item + `]}]`,
		`{"events":[` + item + `]} {}`,
		`{"events":{}}`,
		`{"events":"x"}`,
		`{"events":[7,"x",null]}`,
		`{"events":[[]]}`,
		`{"events":null}`,
		`{"events":[]}`,
		`{"events":[` + item + `],"events":[` + item + `]}`,
		`{"events":[` + item + `],"extra":1}`,
		`{"events":[{"topic":"a","data":"x","extra":1}]}`,
		`{"events":[{"topic":"a","data":[[[[[[[[[[0]]]]]]]]]]}]}`,
		`[` + item + `]`,
		`null`,
		`{}`,
		``,
		// Huge counts.
		`{"events":[` + repeat(item, fuzzBatchEvents) + `]}`,
		`{"events":[` + repeat(item, fuzzBatchEvents+1) + `]}`,
		`{"events":[` + repeat(`{}`, 1000) + `]}`,
		`{"events":[` + strings.Repeat(" ", 3000) + item + `]}`,
	} {
		f.Add([]byte(body))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		status, got := fuzzPost(t, client, n.URL+"/v1/events", "", body)

		var in struct {
			Events []struct {
				Topic          string          `json:"topic"`
				Event          string          `json:"event"`
				Data           json.RawMessage `json:"data"`
				IdempotencyKey string          `json:"idempotency_key"`
			} `json:"events"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		refErr := dec.Decode(&in)
		if refErr == nil {
			if _, err := dec.Token(); !errors.Is(err, io.EOF) {
				refErr = errors.New("trailing data")
			}
		}

		if status != http.StatusOK && status != http.StatusMultiStatus {
			fuzzCheckError(t, "batch", status, got)
			if refErr != nil || len(in.Events) < 1 || len(in.Events) > fuzzBatchEvents || fuzzTopLevelMembers(body) != 1 ||
				status == http.StatusRequestEntityTooLarge {
				return
			}
			t.Fatalf("status %d for a batch encoding/json accepts with %d events: %s (body %q)", status, len(in.Events), got, body)
		}

		if refErr != nil {
			t.Fatalf("status %d for a body encoding/json rejects (%v): %q", status, refErr, body)
		}
		var out struct {
			Results []struct {
				Topic     string          `json:"topic"`
				Epoch     string          `json:"epoch"`
				Offset    uint64          `json:"offset"`
				Duplicate bool            `json:"duplicate"`
				Error     json.RawMessage `json:"error"`
			} `json:"results"`
		}
		if err := json.Unmarshal(got, &out); err != nil {
			t.Fatalf("status %d with an undecodable body %q: %v", status, got, err)
		}
		if len(out.Results) != len(in.Events) || len(in.Events) > fuzzBatchEvents {
			t.Fatalf("%d results for %d events (max %d): %s", len(out.Results), len(in.Events), fuzzBatchEvents, got)
		}
		failed := false
		for i, r := range out.Results {
			if r.Error != nil {
				failed = true
				continue
			}
			ev := in.Events[i]
			if r.Topic != ev.Topic || r.Offset == 0 {
				t.Fatalf("result %d %+v for topic %q", i, r, ev.Topic)
			}
			if !r.Duplicate {
				fuzzCheckStored(t, store, ev.Topic, r.Epoch, r.Offset, ev.Event, ev.Data, body)
			}
		}
		if failed != (status == http.StatusMultiStatus) {
			t.Fatalf("status %d, but some results failed: %v: %s", status, failed, got)
		}
	})
}

// fuzzTopLevelMembers counts the members of the JSON object body, or
// returns -1 when body is no JSON object.
func fuzzTopLevelMembers(body []byte) int {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return -1
	}
	members := 0
	for dec.More() {
		var skip json.RawMessage
		if _, err := dec.Token(); err != nil {
			return -1
		}
		if err := dec.Decode(&skip); err != nil {
			return -1
		}
		members++
	}
	return members
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
		if r.ev.Type != push.EventHello {
			t.Fatalf("first event %q, want %q", r.ev.Type, push.EventHello)
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
