package observability

import (
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"strings"
	"time"
)

// OTLP protocols accepted in OTLPConfig.Protocol (the values of the standard
// OTEL_EXPORTER_OTLP_PROTOCOL variable that the Go exporters implement).
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Defaults filled in by Setup for zero-valued Config fields.
const (
	DefaultServiceName      = "herald"
	DefaultTraceSampleRatio = 0.1
	DefaultDeliverySpanRate = 100
)

// Config configures Setup. The zero value is valid: Prometheus metrics only, no
// OTLP export (unless the standard OTEL_* variables ask for it), 10% of new
// traces sampled.
type Config struct {
	// ServiceName is the resource's service.name. Zero means
	// OTEL_SERVICE_NAME when set, else "herald".
	ServiceName string `koanf:"service_name"`
	// Version is service.version and the version label of herald_build_info.
	Version string `koanf:"version"`
	// Node names this node: service.instance.id and the "node" label on every
	// exposed metric. Zero means the host name.
	Node string `koanf:"node"`
	// Region is cloud.region and the "region" label on every exposed metric.
	// Zero means no region (the label is omitted).
	Region string `koanf:"region"`
	// Zone is cloud.availability_zone and the "zone" label on every exposed
	// metric. Zero means no zone.
	Zone string `koanf:"zone"`
	// OTLP configures trace and metric export to an OpenTelemetry collector.
	OTLP OTLPConfig `koanf:"otlp"`
	// TraceSampleRatio is the fraction of new traces (requests arriving without
	// a sampled traceparent) that are sampled; a sampled parent is always
	// honoured (parent-based sampler). Zero means OTEL_TRACES_SAMPLER(_ARG)
	// when set, else 0.1; set 1 in development. A negative value samples no
	// new traces.
	TraceSampleRatio float64 `koanf:"trace_sample_ratio"`
	// DeliverySpanRate caps the delivery spans this node records per second.
	// Only deliveries of sampled publishes are candidates, and one publish
	// can fan out to many thousands of subscribers, so the cap bounds
	// tracing cost under fan-out. Zero means 100; negative disables delivery
	// spans; +Inf removes the cap.
	DeliverySpanRate float64 `koanf:"delivery_span_rate"`
	// MetricsInterval is the OTLP metric push interval (Prometheus scrapes
	// are independent of it). Zero means OTEL_METRIC_EXPORT_INTERVAL when set,
	// else 60s.
	MetricsInterval time.Duration `koanf:"metrics_interval"`
	// Logger receives errors the telemetry pipeline reports outside a call
	// (failed Prometheus gathers). Zero means discard.
	Logger *slog.Logger `koanf:"-"`
}

// OTLPConfig configures the OTLP exporters. Fields left at zero are not passed
// to the exporters, so the standard OTEL_EXPORTER_OTLP_* variables
// (endpoint, headers, timeout, certificates, compression, insecure) still
// apply; a non-zero field here wins over the variable.
type OTLPConfig struct {
	// Endpoint is the collector's base address: "http(s)://host:port[/base]"
	// (the scheme decides TLS; for http/protobuf the signal paths
	// /v1/traces and /v1/metrics are appended) or "host:port" (TLS unless
	// Insecure). Zero means no OTLP export, unless OTEL_EXPORTER_OTLP_ENDPOINT
	// or the per-signal OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT is set,
	// in which case that signal is exported as the variable says.
	Endpoint string `koanf:"endpoint"`
	// Protocol is "grpc" or "http/protobuf". Zero means
	// OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL, then
	// OTEL_EXPORTER_OTLP_PROTOCOL, else "grpc".
	Protocol string `koanf:"protocol"`
	// Insecure disables TLS for a "host:port" Endpoint. Zero means TLS, or
	// OTEL_EXPORTER_OTLP_INSECURE. Ignored when Endpoint has a scheme.
	Insecure bool `koanf:"insecure"`
	// Headers are sent with every export (e.g. an API key for a hosted
	// backend). Zero means OTEL_EXPORTER_OTLP_HEADERS.
	Headers map[string]string `koanf:"headers"`
	// Timeout bounds one export call. Zero means OTEL_EXPORTER_OTLP_TIMEOUT,
	// else 10s.
	Timeout time.Duration `koanf:"timeout"`
}

// withDefaults returns c with zero fields that have a fixed default filled in.
// Fields whose default comes from the environment are resolved where used.
func (c Config) withDefaults() Config {
	if c.Node == "" {
		if h, err := os.Hostname(); err == nil {
			c.Node = h
		}
	}
	if c.DeliverySpanRate == 0 {
		c.DeliverySpanRate = DefaultDeliverySpanRate
	}
	return c
}

// Validate reports the first invalid field, naming its value.
func (c Config) Validate() error {
	switch c.OTLP.Protocol {
	case "", ProtocolGRPC, ProtocolHTTPProtobuf:
	default:
		return fmt.Errorf("%w: otlp.protocol %q: want %q or %q", ErrInvalidConfig, c.OTLP.Protocol, ProtocolGRPC, ProtocolHTTPProtobuf)
	}
	if ep := c.OTLP.Endpoint; ep != "" {
		if _, _, err := parseEndpoint(ep); err != nil {
			return fmt.Errorf("%w: otlp.endpoint %q: %v", ErrInvalidConfig, ep, err)
		}
	}
	if c.OTLP.Timeout < 0 {
		return fmt.Errorf("%w: otlp.timeout %s is negative", ErrInvalidConfig, c.OTLP.Timeout)
	}
	if math.IsNaN(c.TraceSampleRatio) || c.TraceSampleRatio > 1 {
		return fmt.Errorf("%w: trace_sample_ratio %v: want at most 1", ErrInvalidConfig, c.TraceSampleRatio)
	}
	if math.IsNaN(c.DeliverySpanRate) {
		return fmt.Errorf("%w: delivery_span_rate is NaN", ErrInvalidConfig)
	}
	if c.MetricsInterval < 0 {
		return fmt.Errorf("%w: metrics_interval %s is negative", ErrInvalidConfig, c.MetricsInterval)
	}
	return nil
}

// parseEndpoint splits an Endpoint into a URL (when it has a scheme) or a
// host:port.
func parseEndpoint(ep string) (u *url.URL, hostport string, err error) {
	if !strings.Contains(ep, "://") {
		if strings.ContainsAny(ep, "/?#") || !strings.Contains(ep, ":") {
			return nil, "", fmt.Errorf("want host:port or an http(s):// URL")
		}
		return nil, ep, nil
	}
	u, err = url.Parse(ep)
	if err != nil {
		return nil, "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, "", fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, "", fmt.Errorf("no host")
	}
	return u, "", nil
}
