package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/ingest"
	"github.com/heraldpush/herald/push/sse"
)

var openAPIPath = filepath.Join("..", "..", "docs", "openapi.yaml")

// apiSpec is the loaded OpenAPI document and a router over it that
// matches any host (the servers are deployment examples).
type apiSpec struct {
	doc    *openapi3.T
	router routers.Router
}

// registerNDJSON teaches the validator the ingest body type (as text: the
// spec describes it as a string). kin-openapi keeps decoders in a
// package-level registry, so this happens once per test binary.
var registerNDJSON sync.Once

func loadSpec(tb testing.TB) *apiSpec {
	tb.Helper()
	registerNDJSON.Do(func() { openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.PlainBodyDecoder) })
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openAPIPath)
	if err != nil {
		tb.Fatalf("load %s: %v", openAPIPath, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		tb.Fatalf("%s is not a valid OpenAPI document: %v", openAPIPath, err)
	}
	doc.Servers = nil
	for _, item := range doc.Paths.Map() {
		item.Servers = nil
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		tb.Fatal(err)
	}
	return &apiSpec{doc: doc, router: r}
}

var ginParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// ginCatchAll is a gin catch-all segment, "*name" at a path's end.
var ginCatchAll = regexp.MustCompile(`\*[A-Za-z_]+$`)

// specHas reports whether the spec documents method on path (gin or
// ServeMux syntax); method "" means any method.
func (s *apiSpec) specHas(method, path string) bool {
	item := s.doc.Paths.Value(ginParam.ReplaceAllString(path, "{$1}"))
	if item == nil {
		return false
	}
	if method == "" {
		return len(item.Operations()) > 0
	}
	return item.GetOperation(method) != nil
}

// routeSet is what a node serves: method+path pairs in spec syntax.
type routeSet map[string]bool

func (rs routeSet) add(method, path string) {
	path = ginCatchAll.ReplaceAllString(path, "") // "/_herald/*path" is the spec's "/_herald/"
	rs[method+" "+ginParam.ReplaceAllString(path, "{$1}")] = true
}

// nodeRoutes walks the public and the admin gin engines.
func nodeRoutes(t *testing.T, m *Main) routeSet {
	t.Helper()
	rs := routeSet{}
	for _, r := range m.Server.Routes() {
		rs.add(r.Method, r.Path)
	}
	for _, r := range m.adminHandler().Routes() {
		rs.add(r.Method, r.Path)
	}
	return rs
}

// TestOpenAPISpecCoversEveryRoute is the drift check: every route the
// public and admin routers register is documented, and every documented
// operation is served.
func TestOpenAPISpecCoversEveryRoute(t *testing.T) {
	spec := loadSpec(t)
	m := MustRunMain(t, func(c *Config) { c.AdminPprof = true })
	routes := nodeRoutes(t, m)
	if len(routes) < 20 {
		t.Fatalf("only %d routes found (%v): the route walk is broken", len(routes), routes)
	}
	for r := range routes {
		method, path, _ := strings.Cut(r, " ")
		if !spec.specHas(method, path) {
			t.Errorf("route %q is served but not in docs/openapi.yaml", r)
		}
	}
	for path, item := range spec.doc.Paths.Map() {
		for method := range item.Operations() {
			if !routes[method+" "+path] && !routes[" "+path] {
				t.Errorf("docs/openapi.yaml documents %s %s, which no router serves", method, path)
			}
		}
	}
}

// call is one request to a live node and the status it must get.
type call struct {
	name    string
	base    string // m.URL() or m.AdminURL()
	method  string
	path    string
	header  http.Header
	body    string
	want    int  // 0: any status the spec documents
	invalid bool // the request breaks the spec on purpose: validate only the response
	stream  bool // an SSE stream: validate status and headers, not the endless body
}

