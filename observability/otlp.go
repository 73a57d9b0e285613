package observability

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"

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

func newTraceExporter(ctx context.Context, c OTLPConfig) (sdktrace.SpanExporter, error) {
	proto, err := otlpProtocol(c, signalTraces)
	if err != nil {
		return nil, err
	}
	var u *url.URL
	var hostport string
	if c.Endpoint != "" {
		if u, hostport, err = parseEndpoint(c.Endpoint); err != nil {
			return nil, fmt.Errorf("%w: otlp.endpoint %q: %v", ErrInvalidConfig, c.Endpoint, err)
		}
	}
	if proto == ProtocolHTTPProtobuf {
		var opts []otlptracehttp.Option
		switch {
		case u != nil:
			opts = append(opts, otlptracehttp.WithEndpointURL(signalURL(u, signalTraces)))
		case hostport != "":
			opts = append(opts, otlptracehttp.WithEndpoint(hostport))
			if c.Insecure {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
		}
		if len(c.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(c.Headers))
		}
		if c.Timeout > 0 {
			opts = append(opts, otlptracehttp.WithTimeout(c.Timeout))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	var opts []otlptracegrpc.Option
	switch {
	case u != nil:
		opts = append(opts, otlptracegrpc.WithEndpointURL(u.String()))
	case hostport != "":
		opts = append(opts, otlptracegrpc.WithEndpoint(hostport))
		if c.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
	}
	if len(c.Headers) > 0 {
		opts = append(opts, otlptracegrpc.WithHeaders(c.Headers))
	}
	if c.Timeout > 0 {
		opts = append(opts, otlptracegrpc.WithTimeout(c.Timeout))
	}
	return otlptracegrpc.New(ctx, opts...)
}

func newMetricExporter(ctx context.Context, c OTLPConfig) (sdkmetric.Exporter, error) {
	proto, err := otlpProtocol(c, signalMetrics)
	if err != nil {
		return nil, err
	}
	var u *url.URL
	var hostport string
	if c.Endpoint != "" {
		if u, hostport, err = parseEndpoint(c.Endpoint); err != nil {
			return nil, fmt.Errorf("%w: otlp.endpoint %q: %v", ErrInvalidConfig, c.Endpoint, err)
		}
	}
	if proto == ProtocolHTTPProtobuf {
		var opts []otlpmetrichttp.Option
		switch {
		case u != nil:
			opts = append(opts, otlpmetrichttp.WithEndpointURL(signalURL(u, signalMetrics)))
		case hostport != "":
			opts = append(opts, otlpmetrichttp.WithEndpoint(hostport))
			if c.Insecure {
				opts = append(opts, otlpmetrichttp.WithInsecure())
			}
		}
		if len(c.Headers) > 0 {
			opts = append(opts, otlpmetrichttp.WithHeaders(c.Headers))
		}
		if c.Timeout > 0 {
			opts = append(opts, otlpmetrichttp.WithTimeout(c.Timeout))
		}
		return otlpmetrichttp.New(ctx, opts...)
	}
	var opts []otlpmetricgrpc.Option
	switch {
	case u != nil:
		opts = append(opts, otlpmetricgrpc.WithEndpointURL(u.String()))
	case hostport != "":
		opts = append(opts, otlpmetricgrpc.WithEndpoint(hostport))
		if c.Insecure {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		}
	}
	if len(c.Headers) > 0 {
		opts = append(opts, otlpmetricgrpc.WithHeaders(c.Headers))
	}
	if c.Timeout > 0 {
		opts = append(opts, otlpmetricgrpc.WithTimeout(c.Timeout))
	}
	return otlpmetricgrpc.New(ctx, opts...)
}
