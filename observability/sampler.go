package observability

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
)

// rootSampler resolves the sampler for spans that are not delivery spans:
// Config.TraceSampleRatio when set, else OTEL_TRACES_SAMPLER(_ARG) when set,
// else parent-based 10%.
func rootSampler(ratio float64) (sdktrace.Sampler, error) {
	if ratio != 0 {
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(math.Max(ratio, 0))), nil
	}
	name, ok := lookupEnv("OTEL_TRACES_SAMPLER")
	if !ok {
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(DefaultTraceSampleRatio)), nil
	}
	name = strings.ToLower(name)
	arg := 1.0
	if s, ok := lookupEnv("OTEL_TRACES_SAMPLER_ARG"); ok && strings.HasSuffix(name, "traceidratio") {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 1 {
			return nil, fmt.Errorf("%w: OTEL_TRACES_SAMPLER_ARG %q: want a ratio in [0, 1]", ErrInvalidConfig, s)
		}
		arg = v
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(arg), nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(arg)), nil
	}
	return nil, fmt.Errorf("%w: OTEL_TRACES_SAMPLER %q is not supported", ErrInvalidConfig, name)
}

// sampler is Herald's trace sampler.
//
//   - Delivery spans (SpanDeliver) are sampled: StartDelivery only starts one
//     after deciding to (the publish was sampled and the rate cap allows).
//   - A session span without a parent but with a sampled link (the previous
//     connection of the same session) is sampled, so a reconnect chain stays
//     whole.
//   - Everything else goes to the root sampler (parent-based ratio).
type sampler struct {
	root sdktrace.Sampler
}

func (s sampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	switch p.Name {
	case SpanDeliver:
		return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
	case SpanSession:
		if !trace.SpanContextFromContext(p.ParentContext).IsValid() {
			for _, l := range p.Links {
				if l.SpanContext.IsSampled() {
					return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
				}
			}
		}
	}
	return s.root.ShouldSample(p)
}

func (s sampler) Description() string {
	return "HeraldSampler{" + s.root.Description() + "}"
}

// newRateLimiter returns the delivery-span limiter: rate tokens per second,
// a burst of one second's worth (rounded down, at least 1), starting full.
// A rate of 0 or less allows nothing, +Inf everything.
func newRateLimiter(r float64) *rate.Limiter {
	switch {
	case r <= 0:
		return rate.NewLimiter(0, 0)
	case math.IsInf(r, 1):
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(r), int(math.Max(r, 1)))
}
