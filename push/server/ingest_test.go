package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/ingest"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/store/redisstore"
	"github.com/heraldpush/herald/resilience"
)

// ingestAnswer mirrors the body of POST /v1/ingest.
type ingestAnswer struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Rejected   int `json:"rejected"`
	Topics     []struct {
		Topic       string `json:"topic"`
		Origin      string `json:"origin"`
		Epoch       string `json:"epoch"`
		Accepted    int    `json:"accepted"`
		Duplicates  int    `json:"duplicates"`
		FirstOffset uint64 `json:"first_offset"`
		LastOffset  uint64 `json:"last_offset"`
	} `json:"topics"`
	Errors []struct {
		Line    int    `json:"line"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// ingestNode runs a node with one shipper API key (tenant "ops",
// publishing to logs.*) whose ingest profile is profile (APIKey filled in).
func ingestNode(t *testing.T, store push.Store, profile ingest.ProfileConfig, mutate func(*server.Config)) (*testNode, string) {
	t.Helper()
	key, hash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{APIKeys: []auth.APIKeyConfig{
		{ID: "shipper", Hash: hash, Tenant: "ops", Publish: []string{"logs.*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	profile.APIKey = "shipper"
	ps, err := ingest.Config{Profiles: []ingest.ProfileConfig{profile}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, store, func(c *server.Config) {
		c.Dev, c.Auth = false, a
		c.Ingest = server.IngestConfig{Profiles: ps, MaxLines: 500, MaxBodyBytes: 1 << 20}
		c.Limits.MaxEventBytes = 256
		if mutate != nil {
			mutate(c)
		}
	})
	return n, key
}

// postIngest posts body as NDJSON to path with key; it returns the status,
// the Retry-After header and the decoded answer.
func postIngest(t *testing.T, url, key, ctype, body string) (int, string, ingestAnswer) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var a ingestAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), a
}

const ndjson = "application/x-ndjson"

// historyData reads a topic's whole history (data of each event, checking
// the event type).
func historyData(t *testing.T, store push.Store, topic string) []string {
	t.Helper()
	var out []string
	after := uint64(0)
	for {
		evs, _, err := store.Read(context.Background(), topic, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		for _, e := range evs {
			if e.Type != "log" {
				t.Errorf("%s offset %d: event type %q, want log", topic, e.Offset, e.Type)
			}
			out = append(out, string(e.Data))
			after = e.Offset
		}
	}
}

// A mixed batch: lines go to the topics their fields name (or the
// default), in order; bad lines are reported by number with their code and
// the rest is published; a topic outside the key's grants is refused per
// line.
func TestIngestTemplateRoutesLinesAndReportsErrors(t *testing.T) {
	store := newRedisStore(t, push.Retention{})
	n, key := ingestNode(t, store, ingest.ProfileConfig{Topic: "logs.{app}.{level}", DefaultTopic: "logs.unsorted"}, nil)
	body := strings.Join([]string{
		`{"app":"api","level":"info","msg":"a1"}`,
		`{"app":"db","level":"error","msg":"d1"}`,
		`not json`,
		`{"app":"api","level":"info","msg":"a2"}`,
		`{"msg":"no fields"}`,
		`{"app":"api","level":"bad level"}`,
		`{"app":"api","level":"info","msg":"` + strings.Repeat("x", 300) + `"}`,
		``,
		`{"app":"api","level":"info","msg":"a3"}`,
	}, "\n") + "\n"
	status, _, a := postIngest(t, n.URL+"/v1/ingest", key, ndjson, body)
	if status != http.StatusOK {
		t.Fatalf("status %d: %+v", status, a)
	}
	if a.Accepted != 5 || a.Duplicates != 0 || a.Rejected != 3 {
		t.Errorf("accepted %d duplicates %d rejected %d, want 5 0 3", a.Accepted, a.Duplicates, a.Rejected)
	}
	wantErr := []struct {
		line int
		code string
	}{{3, server.CodeInvalidJSON}, {6, server.CodeInvalidTopic}, {7, server.CodeBodyTooLarge}}
	if len(a.Errors) != len(wantErr) {
		t.Fatalf("errors %+v", a.Errors)
	}
	for i, w := range wantErr {
		if a.Errors[i].Line != w.line || a.Errors[i].Code != w.code {
			t.Errorf("error %d: %+v, want line %d code %s", i, a.Errors[i], w.line, w.code)
		}
	}
	topics := map[string]int{}
	for _, tp := range a.Topics {
		topics[tp.Topic] = tp.Accepted
		if tp.Origin != "local" || tp.Epoch == "" || tp.FirstOffset == 0 || tp.LastOffset != tp.FirstOffset+uint64(tp.Accepted)-1 {
			t.Errorf("topic answer %+v", tp)
		}
	}
	if topics["logs.api.info"] != 3 || topics["logs.db.error"] != 1 || topics["logs.unsorted"] != 1 || len(topics) != 3 {
		t.Errorf("topics %v", topics)
	}
	got := historyData(t, store, "logs.api.info")
	want := []string{`{"app":"api","level":"info","msg":"a1"}`, `{"app":"api","level":"info","msg":"a2"}`, `{"app":"api","level":"info","msg":"a3"}`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("logs.api.info history %q, want %q", got, want)
	}

	// A line whose topic the key may not publish to is refused alone; a
	// batch with nothing publishable is refused with that line's status.
	n2, key2 := ingestNode(t, store, ingest.ProfileConfig{Topic: "{kind}.x"}, nil)
	status, _, a = postIngest(t, n2.URL+"/v1/ingest", key2, ndjson, `{"kind":"logs"}`+"\n"+`{"kind":"billing"}`+"\n")
	if status != http.StatusOK || a.Accepted != 1 || a.Rejected != 1 || a.Errors[0].Line != 2 || a.Errors[0].Code != server.CodeForbidden {
		t.Errorf("forbidden line: %d %+v", status, a)
	}
	status, _, a = postIngest(t, n2.URL+"/v1/ingest", key2, ndjson, `{"kind":"billing"}`+"\n"+"{\n")
	if status != http.StatusForbidden || a.Accepted != 0 || a.Rejected != 2 {
		t.Errorf("nothing publishable: %d %+v", status, a)
	}
}

// Whole-request refusals come before the body is used, each with its
// status and a JSON error body.
func TestIngestRefusesRequests(t *testing.T) {
	store := newMemStore(t, push.Retention{})
	n, key := ingestNode(t, store, ingest.ProfileConfig{}, nil) // no template: URL topics only
	tooMany := strings.Repeat("{}\n", 501)
	cases := []struct {
		name, path, key, ctype, body string
		status                       int
		code                         string
	}{
		{"no credentials", "/v1/topics/logs.a/ingest", "", ndjson, "{}\n", 401, server.CodeUnauthorized},
		{"wrong key", "/v1/topics/logs.a/ingest", "hk_nope", ndjson, "{}\n", 401, server.CodeUnauthorized},
		{"topic not granted", "/v1/topics/billing/ingest", key, ndjson, "{}\n", 403, server.CodeForbidden},
		{"bad topic", "/v1/topics/-x/ingest", key, ndjson, "{}\n", 400, server.CodeInvalidTopic},
		{"no template", "/v1/ingest", key, ndjson, "{}\n", 400, server.CodeInvalidTopic},
		{"json content type", "/v1/topics/logs.a/ingest", key, "application/json", "{}\n", 415, server.CodeUnsupportedType},
		{"empty", "/v1/topics/logs.a/ingest", key, ndjson, "\n \n", 400, server.CodeInvalidEvent},
		{"too many lines", "/v1/topics/logs.a/ingest", key, ndjson, tooMany, 413, server.CodeBodyTooLarge},
		{"body too large", "/v1/topics/logs.a/ingest", key, ndjson, strings.Repeat(" ", 2<<20), 413, server.CodeBodyTooLarge},
	}
	for _, tc := range cases {
		status, _, a := postIngest(t, n.URL+tc.path, tc.key, tc.ctype, tc.body)
		if status != tc.status || a.Error == nil || a.Error.Code != tc.code {
			t.Errorf("%s: %d %+v, want %d %s", tc.name, status, a.Error, tc.status, tc.code)
		}
	}
	if evs, _, _ := store.Read(context.Background(), "logs.a", 0, 10); len(evs) != 0 {
		t.Errorf("refused requests published %d events", len(evs))
	}
	// The URL form takes any JSON value per line.
	status, _, a := postIngest(t, n.URL+"/v1/topics/logs.a/ingest", key, "application/x-ndjson; charset=utf-8", "1\r\n\"two\"\r\n[3]\r\n")
	if status != http.StatusOK || a.Accepted != 3 {
		t.Errorf("URL topic: %d %+v", status, a)
	}
}

// A shipper retrying a whole batch, and a batch carrying the same line
// twice, publish each line once when the key dedups (by field here); the
// retry answers with the original offsets as duplicates.
func TestIngestDedupMakesRetriesSafe(t *testing.T) {
	store := newRedisStore(t, push.Retention{})
	n, key := ingestNode(t, store, ingest.ProfileConfig{Topic: "logs.{app}", Dedup: ingest.DedupField, DedupField: "id"}, nil)
	var sb strings.Builder
	for i := range 200 {
		fmt.Fprintf(&sb, `{"app":"api","id":"m%d","seq":%d}`+"\n", i, i)
	}
	fmt.Fprintf(&sb, `{"app":"api","id":"m7","seq":7}`+"\n") // same id again in the batch
	status, _, first := postIngest(t, n.URL+"/v1/ingest", key, ndjson, sb.String())
	if status != http.StatusOK || first.Accepted != 200 || first.Duplicates != 1 {
		t.Fatalf("first post: %d accepted %d duplicates %d", status, first.Accepted, first.Duplicates)
	}
	status, _, again := postIngest(t, n.URL+"/v1/ingest", key, ndjson, sb.String())
	if status != http.StatusOK || again.Accepted != 0 || again.Duplicates != 201 {
		t.Fatalf("retry: %d accepted %d duplicates %d", status, again.Accepted, again.Duplicates)
	}
	if got := historyData(t, store, "logs.api"); len(got) != 200 {
		t.Errorf("history holds %d events, want 200", len(got))
	}
	// Without dedup a retry publishes again: at-least-once.
	n2, key2 := ingestNode(t, store, ingest.ProfileConfig{}, nil)
	for range 2 {
		postIngest(t, n2.URL+"/v1/topics/logs.nodedup/ingest", key2, ndjson, "{}\n")
	}
	if got := historyData(t, store, "logs.nodedup"); len(got) != 2 {
		t.Errorf("without dedup: %d events, want 2", len(got))
	}
}

// One request costs one Redis script call per topic, however many lines.
func TestIngestOneRoundTripPerTopic(t *testing.T) {
	rs := redistest.StartServer(t)
	opts, err := redisstore.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	store, err := redisstore.New(redisstore.Config{Options: opts, Origin: "local", KeyPrefix: "rt", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	n, key := ingestNode(t, store, ingest.ProfileConfig{Topic: "logs.{app}", Dedup: ingest.DedupHash}, nil)
	// Warm up: the first call of a script may be an EVAL after NOSCRIPT.
	postIngest(t, n.URL+"/v1/ingest", key, ndjson, `{"app":"warm"}`+"\n")
	rc := rs.Client(t)
	scriptCalls := func() int {
		info, err := rc.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, line := range strings.Split(info, "\n") {
			for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
					calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
					c, _ := strconv.Atoi(calls)
					total += c
				}
			}
		}
		return total
	}
	before := scriptCalls()
	var sb strings.Builder
	for i := range 500 {
		fmt.Fprintf(&sb, `{"app":"a%d","seq":%d}`+"\n", i%3, i)
	}
	status, _, a := postIngest(t, n.URL+"/v1/ingest", key, ndjson, sb.String())
	if status != http.StatusOK || a.Accepted != 500 || len(a.Topics) != 3 {
		t.Fatalf("%d %+v", status, a)
	}
	if calls := scriptCalls() - before; calls != 3 {
		t.Errorf("500 lines over 3 topics took %d script calls, want 3", calls)
	}
}

// guardAdapter exposes resilience.Guards as the server's Guard (the node's
// own adapter lives in cmd/herald): only the ingress layer is exercised.
type guardAdapter struct{ g *resilience.Guards }

func (a guardAdapter) Publish(tenant, topic string) (func(error), error) {
	p, blk := a.g.Publish(tenant, topic)
	if blk != nil {
		return nil, blk
	}
	return p.Done, nil
}

func (a guardAdapter) PublishN(tenant, topic string, n int) (int, func(error), error) {
	k, p, blk := a.g.PublishN(tenant, topic, n)
	if blk != nil {
		return k, p.Done, blk
	}
	return k, p.Done, nil
}

func (guardAdapter) Admit(string) (func(), func(), error)   { return func() {}, func() {}, nil }
func (guardAdapter) Replay(context.Context) (func(), error) { return func() {}, nil }
func (guardAdapter) Request(string) (func(), error)         { return func() {}, nil }

// A tenant over its publish rate gets 429 with Retry-After and an answer
// saying which lines were published; retrying the same batch after the
// delay (dedup on) publishes the rest, each line once, in order.
func TestIngestOverTenantLimitIs429ThenRetrySucceeds(t *testing.T) {
	g, err := resilience.New(resilience.Config{Ingress: resilience.IngressConfig{PublishQPS: 100}}, resilience.Options{Name: "ingest429"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	store := newRedisStore(t, push.Retention{})
	n, key := ingestNode(t, store, ingest.ProfileConfig{Topic: "logs.{app}", Dedup: ingest.DedupHash},
		func(c *server.Config) { c.Guard = guardAdapter{g} })
	var sb strings.Builder
	for i := range 300 {
		fmt.Fprintf(&sb, `{"app":"api","seq":%d}`+"\n", i)
	}
	status, retry, a := postIngest(t, n.URL+"/v1/ingest", key, ndjson, sb.String())
	if status != http.StatusTooManyRequests || retry != "1" {
		t.Fatalf("status %d Retry-After %q, want 429 1", status, retry)
	}
	if a.Accepted != 75 || a.Rejected != 225 || a.Errors[0].Code != server.CodeRateLimited || a.Errors[0].Line != 76 {
		t.Errorf("answer: accepted %d rejected %d first error %+v", a.Accepted, a.Rejected, a.Errors[0])
	}
	// The shipper retries the whole batch until it is taken.
	deadline := time.Now().Add(30 * time.Second)
	published := a.Accepted
	for status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("batch not taken within 30s (last %d, %+v)", status, a)
		}
		wait, _ := strconv.Atoi(retry)
		time.Sleep(time.Duration(wait) * time.Second) // the server's Retry-After: what a shipper does
		status, retry, a = postIngest(t, n.URL+"/v1/ingest", key, ndjson, sb.String())
		published += a.Accepted
	}
	if published != 300 {
		t.Errorf("published %d lines over the retries, want 300", published)
	}
	got := historyData(t, store, "logs.api")
	if len(got) != 300 {
		t.Fatalf("history holds %d events, want 300", len(got))
	}
	for i, d := range got {
		if want := fmt.Sprintf(`{"app":"api","seq":%d}`, i); d != want {
			t.Fatalf("event %d = %s, want %s (order)", i, d, want)
		}
	}
}

// A Redis over its memory limit refuses appends: the batch gets 503 with
// Retry-After and nothing is acknowledged; once Redis has room the same
// batch goes through.
func TestIngestStoreOverMemoryIs503(t *testing.T) {
	rs := redistest.StartServer(t, redistest.WithArgs("--maxmemory-policy", "noeviction"))
	opts, err := redisstore.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	store, err := redisstore.New(redisstore.Config{Options: opts, Origin: "local", KeyPrefix: "oom", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	n, key := ingestNode(t, store, ingest.ProfileConfig{}, nil)
	rc := rs.Client(t)
	ctx := context.Background()
	info, err := rc.Info(ctx, "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	var usedMemory int
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			usedMemory, _ = strconv.Atoi(v)
		}
	}
	if err := rc.ConfigSet(ctx, "maxmemory", strconv.Itoa(usedMemory+256<<10)).Err(); err != nil {
		t.Fatal(err)
	}
	line := `{"msg":"` + strings.Repeat("y", 200) + `"}` + "\n"
	batch := strings.Repeat(line, 400)
	acked := 0
	var status int
	var retry string
	var a ingestAnswer
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatalf("no 503 after 100 batches of 400 lines (Redis maxmemory not enforced?)")
		}
		status, retry, a = postIngest(t, n.URL+"/v1/topics/logs.full/ingest", key, ndjson, batch)
		if status != http.StatusOK {
			break
		}
		acked += a.Accepted
	}
	if status != http.StatusServiceUnavailable || retry == "" || a.Accepted != 0 || a.Rejected != 400 || a.Errors[0].Code != server.CodeUnavailable {
		t.Fatalf("over memory: %d Retry-After %q %+v", status, retry, a)
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	status, _, a = postIngest(t, n.URL+"/v1/topics/logs.full/ingest", key, ndjson, batch)
	if status != http.StatusOK || a.Accepted != 400 {
		t.Fatalf("after room was made: %d %+v", status, a)
	}
	acked += a.Accepted
	evs, in, err := store.Read(ctx, "logs.full", 0, 1)
	if err != nil || len(evs) != 1 || in.Length != int64(acked) {
		t.Errorf("stream holds %d events, %d were acknowledged (err %v)", in.Length, acked, err)
	}
}

// A request over several topics while Redis is down: every line is refused
// with 503 and Retry-After, none reported published.
func TestIngestStoreDownIs503(t *testing.T) {
	rs := redistest.StartServer(t)
	opts, err := redisstore.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	store, err := redisstore.New(redisstore.Config{Options: opts, Origin: "local", KeyPrefix: "down", OpTimeout: time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	n, key := ingestNode(t, store, ingest.ProfileConfig{Topic: "logs.{app}"}, nil)
	var sb strings.Builder
	for i := range 60 {
		fmt.Fprintf(&sb, `{"app":"a%d"}`+"\n", i%12)
	}
	if status, _, a := postIngest(t, n.URL+"/v1/ingest", key, ndjson, sb.String()); status != http.StatusOK || a.Accepted != 60 {
		t.Fatalf("with Redis up: %d %+v", status, a)
	}
	rs.Kill()
	status, retry, a := postIngest(t, n.URL+"/v1/ingest", key, ndjson, sb.String())
	if status != http.StatusServiceUnavailable || retry == "" || a.Accepted != 0 || a.Rejected != 60 || len(a.Topics) != 0 {
		t.Fatalf("with Redis down: %d Retry-After %q accepted %d rejected %d topics %d", status, retry, a.Accepted, a.Rejected, len(a.Topics))
	}
	for _, e := range a.Errors {
		if e.Code != server.CodeUnavailable {
			t.Fatalf("line %d: %s, want unavailable", e.Line, e.Code)
		}
	}
}
