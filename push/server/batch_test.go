package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/server"
)

// batchReply is the body of a POST /v1/events answer: results or an error.
type batchReply struct {
	Results []struct {
		Topic     string `json:"topic"`
		Offset    uint64 `json:"offset"`
		Duplicate bool   `json:"duplicate"`
		Error     *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"results"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// postOpenBody posts to url a body that starts with prefix and goes on
// with repeat, written again and again (at most limit bytes in all), or
// with nothing more when repeat is "": the body stays open until the
// answer has come. It returns the answer, or fails when none came within
// 10s. The server must answer these without waiting for the body's end.
func postOpenBody(t *testing.T, url string, hdr map[string]string, prefix, repeat string, limit int) (int, batchReply) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if _, err := io.WriteString(pw, prefix); err != nil {
			return
		}
		for written := len(prefix); repeat != "" && written < limit; written += len(repeat) {
			if _, err := io.WriteString(pw, repeat); err != nil {
				return // the request ended
			}
		}
		<-ctx.Done()
		pw.CloseWithError(ctx.Err())
	}()
	defer func() {
		cancel()
		pr.CloseWithError(errors.New("test over"))
		<-writerDone
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("no answer while the body was still open: %v", err)
	}
	defer resp.Body.Close()
	var r batchReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("status %d with an undecodable body: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, r
}

// TestBatchRefusesCallerWithoutPublishGrantUnread: a credential with no
// publish grant at all gets 403 before the server reads the body, so it
// cannot make the server decode anything. The body never ends: a handler
// that reads it first never answers.
func TestBatchRefusesCallerWithoutPublishGrantUnread(t *testing.T) {
	n, secret, _ := authNode(t)
	reader := mint(t, secret, []string{"*"}, nil, time.Hour) // subscribe-only
	status, r := postOpenBody(t, n.URL+"/v1/events", map[string]string{"Authorization": "Bearer " + reader},
		`{"events":[{"topic":"orders.a","data":"x"},`, "", 0)
	if status != http.StatusForbidden || r.Error == nil || r.Error.Code != server.CodeForbidden {
		t.Fatalf("status %d %+v, want 403 forbidden", status, r.Error)
	}
}

// TestBatchStopsAtMaxEvents: the decoder stops at the first item past
// limits.max_batch_events and answers 400 while the body is still coming,
// instead of reading up to the byte cap first.
func TestBatchStopsAtMaxEvents(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), nil) // default limits: 100 events, 64 KiB
	status, r := postOpenBody(t, n.URL+"/v1/events", nil, `{"events":[`, `{"topic":"a","data":"x"},`, 20<<20)
	if status != http.StatusBadRequest || r.Error == nil || r.Error.Code != server.CodeInvalidEvent ||
		!strings.Contains(r.Error.Message, "too many events") {
		t.Fatalf("status %d %+v, want 400 invalid_event too many events", status, r.Error)
	}
	if info := topicInfo(t, n, "a"); info.Last != 0 {
		t.Fatalf("a refused batch appended %d events", info.Last)
	}
}

// batchBody returns {"events":[item × count]} with items joined by sep.
func batchBody(item string, count int, sep string) string {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range count {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(item)
	}
	b.WriteString(`]}`)
	return b.String()
}

// nested returns JSON data nested depth arrays deep around 0.
func nested(depth int) string {
	return strings.Repeat("[", depth) + "0" + strings.Repeat("]", depth)
}