// check sends c and validates the request (unless c.invalid) and the
// response against the spec, then returns the status and the decoded JSON
// body (or nil).
func (s *apiSpec) check(t *testing.T, c call) (int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.method, c.base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if c.body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	opts := &openapi3filter.Options{
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus: true, // an undocumented status fails
		MultiError:            true,
		ExcludeResponseBody:   c.stream,
	}
	route, params, routeErr := s.router.FindRoute(req)
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if routeErr == nil && !c.invalid {
		// Validate a copy: the validator reads the body.
		vreq := req.Clone(ctx)
		vreq.Body = io.NopCloser(strings.NewReader(c.body))
		vin := *in
		vin.Request = vreq
		if err := openapi3filter.ValidateRequest(ctx, &vin); err != nil {
			t.Errorf("%s: request does not match the spec: %v", c.name, err)
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer resp.Body.Close()
	var body []byte
	if !c.stream {
		if body, err = io.ReadAll(resp.Body); err != nil {
			t.Fatalf("%s: read body: %v", c.name, err)
		}
	}
	if c.want != 0 && resp.StatusCode != c.want {
		t.Errorf("%s: status %d, want %d (body %.300s)", c.name, resp.StatusCode, c.want, body)
	}
	if routeErr != nil {
		// Unknown path or method: not an operation of the spec, but the
		// body must still be the documented error.
		if c.want != http.StatusNotFound && c.want != http.StatusMethodNotAllowed {
			t.Errorf("%s: %s %s is not in the spec: %v", c.name, c.method, c.path, routeErr)
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Errorf("%s: error body is not JSON: %v", c.name, err)
		} else if err := s.doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("%s: error body does not match #/components/schemas/Error: %v", c.name, err)
		}
		return resp.StatusCode, nil
	}
	rin := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: opts,
	}
	rin.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
		t.Errorf("%s: response %d does not match the spec: %v\nbody: %.500s", c.name, resp.StatusCode, err, body)
	}
	var out map[string]any
	_ = json.Unmarshal(body, &out)
	return resp.StatusCode, out
}

