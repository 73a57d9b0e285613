package observability

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// signal is an OTLP signal as spelt in the OTEL_EXPORTER_OTLP_<SIGNAL>_*
// variable names and in the HTTP path.
type signal string

const (
	signalTraces  signal = "traces"
	signalMetrics signal = "metrics"
)

func (s signal) env(suffix string) string {
	return "OTEL_EXPORTER_OTLP_" + strings.ToUpper(string(s)) + "_" + suffix
}

// lookupEnv returns the first of keys that is set to a non-blank value.
func lookupEnv(keys ...string) (string, bool) {
	for _, k := range keys {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v, true
		}
	}
	return "", false
}

// otlpEnabled reports whether sig is exported over OTLP: an Endpoint in the
// config or a standard endpoint variable, unless the SDK or this signal's
// exporter is switched off by OTEL_SDK_DISABLED / OTEL_<SIGNAL>_EXPORTER=none.
func otlpEnabled(c OTLPConfig, sig signal) bool {
	if v, _ := lookupEnv("OTEL_SDK_DISABLED"); strings.EqualFold(v, "true") {
		return false
	}
	if v, _ := lookupEnv("OTEL_" + strings.ToUpper(string(sig)) + "_EXPORTER"); strings.EqualFold(v, "none") {
		return false
	}
	if c.Endpoint != "" {
		return true
	}
	_, ok := lookupEnv(sig.env("ENDPOINT"), "OTEL_EXPORTER_OTLP_ENDPOINT")
	return ok
}

// otlpProtocol resolves the protocol for sig: config, then the per-signal
// and generic variables, then grpc.
func otlpProtocol(c OTLPConfig, sig signal) (string, error) {
	p := c.Protocol
	src := "otlp.protocol"
	if p == "" {
		var ok bool
		if p, ok = lookupEnv(sig.env("PROTOCOL")); ok {
			src = sig.env("PROTOCOL")
		} else if p, ok = lookupEnv("OTEL_EXPORTER_OTLP_PROTOCOL"); ok {
			src = "OTEL_EXPORTER_OTLP_PROTOCOL"
		} else {
			p = ProtocolGRPC
		}
	}
	switch p {
	case ProtocolGRPC, ProtocolHTTPProtobuf:
		return p, nil
	}
	return "", fmt.Errorf("%w: %s %q: want %q or %q", ErrInvalidConfig, src, p, ProtocolGRPC, ProtocolHTTPProtobuf)
}

// signalURL appends the signal path (/v1/traces, /v1/metrics) to a base URL,
// as the OTLP spec does for OTEL_EXPORTER_OTLP_ENDPOINT.
func signalURL(base *url.URL, sig signal) string {
	u := *base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/" + string(sig)
	return u.String()
}

// otlpTarget is where one signal's exporter sends, resolved from OTLPConfig
// and the OTEL_EXPORTER_OTLP_* environment.
type otlpTarget struct {
	proto    string
	sig      signal
	u        *url.URL // set when the endpoint is a URL
	hostport string   // set when the endpoint is a bare host:port
}

func resolveOTLP(c OTLPConfig, sig signal) (otlpTarget, error) {
	proto, err := otlpProtocol(c, sig)
	if err != nil {
		return otlpTarget{}, err
	}
	t := otlpTarget{proto: proto, sig: sig}
	if c.Endpoint != "" {
		if t.u, t.hostport, err = parseEndpoint(c.Endpoint); err != nil {
			return otlpTarget{}, fmt.Errorf("%w: otlp.endpoint %q: %v", ErrInvalidConfig, c.Endpoint, err)
		}
	}
	return t, nil
}

// otlpOptions names one exporter package's option constructors, so the
// four exporters (traces/metrics × HTTP/gRPC) share one way of building
// their options.
type otlpOptions[O any] struct {
	endpointURL func(string) O
	endpoint    func(string) O
	insecure    func() O
	headers     func(map[string]string) O
	timeout     func(time.Duration) O
}

// build returns the options for target t. An HTTP exporter given a base URL
// gets the signal path appended (as the OTLP spec does for
// OTEL_EXPORTER_OTLP_ENDPOINT); a gRPC one takes the URL as it is.
func (o otlpOptions[O]) build(c OTLPConfig, t otlpTarget) []O {
	var opts []O
	switch {
	case t.u != nil:
		if t.proto == ProtocolHTTPProtobuf {
			opts = append(opts, o.endpointURL(signalURL(t.u, t.sig)))
		} else {
			opts = append(opts, o.endpointURL(t.u.String()))
		}
	case t.hostport != "":
		opts = append(opts, o.endpoint(t.hostport))
		if c.Insecure {
			opts = append(opts, o.insecure())
		}
	}
	if len(c.Headers) > 0 {
		opts = append(opts, o.headers(c.Headers))
	}
	if c.Timeout > 0 {
		opts = append(opts, o.timeout(c.Timeout))
	}
	return opts
}

func newTraceExporter(ctx context.Context, c OTLPConfig) (sdktrace.SpanExporter, error) {
	t, err := resolveOTLP(c, signalTraces)
	if err != nil {
		return nil, err
	}
	if t.proto == ProtocolHTTPProtobuf {
		return otlptracehttp.New(ctx, otlpOptions[otlptracehttp.Option]{
			endpointURL: otlptracehttp.WithEndpointURL, endpoint: otlptracehttp.WithEndpoint,
			insecure: otlptracehttp.WithInsecure, headers: otlptracehttp.WithHeaders,
			timeout: otlptracehttp.WithTimeout,
		}.build(c, t)...)
	}
	return otlptracegrpc.New(ctx, otlpOptions[otlptracegrpc.Option]{
		endpointURL: otlptracegrpc.WithEndpointURL, endpoint: otlptracegrpc.WithEndpoint,
		insecure: otlptracegrpc.WithInsecure, headers: otlptracegrpc.WithHeaders,
		timeout: otlptracegrpc.WithTimeout,
	}.build(c, t)...)
}

func newMetricExporter(ctx context.Context, c OTLPConfig) (sdkmetric.Exporter, error) {
	t, err := resolveOTLP(c, signalMetrics)
	if err != nil {
		return nil, err
	}
	if t.proto == ProtocolHTTPProtobuf {
		return otlpmetrichttp.New(ctx, otlpOptions[otlpmetrichttp.Option]{
			endpointURL: otlpmetrichttp.WithEndpointURL, endpoint: otlpmetrichttp.WithEndpoint,
			insecure: otlpmetrichttp.WithInsecure, headers: otlpmetrichttp.WithHeaders,
			timeout: otlpmetrichttp.WithTimeout,
		}.build(c, t)...)
	}
	return otlpmetricgrpc.New(ctx, otlpOptions[otlpmetricgrpc.Option]{
		endpointURL: otlpmetricgrpc.WithEndpointURL, endpoint: otlpmetricgrpc.WithEndpoint,
		insecure: otlpmetricgrpc.WithInsecure, headers: otlpmetricgrpc.WithHeaders,
		timeout: otlpmetricgrpc.WithTimeout,
	}.build(c, t)...)
}