// TestBatchMemoryBounded posts the worst bodies the default limits allow
// (100 events of 64 KiB; the byte cap 100 × 129 KiB + 4 KiB ≈ 12.6 MiB) and
// checks what the whole process allocated while each was handled: every
// byte the server allocated, garbage or not, so an upper bound on its heap
// growth. The budget is 64 MiB per request; decoding the whole body into a
// slice first took over 1 GiB for the body of empty items.
func TestBatchMemoryBounded(t *testing.T) {
	const budget = 64 << 20
	n := startNode(t, newMemStore(t, push.Retention{MaxLen: 100}), nil)
	const maxEvent = 64 << 10
	const window = 2*maxEvent + 1024
	const byteCap = 100*window + 4096
	// Enough `{}` items to fill the byte cap: only the first 101 are read.
	tiny := batchBody(`{}`, (byteCap-16)/3, ",")
	bigString := `{"topic":"big","data":"` + strings.Repeat("x", maxEvent) + `"}`
	escaped := `{"topic":"esc","data":"` + strings.Repeat(`\u00e9`, (window-64)/6) + `"}`
	wide := `{"topic":"wide","data":[` + strings.Repeat("0,", maxEvent/2-2) + `0]}`
	deep := `{"topic":"deep","data":` + nested(9990) + `}`
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"byte cap of empty items", tiny, http.StatusBadRequest, server.CodeInvalidEvent},
		{"100 largest string events", batchBody(bigString, 100, ","), http.StatusOK, ""},
		{"100 escaped string events", batchBody(escaped, 100, ","), http.StatusOK, ""},
		{"100 widest array events", batchBody(wide, 100, ","), http.StatusOK, ""},
		{"100 deepest events", batchBody(deep, 100, ","), http.StatusOK, ""},
		{"too deep", batchBody(`{"topic":"deep","data":`+nested(10001)+`}`, 100, ","), http.StatusBadRequest, server.CodeInvalidJSON},
		{"whitespace to the byte cap", `{"events":[` + strings.Repeat(" ", byteCap), http.StatusRequestEntityTooLarge, server.CodeBodyTooLarge},
		{"one item of the byte cap", `{"events":[{"topic":"` + strings.Repeat("t", byteCap) + `"}]}`, http.StatusRequestEntityTooLarge, server.CodeBodyTooLarge},
		{"items padded to the window", batchBody(`{"topic":"pad","data":"x"}`, 100, ","+strings.Repeat(" ", window-40)), http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, n.URL+"/v1/events", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			used := after.TotalAlloc - before.TotalAlloc
			t.Logf("body %.1f MiB: status %d, allocated %.1f MiB", float64(len(tt.body))/(1<<20), resp.StatusCode, float64(used)/(1<<20))
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, tt.status, body)
			}
			var r batchReply
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatalf("undecodable answer %.300s: %v", body, err)
			}
			if tt.code != "" && (r.Error == nil || r.Error.Code != tt.code) {
				t.Fatalf("answer %.300s, want code %s", body, tt.code)
			}
			if tt.code == "" {
				for i, res := range r.Results {
					if res.Error != nil || res.Offset == 0 {
						t.Fatalf("result %d: %+v", i, res)
					}
				}
			}
			if used > budget {
				t.Fatalf("handling the request allocated %.1f MiB, budget %d MiB", float64(used)/(1<<20), budget>>20)
			}
		})
	}
}

// TestBatchDecoding covers the streaming decoder's grammar and bounds with
// small limits (4 events, 1 KiB data, so a 3 KiB item window and a 16 KiB
// body cap).
func TestBatchDecoding(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) { c.Limits.MaxBatchEvents = 4; c.Limits.MaxEventBytes = 1024 })
	item := `{"topic":"a","data":"x"}`
	gap := strings.Repeat(" ", 3000)
	tests := []struct {
		name, body string
		status     int
		code       string
		results    int
	}{
		{"one event", `{"events":[` + item + `]}`, 200, "", 1},
		{"max events", batchBody(item, 4, ","), 200, "", 4},
		{"field names fold case", `{"EVENTS":[{"Topic":"a","DATA":"x"}]}`, 200, "", 1},
		{"data over the event cap is that item's error", `{"events":[` + item + `,{"topic":"a","data":"` + strings.Repeat("y", 1025) + `"}]}`, 207, "", 2},
		{"one past max events", batchBody(item, 5, ","), 400, server.CodeInvalidEvent, 0},
		{"no events", `{"events":[]}`, 400, server.CodeInvalidEvent, 0},
		{"events null", `{"events":null}`, 400, server.CodeInvalidEvent, 0},
		{"empty object", `{}`, 400, server.CodeInvalidEvent, 0},
		{"null body", `null`, 400, server.CodeInvalidEvent, 0},
		{"empty body", ``, 400, server.CodeInvalidJSON, 0},
		{"array body", `[` + item + `]`, 400, server.CodeInvalidJSON, 0},
		{"events not an array", `{"events":{}}`, 400, server.CodeInvalidJSON, 0},
		{"duplicate events", `{"events":[` + item + `],"events":[` + item + `]}`, 400, server.CodeInvalidJSON, 0},
		{"unknown top-level field", `{"events":[` + item + `],"extra":1}`, 400, server.CodeInvalidJSON, 0},
		{"unknown item field", `{"events":[{"topic":"a","data":"x","extra":1}]}`, 400, server.CodeInvalidJSON, 0},
		{"item of the wrong type", `{"events":[7]}`, 400, server.CodeInvalidJSON, 0},
		{"missing comma", `{"events":[` + item + item + `]}`, 400, server.CodeInvalidJSON, 0},
		{"unterminated", `{"events":[` + item, 400, server.CodeInvalidJSON, 0},
		{"trailing data", `{"events":[` + item + `]} {}`, 400, server.CodeInvalidJSON, 0},
		{"item over the window", `{"events":[{"topic":"a","data":"` + strings.Repeat("y", 3100) + `"}]}`, 413, server.CodeBodyTooLarge, 0},
		{"whitespace over the window", `{"events":[` + strings.Repeat(" ", 3100) + item + `]}`, 413, server.CodeBodyTooLarge, 0},
		{"body over the byte cap", `{` + gap + `"events"` + gap + `:` + gap + `[` + gap + strings.Join([]string{item, item, item, item}, gap+","+gap) + gap + `]` + gap + `}`, 413, server.CodeBodyTooLarge, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := do(t, "POST", n.URL+"/v1/events", "application/json", tt.body, nil)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			var r batchReply
			decodeJSON(t, body, &r)
			if tt.code != "" && (r.Error == nil || r.Error.Code != tt.code || r.Error.Message == "") {
				t.Fatalf("answer %s, want code %s", body, tt.code)
			}
			if len(r.Results) != tt.results {
				t.Fatalf("%d results, want %d: %s", len(r.Results), tt.results, body)
			}
		})
	}
}