// TestOpenAPILiveResponsesMatchSpec drives a real node (in-memory store,
// API keys, a one-per-second topic limit) through its public and admin
// listeners, success and error cases, and validates every request and
// response against docs/openapi.yaml.
func TestOpenAPILiveResponsesMatchSpec(t *testing.T) {
	spec := loadSpec(t)
	adminKey, adminHash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	userKey, userHash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	readerKey, readerHash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	m := MustRunMain(t, func(c *Config) {
		c.Dev = false
		c.Auth.APIKeys = []auth.APIKeyConfig{
			{ID: "ops", Hash: adminHash, Admin: true, Publish: []string{"*"}, Subscribe: []string{"*"}},
			{ID: "app", Hash: userHash, Publish: []string{"orders*", "hot"}, Subscribe: []string{"orders*"}},
			{ID: "reader", Hash: readerHash, Subscribe: []string{"orders*"}},
		}
		c.Limits.MaxEventBytes = 1024
		c.Ingest.Profiles = []ingest.ProfileConfig{{APIKey: "app", Topic: "orders.{region}", DefaultTopic: "orders", Dedup: "hash"}}
		c.Protection.Ingress.Topics = map[string]int64{"hot": 1}
		c.Federation.Interval = 100 * time.Millisecond
		c.AdminPprof = true
	})
	pub, adm := m.URL(), m.AdminURL()
	// The pprof index is HTML, which the spec checker does not decode.
	if resp, err := http.Get(adm + "/debug/pprof/"); err != nil {
		t.Fatal(err)
	} else {
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET /debug/pprof/ = %d %q, want 200 text/html", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	as := func(key string) http.Header { return http.Header{"X-Api-Key": {key}} }
	bearer := func(key string) http.Header { return http.Header{"Authorization": {"Bearer " + key}} }
	big := `{"data":"` + strings.Repeat("x", 10<<10) + `"}`
	ndjsonAs := func(key string) http.Header {
		return http.Header{"X-Api-Key": {key}, "Content-Type": {"application/x-ndjson"}}
	}

	for _, c := range []call{
		{name: "healthz", base: pub, method: "GET", path: "/healthz", want: 200},
		{name: "readyz", base: pub, method: "GET", path: "/readyz", want: 200},
		{name: "publish", base: pub, method: "POST", path: "/v1/topics/orders/events", header: bearer(userKey), body: `{"event":"created","data":{"id":1}}`, want: 201},
		{name: "publish idempotent", base: pub, method: "POST", path: "/v1/topics/orders/events",
			header: http.Header{"X-Api-Key": {userKey}, "Idempotency-Key": {"k1"}}, body: `{"data":"a"}`, want: 201},
		{name: "publish duplicate", base: pub, method: "POST", path: "/v1/topics/orders/events",
			header: http.Header{"X-Api-Key": {userKey}, "Idempotency-Key": {"k1"}}, body: `{"data":"a"}`, want: 201},
		{name: "publish no credential", base: pub, method: "POST", path: "/v1/topics/orders/events", body: `{"data":1}`, want: 401},
		{name: "publish bad credential", base: pub, method: "POST", path: "/v1/topics/orders/events", header: as("hk_nope"), body: `{"data":1}`, want: 401},
		{name: "publish forbidden", base: pub, method: "POST", path: "/v1/topics/billing/events", header: as(userKey), body: `{"data":1}`, want: 403},
		{name: "publish bad JSON", base: pub, method: "POST", path: "/v1/topics/orders/events", header: as(userKey), body: `{"data":`, want: 400, invalid: true},
		{name: "publish unknown field", base: pub, method: "POST", path: "/v1/topics/orders/events", header: as(userKey), body: `{"data":1,"x":2}`, want: 400, invalid: true},
		{name: "publish bad topic", base: pub, method: "POST", path: "/v1/topics/-bad/events", header: as(adminKey), body: `{"data":1}`, want: 400, invalid: true},
		{name: "publish too large", base: pub, method: "POST", path: "/v1/topics/orders/events", header: as(userKey), body: big, want: 413},
		{name: "publish text/plain", base: pub, method: "POST", path: "/v1/topics/orders/events",
			header: http.Header{"X-Api-Key": {userKey}, "Content-Type": {"text/plain"}}, body: `{"data":1}`, want: 415, invalid: true},
		{name: "publish wrong method", base: pub, method: "PUT", path: "/v1/topics/orders/events", header: as(userKey), want: 405},
		{name: "unknown path", base: pub, method: "GET", path: "/v2/nothing", want: 404},
		{name: "batch", base: pub, method: "POST", path: "/v1/events", header: as(userKey),
			body: `{"events":[{"topic":"orders","data":1},{"topic":"orders.eu","event":"e","data":"s","idempotency_key":"b1"}]}`, want: 200},
		{name: "batch partial", base: pub, method: "POST", path: "/v1/events", header: as(userKey),
			body: `{"events":[{"topic":"orders","data":1},{"topic":"billing","data":2}]}`, want: 207},
		{name: "batch without any publish grant", base: pub, method: "POST", path: "/v1/events", header: as(readerKey),
			body: `{"events":[{"topic":"orders","data":1}]}`, want: 403},
		{name: "batch empty", base: pub, method: "POST", path: "/v1/events", header: as(userKey), body: `{"events":[]}`, want: 400, invalid: true},
		{name: "ingest", base: pub, method: "POST", path: "/v1/ingest", header: ndjsonAs(userKey),
			body: "{\"region\":\"eu\",\"n\":1}\n{\"n\":2}\nnot json\n", want: 200},
		{name: "ingest retried", base: pub, method: "POST", path: "/v1/ingest", header: ndjsonAs(userKey),
			body: "{\"region\":\"eu\",\"n\":1}\n", want: 200},
		{name: "ingest topic", base: pub, method: "POST", path: "/v1/topics/orders.logs/ingest", header: ndjsonAs(userKey), body: "1\n2\n", want: 200},
		{name: "ingest nothing publishable", base: pub, method: "POST", path: "/v1/ingest", header: ndjsonAs(userKey), body: "{\n", want: 400},
		{name: "ingest no template", base: pub, method: "POST", path: "/v1/ingest", header: ndjsonAs(adminKey), body: "{}\n", want: 400},
		{name: "ingest forbidden", base: pub, method: "POST", path: "/v1/topics/billing/ingest", header: ndjsonAs(userKey), body: "{}\n", want: 403},
		{name: "ingest json type", base: pub, method: "POST", path: "/v1/topics/orders/ingest", header: as(userKey), body: "{}\n", want: 415, invalid: true},
		{name: "ingest line too large", base: pub, method: "POST", path: "/v1/topics/orders/ingest", header: ndjsonAs(userKey), body: big + "\n", want: 413},
		{name: "ingest no credential", base: pub, method: "POST", path: "/v1/ingest", header: http.Header{"Content-Type": {"application/x-ndjson"}}, body: "{}\n", want: 401},
		{name: "topic info", base: pub, method: "GET", path: "/v1/topics/orders", header: as(userKey), want: 200},
		{name: "topic info forbidden", base: pub, method: "GET", path: "/v1/topics/billing", header: as(userKey), want: 403},
		{name: "history", base: pub, method: "GET", path: "/v1/topics/orders/events?after=0&limit=2", header: as(userKey), want: 200},
		{name: "history cookie", base: pub, method: "GET", path: "/v1/topics/orders/events",
			header: http.Header{"Cookie": {"herald_token=" + userKey}}, want: 200},
		{name: "history bad limit", base: pub, method: "GET", path: "/v1/topics/orders/events?limit=0", header: as(userKey), want: 400, invalid: true},
		{name: "stream no topic", base: pub, method: "GET", path: "/v1/stream", header: as(userKey), want: 400, invalid: true},
		{name: "stream bad from", base: pub, method: "GET", path: "/v1/stream?topic=orders&from=middle", header: as(userKey), want: 400, invalid: true},
		{name: "stream bad cursor (SDK)", base: pub, method: "GET", path: "/v1/stream?topic=orders",
			header: http.Header{"X-Api-Key": {userKey}, "Last-Event-Id": {"garbage"}, "Herald-Client": {"go"}}, want: 400},
		{name: "stream bad cursor (browser)", base: pub, method: "GET", path: "/v1/stream?topic=orders",
			header: http.Header{"X-Api-Key": {userKey}, "Last-Event-Id": {"garbage"}}, want: 200, stream: true},
		{name: "stream forbidden", base: pub, method: "GET", path: "/v1/stream?topic=billing", header: as(userKey), want: 403},
		{name: "stream no credential", base: pub, method: "GET", path: "/v1/stream?topic=orders", want: 401},
		{name: "members", base: pub, method: "GET", path: "/v1/cluster/members", header: as(adminKey), want: 200},
		{name: "members not admin", base: pub, method: "GET", path: "/v1/cluster/members", header: as(userKey), want: 403},
		{name: "session bad id", base: pub, method: "GET", path: "/v1/sessions/xyz", header: as(adminKey), want: 400},
		{name: "session unknown", base: pub, method: "GET", path: "/v1/sessions/0123456789abcdef", header: as(adminKey), want: 404},
		{name: "disconnect unknown", base: pub, method: "DELETE", path: "/v1/sessions/0123456789abcdef", header: as(adminKey), want: 404},
		{name: "presence forbidden", base: pub, method: "GET", path: "/v1/topics/billing/presence", header: as(userKey), want: 403},

		{name: "admin healthz", base: adm, method: "GET", path: "/healthz", want: 200},
		{name: "admin readyz", base: adm, method: "GET", path: "/readyz", want: 200},
		{name: "admin metrics", base: adm, method: "GET", path: "/metrics", want: 200},
		{name: "admin protection", base: adm, method: "GET", path: "/v1/protection", want: 200},
		{name: "admin node", base: adm, method: "GET", path: "/v1/node", want: 200},
		{name: "admin region", base: adm, method: "GET", path: "/v1/region", want: 200},
		{name: "admin members", base: adm, method: "GET", path: "/v1/cluster/members", want: 200},
		{name: "admin session unknown", base: adm, method: "GET", path: "/v1/sessions/0123456789abcdef", want: 404},
		{name: "admin evacuate no active", base: adm, method: "POST", path: "/v1/region/evacuate", body: `{}`, want: 400, invalid: true},
		{name: "admin evacuate text", base: adm, method: "POST", path: "/v1/region/evacuate",
			header: http.Header{"Content-Type": {"text/plain"}}, body: `{"active":true}`, want: 415, invalid: true},
		{name: "admin unknown path", base: adm, method: "GET", path: "/v1/nothing", want: 404},
		{name: "pprof named", base: adm, method: "GET", path: "/debug/pprof/heap", want: 200},
		{name: "pprof named unknown", base: adm, method: "GET", path: "/debug/pprof/nothing", want: 404},
		{name: "pprof cmdline", base: adm, method: "GET", path: "/debug/pprof/cmdline", want: 200},
	} {
		spec.check(t, c)
	}

	// 429: the topic "hot" takes one publish per second; both the
	// accepted and the refused answers are validated.
	eventually(t, 10*time.Second, "a publish to the hot topic is rate limited", func() bool {
		code, _ := spec.check(t, call{name: "publish hot topic", base: pub, method: "POST", path: "/v1/topics/hot/events",
			header: as(userKey), body: `{"data":1}`})
		return code == http.StatusTooManyRequests
	})

	// A live stream: its session appears in presence, can be read and
	// disconnected through both listeners.
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	sreq, _ := http.NewRequestWithContext(sctx, http.MethodGet, pub+"/v1/stream?topic=orders&from=earliest", nil)
	sreq.Header.Set("X-Api-Key", userKey)
	spec.check(t, call{name: "stream", base: pub, method: "GET", path: "/v1/stream?topic=orders&from=earliest", header: as(userKey), want: 200, stream: true})
	resp, err := http.DefaultClient.Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ev, err := sse.NewDecoder(resp.Body).Next()
	var hello push.Hello
	if err != nil || ev.Type != "herald.hello" || json.Unmarshal([]byte(ev.Data), &hello) != nil || hello.Session == "" {
		t.Fatalf("first stream event %+v (err %v), want a herald.hello with a session", ev, err)
	}
	session := hello.Session
	eventually(t, 5*time.Second, "the stream's session is in presence", func() bool {
		_, out := spec.check(t, call{name: "presence", base: pub, method: "GET", path: "/v1/topics/orders/presence", header: as(userKey), want: 200})
		sessions, _ := out["sessions"].([]any)
		for _, s := range sessions {
			if rec, ok := s.(map[string]any); ok && rec["session"] == session {
				return true
			}
		}
		return false
	})
	spec.check(t, call{name: "admin presence", base: adm, method: "GET", path: "/v1/topics/orders/presence", want: 200})
	spec.check(t, call{name: "session", base: pub, method: "GET", path: "/v1/sessions/" + session, header: as(adminKey), want: 200})
	spec.check(t, call{name: "admin session", base: adm, method: "GET", path: "/v1/sessions/" + session, want: 200})
	spec.check(t, call{name: "disconnect", base: adm, method: "DELETE", path: "/v1/sessions/" + session, want: 202})

	// Evacuation: 503 evacuating with alternates on publish and readiness.
	spec.check(t, call{name: "admin evacuate", base: adm, method: "POST", path: "/v1/region/evacuate", body: `{"active":true,"by":"test"}`, want: 202})
	eventually(t, 5*time.Second, "the node applies the evacuation", func() bool {
		r, err := http.Get(pub + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode == http.StatusServiceUnavailable
	})
	spec.check(t, call{name: "readyz evacuating", base: pub, method: "GET", path: "/readyz", want: 503})
	spec.check(t, call{name: "publish evacuating", base: pub, method: "POST", path: "/v1/topics/orders/events", header: as(userKey), body: `{"data":1}`, want: 503})
	spec.check(t, call{name: "admin region evacuating", base: adm, method: "GET", path: "/v1/region", want: 200})
	spec.check(t, call{name: "admin call off", base: adm, method: "POST", path: "/v1/region/evacuate", body: `{"active":false}`, want: 202})
}

// The checker itself must catch drift: an undocumented status, a body
// that breaks its schema and an unknown route each fail.
func TestOpenAPICheckerCatchesMismatches(t *testing.T) {
	spec := loadSpec(t)
	ctx := context.Background()
	validate := func(method, path string, status int, body string) error {
		req, _ := http.NewRequest(method, "http://node"+path, nil)
		route, params, err := spec.router.FindRoute(req)
		if err != nil {
			return err
		}
		opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
			Status:                 status, Header: http.Header{"Content-Type": {"application/json"}}, Options: opts,
		}
		in.SetBodyBytes([]byte(body))
		return openapi3filter.ValidateResponse(ctx, in)
	}
	okBody := `{"status":"ready","durable":false}`
	if err := validate("GET", "/readyz", 200, okBody); err != nil {
		t.Fatalf("a valid response fails: %v", err)
	}
	for name, err := range map[string]error{
		"undocumented status": validate("GET", "/readyz", 418, okBody),
		"missing field":       validate("GET", "/readyz", 200, `{"status":"ready"}`),
		"extra field":         validate("GET", "/readyz", 200, `{"status":"ready","durable":false,"x":1}`),
		"3.1 const":           validate("GET", "/readyz", 200, `{"status":"nope","durable":false}`),
		"3.1 type array":      validate("GET", "/v1/region", 200, `{"region":"r","evacuating":false,"evacuation":{"id":0,"active":false},"origins":7}`),
		"unknown error code":  validate("GET", "/readyz", 503, `{"error":{"code":"nope","message":"m"}}`),
		"unknown route":       validate("GET", "/v1/nothing", 200, `{}`),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	rs := routeSet{}
	rs.add("GET", "/v1/topics/:topic/new")
	for r := range rs {
		method, path, _ := strings.Cut(r, " ")
		if spec.specHas(method, path) {
			t.Errorf("an undocumented route %s counts as documented", r)
		}
	}
	if !spec.specHas("GET", "/v1/topics/:topic/events") || !spec.specHas("", "/debug/pprof/") {
		t.Error("documented routes are not found")
	}
}

// validateAnswer validates a response received outside check (a request
// whose body was still being sent) against the operation of method+url.
func (s *apiSpec) validateAnswer(t *testing.T, name, method, url string, status int, header http.Header, body []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s: %s %s is not in the spec: %v", name, method, url, err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 status, Header: header, Options: opts,
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s: response %d does not match the spec: %v\nbody: %.500s", name, status, err, body)
	}
}

// TestOpenAPIRequestBounds drives the per-request bounds of a node with
// one request in flight per address and a 1s body timeout: a publish whose
// body stalls holds the address's slot, so another request gets 429; the
// stalled publish then gets 408. Both answers are validated.
func TestOpenAPIRequestBounds(t *testing.T) {
	spec := loadSpec(t)
	key, hash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	m := MustRunMain(t, func(c *Config) {
		c.Dev = false
		c.Auth.APIKeys = []auth.APIKeyConfig{{ID: "app", Hash: hash, Publish: []string{"*"}, Subscribe: []string{"*"}}}
		c.Limits.BodyTimeout = time.Second
		c.Protection.Admission.MaxRequestsPerIP = 1
	})
	type answer struct {
		status int
		header http.Header
		body   []byte
		err    error
	}
	url := m.URL() + "/v1/topics/orders/events"
	// stall starts a publish that sends the start of its body and then
	// nothing; its answer arrives on the returned channel.
	stall := func() (chan answer, *io.PipeWriter) {
		ch := make(chan answer, 1)
		pr, pw := io.Pipe()
		go func() {
			req, _ := http.NewRequest(http.MethodPost, url, pr)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Api-Key", key)
			req.ContentLength = 100
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				ch <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			ch <- answer{resp.StatusCode, resp.Header, b, err}
		}()
		go func() { _, _ = pw.Write([]byte(`{"data":`)) }() // then nothing more
		return ch, pw
	}
	// A probe in flight when the stalled publish arrives takes the slot
	// and the publish is refused instead: then start over.
	var a answer
	for attempt := 1; ; attempt++ {
		stalled, pw := stall()
		refused, early := false, false
		deadline := time.Now().Add(5 * time.Second)
		for !refused && !early && time.Now().Before(deadline) {
			select {
			case a = <-stalled:
				early = true
				continue
			default:
			}
			code, _ := spec.check(t, call{name: "readyz over the per-address cap", base: m.URL(), method: "GET", path: "/readyz"})
			refused = code == http.StatusTooManyRequests
		}
		if refused {
			a = <-stalled
		}
		pw.Close()
		if refused && a.err == nil && a.status == http.StatusRequestTimeout {
			break
		}
		if attempt == 5 {
			t.Fatalf("no stalled publish held the slot in 5 attempts (last: probe refused %v, publish %d %s, err %v)", refused, a.status, a.body, a.err)
		}
		t.Logf("attempt %d: probe refused %v, stalled publish %d (err %v); again", attempt, refused, a.status, a.err)
	}
	spec.validateAnswer(t, "stalled publish", http.MethodPost, url, a.status, a.header, a.body)
}
