package resilience

import (
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaultsValid(t *testing.T) {
	for name, cfg := range map[string]Config{"zero": {}, "default": DefaultConfig()} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s config invalid: %v", name, err)
		}
	}
	n := Config{}.withDefaults()
	if n.Ingress.MaxQueueing != DefaultMaxQueueing || n.Ingress.TrackedKeys != DefaultTrackedKeys ||
		n.Admission.ColdFactor != DefaultColdFactor || n.Admission.BusyRetryAfter != DefaultBusyRetryAfter ||
		n.Breaker.SlowThreshold != DefaultSlowThreshold || n.Breaker.MinRequests != DefaultMinRequests ||
		n.Breaker.Window != DefaultWindow || n.Breaker.RetryTimeout != DefaultRetryTimeout {
		t.Errorf("zero shape fields not defaulted: %+v", n)
	}
	if n.Ingress.PublishQPS != 0 || n.Admission.MaxStreams != 0 || n.Replay.MaxConcurrent != 0 || n.Breaker.ErrorRatio != 0 {
		t.Errorf("zero limits must stay off: %+v", n)
	}
}

func TestConfigValidateNamesValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative qps", func(c *Config) { c.Ingress.PublishQPS = -1 }, "ingress.publish_qps -1"},
		{"tiny qps", func(c *Config) { c.Ingress.PublishQPS = 0.001 }, "ingress.publish_qps 0.001"},
		{"nan qps", func(c *Config) { c.Ingress.PublishQPS = math.NaN() }, "ingress.publish_qps NaN"},
		{"tenant", func(c *Config) { c.Ingress.Tenants = map[string]float64{"acme": -3} }, `ingress.tenants["acme"] -3`},
		{"topic", func(c *Config) { c.Ingress.Topics = map[string]int64{"news": -1} }, `ingress.topics["news"] -1`},
		{"throttle too fast", func(c *Config) { c.Ingress.Throttle = true; c.Ingress.PublishQPS = 5000 }, "ingress.publish_qps 5000: with ingress.throttle"},
		{"queueing", func(c *Config) { c.Ingress.MaxQueueing = -time.Second }, "ingress.max_queueing -1s"},
		{"tracked keys", func(c *Config) { c.Ingress.TrackedKeys = -1 }, "ingress.tracked_keys -1"},
		{"connect rate", func(c *Config) { c.Admission.ConnectRate = 0.5 }, "admission.connect_rate 0.5"},
		{"cold factor", func(c *Config) { c.Admission.ColdFactor = 1 }, "admission.cold_factor 1"},
		{"warm-up too short", func(c *Config) {
			c.Admission.ConnectRate, c.Admission.WarmUp, c.Admission.ColdFactor = 1, time.Second, 3
		}, "admission.warm_up 1s with connect_rate 1 and cold_factor 3 is too short"},
		{"max streams", func(c *Config) { c.Admission.MaxStreams = -1 }, "admission.max_streams -1"},
		{"per ip", func(c *Config) { c.Admission.MaxStreamsPerIP = -2 }, "admission.max_streams_per_ip -2"},
		{"cpu ratio", func(c *Config) { c.Admission.MaxCPU = 0.8 }, "admission.max_cpu 0.8: is a percentage"},
		{"load", func(c *Config) { c.Admission.MaxLoad = -1 }, "admission.max_load -1"},
		{"retry after", func(c *Config) { c.Admission.BusyRetryAfter = -time.Second }, "admission.busy_retry_after -1s"},
		{"replay cap", func(c *Config) { c.Replay.MaxConcurrent = -1 }, "replay.max_concurrent -1"},
		{"replay wait", func(c *Config) { c.Replay.MaxWait = -time.Millisecond }, "replay.max_wait -1ms"},
		{"error ratio", func(c *Config) { c.Breaker.ErrorRatio = 1.5 }, "breaker.error_ratio 1.5"},
		{"slow ratio", func(c *Config) { c.Breaker.SlowRatio = -0.1 }, "breaker.slow_ratio -0.1"},
		{"slow threshold", func(c *Config) { c.Breaker.SlowThreshold = time.Microsecond }, "breaker.slow_threshold 1µs"},
		{"window", func(c *Config) { c.Breaker.Window = time.Hour }, "breaker.window 1h0m0s"},
		{"retry timeout", func(c *Config) { c.Breaker.RetryTimeout = -1 }, "breaker.retry_timeout -1ns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mod(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tc.want)
			}
			if _, err := New(cfg, Options{}); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
	// All problems at once.
	cfg := Config{Replay: ReplayConfig{MaxConcurrent: -1, MaxWait: -1}}
	if err := cfg.Validate(); err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Fatalf("want two problems, got %v", err)
	}
}

// Every field carries a snake_case koanf tag.
func TestConfigKoanfTags(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("koanf")
			if !snake.MatchString(tag) {
				t.Errorf("%s%s: koanf tag %q", path, f.Name, tag)
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, path+f.Name+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
}

func TestOptionsName(t *testing.T) {
	if _, err := New(Config{}, Options{Name: "a/b"}); err == nil {
		t.Error("name with / accepted")
	}
	g := mustNew(t, Config{}, Options{})
	if !strings.HasPrefix(g.ns, "TestOptionsName~") {
		t.Errorf("namespace %q", g.ns)
	}
}

func TestBlockedHelpers(t *testing.T) {
	b := &Blocked{Layer: LayerAdmission, Resource: ResourceConnect, Reason: ReasonRate, RetryAfter: 1500 * time.Millisecond}
	if b.RetryAfterSeconds() != 2 {
		t.Errorf("RetryAfterSeconds = %d", b.RetryAfterSeconds())
	}
	if (&Blocked{RetryAfter: minRetryAfter}).RetryAfterSeconds() != 1 {
		t.Error("RetryAfterSeconds below 1")
	}
	for range 100 {
		if j := b.Jittered(); j < b.RetryAfter || j > 2*b.RetryAfter {
			t.Fatalf("Jittered %s outside [%s, %s]", j, b.RetryAfter, 2*b.RetryAfter)
		}
	}
	if got := b.Error(); got != "resilience: admission connect refused (rate), retry after 1.5s" {
		t.Errorf("Error() = %q", got)
	}
}

func TestBucketPeriod(t *testing.T) {
	for _, tc := range []struct {
		rates  []float64
		period int64
	}{
		{[]float64{0}, 1}, {[]float64{100, 5}, 1}, {[]float64{0.5, 10}, 2},
		{[]float64{0.2}, 5}, {[]float64{0.3}, 4}, {[]float64{1.0 / 60}, 60},
	} {
		if got := bucketPeriod(tc.rates); got != tc.period {
			t.Errorf("bucketPeriod(%v) = %d, want %d", tc.rates, got, tc.period)
		}
	}
	if tokensPer(0, 1) != unlimitedTokens || tokensPer(0.3, 4) != 1 || tokensPer(2.5, 1) != 3 {
		t.Error("tokensPer")
	}
}
