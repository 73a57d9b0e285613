package observability

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// otlpSink collects what an OTLP receiver got.
type otlpSink struct {
	mu        sync.Mutex
	spans     []string // span names
	metrics   []string // metric names
	resources []map[string]string
	headers   []map[string]string // lower-cased header -> value
}

func (s *otlpSink) addResource(r *resourcepb.Resource) {
	m := map[string]string{}
	for _, kv := range r.GetAttributes() {
		m[kv.GetKey()] = anyValueString(kv.GetValue())
	}
	s.resources = append(s.resources, m)
}

func anyValueString(v *commonpb.AnyValue) string {
	if v == nil {
		return ""
	}
	return v.GetStringValue()
}

func (s *otlpSink) addTraces(req *coltracepb.ExportTraceServiceRequest, hdr map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.headers = append(s.headers, hdr)
	for _, rs := range req.GetResourceSpans() {
		s.addResource(rs.GetResource())
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.spans = append(s.spans, sp.GetName())
			}
		}
	}
}

func (s *otlpSink) addMetrics(req *colmetricpb.ExportMetricsServiceRequest, hdr map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.headers = append(s.headers, hdr)
	for _, rm := range req.GetResourceMetrics() {
		s.addResource(rm.GetResource())
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				s.metrics = append(s.metrics, m.GetName())
			}
		}
	}
}