// idemTenantsNode runs a node with authentication over store: an API key
// of tenant "ta" and JWTs signed with the returned secret, both allowed to
// publish everywhere.
func idemTenantsNode(t *testing.T, store push.Store) (n *testNode, secretFile, apiKey string) {
	t.Helper()
	secretFile, a, apiKey := newAuth(t, "ta", []string{"*"})
	n = startNode(t, store, func(c *server.Config) { c.Dev = false; c.Auth = a })
	return n, secretFile, apiKey
}

// TestIdempotencyScopesDoNotCollide: tenant "ta" publishing with key "x/K"
// and tenant "ta/x" (a JWT subject standing in for the tenant) publishing
// with key "K" are two events, through the single and the batch endpoint,
// on both stores. Scopes joined as tenant+"/"+key collided: the second
// publisher got duplicate:true with the first's offset and its event was
// dropped.
func TestIdempotencyScopesDoNotCollide(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n, secret, apiKey := idemTenantsNode(t, newStore(t, push.Retention{}))
		tok := mintAs(t, secret, "ta/x", "")
		ta := map[string]string{"Authorization": "Bearer " + apiKey}
		taX := map[string]string{"Authorization": "Bearer " + tok}

		single := func(hdr map[string]string, key string) publishResult {
			t.Helper()
			h := map[string]string{"Idempotency-Key": key}
			for k, v := range hdr {
				h[k] = v
			}
			status, _, body := do(t, "POST", n.URL+"/v1/topics/orders/events", "application/json", `{"data":"from `+key+`"}`, h)
			if status != http.StatusCreated {
				t.Fatalf("publish with key %q: %d %s", key, status, body)
			}
			var r publishResult
			decodeJSON(t, body, &r)
			return r
		}
		first := single(ta, "x/K")
		second := single(taX, "K")
		if first.Duplicate || second.Duplicate || second.Offset != first.Offset+1 {
			t.Fatalf("tenant ta key x/K gave %+v, tenant ta/x key K gave %+v: want two new events", first, second)
		}
		// Each tenant's retry still finds its own event.
		if r := single(ta, "x/K"); !r.Duplicate || r.Offset != first.Offset {
			t.Fatalf("retry of ta x/K: %+v, want duplicate of offset %d", r, first.Offset)
		}
		if r := single(taX, "K"); !r.Duplicate || r.Offset != second.Offset {
			t.Fatalf("retry of ta/x K: %+v, want duplicate of offset %d", r, second.Offset)
		}

		batch := func(hdr map[string]string, key string) (uint64, bool) {
			t.Helper()
			body := `{"events":[{"topic":"invoices","data":"x","idempotency_key":"` + key + `"}]}`
			status, _, out := do(t, "POST", n.URL+"/v1/events", "application/json", body, hdr)
			var r batchReply
			decodeJSON(t, out, &r)
			if status != http.StatusOK || len(r.Results) != 1 {
				t.Fatalf("batch with key %q: %d %s", key, status, out)
			}
			return r.Results[0].Offset, r.Results[0].Duplicate
		}
		off1, dup1 := batch(ta, "x/K")
		off2, dup2 := batch(taX, "K")
		if dup1 || dup2 || off2 != off1+1 {
			t.Fatalf("batch: ta x/K at %d (dup %v), ta/x K at %d (dup %v): want two new events", off1, dup1, off2, dup2)
		}
	})
}

// TestTenantClaimOutsideGrammarRefused: a token naming a tenant outside the
// tenant grammar is refused with 401 at authentication.
func TestTenantClaimOutsideGrammarRefused(t *testing.T) {
	n, secret, _ := idemTenantsNode(t, newMemStore(t, push.Retention{}))
	for _, tenant := range []string{"ta/x", "a b", strings.Repeat("t", 65)} {
		tok := mintUnchecked(t, secret, "alice", tenant)
		status, _, body := do(t, "POST", n.URL+"/v1/topics/orders/events", "application/json", `{"data":"x"}`,
			map[string]string{"Authorization": "Bearer " + tok})
		if status != http.StatusUnauthorized || !strings.Contains(body, `"code":"`+server.CodeUnauthorized+`"`) {
			t.Fatalf("tenant %q: %d %s, want 401 unauthorized", tenant, status, body)
		}
	}
}