// check asserts the sink got the span, the metric, the resource and the
// header that exerciseExport sends.
func (s *otlpSink) check(t *testing.T, wantHeader string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !contains(s.spans, SpanPublish) {
		t.Errorf("spans received: %v, want %s", s.spans, SpanPublish)
	}
	if !contains(s.metrics, "herald.publishes") || !contains(s.metrics, "herald.delivery.latency") {
		t.Errorf("metrics received: %v", s.metrics)
	}
	if len(s.resources) == 0 {
		t.Fatal("no resource received")
	}
	for _, r := range s.resources {
		for k, want := range map[string]string{
			"service.name": "herald-e2e", "service.version": "v9.9.9", "service.instance.id": "node-a",
			"cloud.region": "eu-west", "cloud.availability_zone": "eu-west-1b",
		} {
			if r[k] != want {
				t.Errorf("resource %s = %q, want %q (resource %v)", k, r[k], want, r)
			}
		}
		if r["host.name"] == "" {
			t.Errorf("resource lacks host.name: %v", r)
		}
	}
	if wantHeader != "" {
		for _, h := range s.headers {
			if h["x-herald-test"] != wantHeader {
				t.Errorf("header x-herald-test = %q, want %q", h["x-herald-test"], wantHeader)
			}
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// newHTTPReceiver serves OTLP/HTTP protobuf on /v1/traces and /v1/metrics
// (optionally under a base path).
func newHTTPReceiver(t *testing.T, base string) (*httptest.Server, *otlpSink) {
	sink := &otlpSink{}
	mux := http.NewServeMux()
	read := func(w http.ResponseWriter, r *http.Request, msg proto.Message) (map[string]string, bool) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return nil, false
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err == nil {
			err = proto.Unmarshal(b, msg)
		}
		if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad request", 400)
			t.Errorf("receiver: %v (content type %q)", err, r.Header.Get("Content-Type"))
			return nil, false
		}
		return map[string]string{"x-herald-test": r.Header.Get("X-Herald-Test")}, true
	}
	mux.HandleFunc("POST "+base+"/v1/traces", func(w http.ResponseWriter, r *http.Request) {
		var req coltracepb.ExportTraceServiceRequest
		if hdr, ok := read(w, r, &req); ok {
			sink.addTraces(&req, hdr)
			b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write(b)
		}
	})
	mux.HandleFunc("POST "+base+"/v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		var req colmetricpb.ExportMetricsServiceRequest
		if hdr, ok := read(w, r, &req); ok {
			sink.addMetrics(&req, hdr)
			b, _ := proto.Marshal(&colmetricpb.ExportMetricsServiceResponse{})
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write(b)
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("receiver: unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, sink
}

type grpcTraces struct {
	coltracepb.UnimplementedTraceServiceServer
	sink *otlpSink
}

func (g grpcTraces) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.sink.addTraces(req, grpcHeaders(ctx))
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type grpcMetrics struct {
	colmetricpb.UnimplementedMetricsServiceServer
	sink *otlpSink
}

func (g grpcMetrics) Export(ctx context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	g.sink.addMetrics(req, grpcHeaders(ctx))
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

func grpcHeaders(ctx context.Context) map[string]string {
	md, _ := metadata.FromIncomingContext(ctx)
	h := map[string]string{}
	if v := md.Get("x-herald-test"); len(v) > 0 {
		h["x-herald-test"] = v[0]
	}
	return h
}

// newGRPCReceiver serves OTLP/gRPC on a loopback port.
func newGRPCReceiver(t *testing.T) (addr string, sink *otlpSink, stop func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink = &otlpSink{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcTraces{sink: sink})
	colmetricpb.RegisterMetricsServiceServer(srv, grpcMetrics{sink: sink})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return lis.Addr().String(), sink, stop
}

func e2eConfig(otlp OTLPConfig) Config {
	return Config{
		ServiceName: "herald-e2e", Version: "v9.9.9", Node: "node-a", Region: "eu-west", Zone: "eu-west-1b",
		TraceSampleRatio: 1, OTLP: otlp,
	}
}

// exerciseExport makes one span and two metrics, then shuts down (flush).
func exerciseExport(t *testing.T, cfg Config) {
	t.Helper()
	ctx := context.Background()
	tel, err := Setup(ctx, cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	_, span := tel.StartPublish(ctx, "orders")
	span.End()
	tel.Metrics().Publish(ctx, PublishOK, 2*time.Millisecond)
	var tally DeliveryTally
	tally.Add(5 * time.Millisecond)
	tel.Metrics().Delivered(&tally)
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := tel.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestOTLPExportEndToEnd(t *testing.T) {
	t.Run("http/protobuf URL with base path", func(t *testing.T) {
		t.Parallel()
		srv, sink := newHTTPReceiver(t, "/otlp")
		exerciseExport(t, e2eConfig(OTLPConfig{Endpoint: srv.URL + "/otlp", Protocol: ProtocolHTTPProtobuf,
			Headers: map[string]string{"X-Herald-Test": "cfg"}, Timeout: 5 * time.Second}))
		sink.check(t, "cfg")
	})
	t.Run("http/protobuf host:port insecure", func(t *testing.T) {
		t.Parallel()
		srv, sink := newHTTPReceiver(t, "")
		exerciseExport(t, e2eConfig(OTLPConfig{Endpoint: strings.TrimPrefix(srv.URL, "http://"),
			Protocol: ProtocolHTTPProtobuf, Insecure: true}))
		sink.check(t, "")
	})
	t.Run("grpc URL", func(t *testing.T) {
		t.Parallel()
		addr, sink, _ := newGRPCReceiver(t)
		exerciseExport(t, e2eConfig(OTLPConfig{Endpoint: "http://" + addr, Protocol: ProtocolGRPC,
			Headers: map[string]string{"X-Herald-Test": "grpc"}}))
		sink.check(t, "grpc")
	})
	t.Run("grpc host:port insecure", func(t *testing.T) {
		t.Parallel()
		addr, sink, _ := newGRPCReceiver(t)
		exerciseExport(t, e2eConfig(OTLPConfig{Endpoint: addr, Protocol: ProtocolGRPC, Insecure: true}))
		sink.check(t, "")
	})
}

// The standard OTEL_* variables work when the config leaves a field zero.
func TestOTLPStandardEnvironment(t *testing.T) {
	srv, sink := newHTTPReceiver(t, "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-herald-test=env")
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
	exerciseExport(t, e2eConfig(OTLPConfig{}))
	sink.check(t, "env")

	// OTEL_TRACES_EXPORTER=none keeps metrics flowing but sends no spans.
	srv2, sink2 := newHTTPReceiver(t, "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv2.URL)
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	exerciseExport(t, e2eConfig(OTLPConfig{}))
	sink2.mu.Lock()
	defer sink2.mu.Unlock()
	if len(sink2.spans) != 0 || !contains(sink2.metrics, "herald.publishes") {
		t.Errorf("traces off: spans %v metrics %v", sink2.spans, sink2.metrics)
	}
}

func TestOTLPProtocolResolution(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "")
	if p, _ := otlpProtocol(OTLPConfig{}, signalTraces); p != ProtocolGRPC {
		t.Errorf("default protocol %q", p)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	if p, _ := otlpProtocol(OTLPConfig{}, signalTraces); p != ProtocolHTTPProtobuf {
		t.Errorf("generic env protocol %q", p)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
	if p, _ := otlpProtocol(OTLPConfig{}, signalTraces); p != ProtocolGRPC {
		t.Errorf("per-signal env protocol %q", p)
	}
	if p, _ := otlpProtocol(OTLPConfig{Protocol: ProtocolHTTPProtobuf}, signalTraces); p != ProtocolHTTPProtobuf {
		t.Errorf("config protocol %q", p)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json")
	_, err := Setup(context.Background(), Config{OTLP: OTLPConfig{Endpoint: "127.0.0.1:4317"}})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "http/json") {
		t.Errorf("unsupported env protocol: %v", err)
	}
}

func TestOTLPEnabled(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"} {
		t.Setenv(k, "")
	}
	if otlpEnabled(OTLPConfig{}, signalTraces) {
		t.Error("enabled with no endpoint anywhere")
	}
	if !otlpEnabled(OTLPConfig{Endpoint: "h:1"}, signalTraces) {
		t.Error("disabled with a config endpoint")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://h:4318/v1/metrics")
	if otlpEnabled(OTLPConfig{}, signalTraces) || !otlpEnabled(OTLPConfig{}, signalMetrics) {
		t.Error("per-signal endpoint variable not honoured per signal")
	}
	t.Setenv("OTEL_SDK_DISABLED", "true")
	if otlpEnabled(OTLPConfig{Endpoint: "h:1"}, signalMetrics) {
		t.Error("OTEL_SDK_DISABLED ignored")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{OTLP: OTLPConfig{Protocol: "http/json"}},
		{OTLP: OTLPConfig{Endpoint: "collector"}},
		{OTLP: OTLPConfig{Endpoint: "ftp://collector:21"}},
		{OTLP: OTLPConfig{Endpoint: "http://"}},
		{OTLP: OTLPConfig{Endpoint: "collector:4317/path"}},
		{OTLP: OTLPConfig{Timeout: -time.Second}},
		{TraceSampleRatio: 1.5},
		{MetricsInterval: -time.Second},
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", c, err)
		}
		if _, err := Setup(context.Background(), c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Setup(%+v) = %v, want ErrInvalidConfig", c, err)
		}
	}
	for _, c := range []Config{
		{},
		{OTLP: OTLPConfig{Endpoint: "collector:4317", Protocol: ProtocolGRPC}},
		{OTLP: OTLPConfig{Endpoint: "https://collector.example:4318/base", Protocol: ProtocolHTTPProtobuf}},
		{TraceSampleRatio: -1, DeliverySpanRate: -1},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
}

func TestShutdownIdempotent(t *testing.T) {
	t.Parallel()
	tel, err := Setup(context.Background(), Config{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	// Recording after shutdown is harmless; the handler still answers.
	exerciseMetrics(tel.Metrics())
	_, span := tel.StartPublish(context.Background(), "t")
	span.End()
	fams := scrape(t, tel)
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("go collector gone after Shutdown")
	}
}

// Setup then Shutdown leaves no goroutine behind, with and without OTLP.
func TestSetupShutdownNoGoroutineLeak(t *testing.T) {
	cycle := func(cfg Config) {
		tel, err := Setup(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		exerciseMetrics(tel.Metrics())
		_, span := tel.StartPublish(context.Background(), "t")
		span.End()
		scrape(t, tel)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Warm up once: libraries start process-wide goroutines on first use.
	cycle(Config{Node: "n"})
	base := runtime.NumGoroutine()

	cycle(Config{Node: "n"})

	srv, _ := newHTTPReceiver(t, "")
	cycle(Config{Node: "n", OTLP: OTLPConfig{Endpoint: srv.URL, Protocol: ProtocolHTTPProtobuf}})
	srv.Close() // drops the exporter's keep-alive connections

	addr, _, stop := newGRPCReceiver(t)
	cycle(Config{Node: "n", OTLP: OTLPConfig{Endpoint: addr, Insecure: true, Protocol: ProtocolGRPC}})
	stop()

	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, baseline %d:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Resource precedence: built-in defaults < OTEL_SERVICE_NAME /
// OTEL_RESOURCE_ATTRIBUTES < non-zero Config fields.
func TestResourcePrecedence(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,cloud.region=env-region")
	resourceOf := func(cfg Config) map[string]string {
		tel, rec := mustTestTelemetry(t, cfg)
		_, span := tel.StartPublish(context.Background(), "t")
		span.End()
		out := map[string]string{}
		for _, kv := range rec.Ended()[0].Resource().Attributes() {
			out[string(kv.Key)] = kv.Value.String()
		}
		return out
	}
	r := resourceOf(Config{Node: "n1"})
	if r["service.name"] != "from-env" || r["cloud.region"] != "env-region" || r["deployment.environment.name"] != "staging" {
		t.Errorf("env not applied over defaults: %v", r)
	}
	r = resourceOf(Config{ServiceName: "cfg-name", Region: "cfg-region", Node: "n1"})
	if r["service.name"] != "cfg-name" || r["cloud.region"] != "cfg-region" || r["service.instance.id"] != "n1" {
		t.Errorf("config does not win over env: %v", r)
	}
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	if r = resourceOf(Config{}); r["service.name"] != DefaultServiceName || r["service.instance.id"] == "" {
		t.Errorf("defaults: %v", r)
	}
}
