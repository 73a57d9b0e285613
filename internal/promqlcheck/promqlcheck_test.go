package promqlcheck

import (
	"errors"
	"slices"
	"testing"
)

func TestExprMetricNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`herald_streams_open{node=~"$node"}`, []string{"herald_streams_open"}},
		{`sum by (result) (rate(herald_stream_connects_total{region=~"$region", node=~"$node"}[$__rate_interval]))`,
			[]string{"herald_stream_connects_total"}},
		{`histogram_quantile(0.99, sum by (le, op, target) (rate(herald_redis_call_duration_seconds_bucket[5m])))`,
			[]string{"herald_redis_call_duration_seconds"}},
		{`sum(rate(a_sum[1m])) / sum(rate(a_count[1m]))`, []string{"a"}},
		{`sum without (le) (x) by (y)`, []string{"x"}},
		{`a / on (region) group_left (node, zone) b`, []string{"a", "b"}},
		{`a * ignoring(x) group_right b`, []string{"a", "b"}},
		{`count by (region) (count by (region, version) (herald_build_info)) > 1`, []string{"herald_build_info"}},
		{`max_over_time(m[5m:30s]) offset 1h`, []string{"m"}},
		{`rate(m[1h30m] @ end())`, []string{"m"}},
		{`a > bool 1 and b unless c or d`, []string{"a", "b", "c", "d"}},
		{`label_replace(m, "dst", "$1", "src", "(.*)")`, []string{"m"}},
		{`count_values("version", build)`, []string{"build"}},
		{`topk(5, x) + Inf - NaN + 1e3 + 0x1F + .5`, []string{"x"}},
		{`{__name__="named", job="x"}`, []string{"named"}},
		{`{"utf8.name", job="x"}`, []string{"utf8.name"}},
		{`ns:recorded:rate5m{a="b"}`, []string{"ns:recorded:rate5m"}},
		{`vector(1) # a comment mentioning fake_metric`, nil},
		{`sum(m{le="+Inf", a!="b", c!~"d|e"}) by (le)`, []string{"m"}},
		{"sum(x{a=`raw`})", []string{"x"}},
		{`absent(x{a='single'})`, []string{"x"}},
		{`min by (state) (herald_gossip_members{region=~"${region}"})`, []string{"herald_gossip_members"}},
	}
	for _, tt := range tests {
		got, err := ExprMetricNames(tt.expr)
		if err != nil {
			t.Errorf("ExprMetricNames(%q): %v", tt.expr, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("ExprMetricNames(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

func TestExprMetricNamesRejects(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{
		``,
		`   `,
		`sum(rate(x[5m])`,
		`sum(rate(x[5m])))`,
		`x{a="b"`,
		`x{a="b}`,
		`x{a=b}`,
		`x{a}`,
		`x{a="b" c="d"}`,
		`x[5m`,
		`x[]`,
		`x[five]`,
		`x]`,
		`x}`,
		`sum by (a b) (x)`,
		`sum by (a`,
		`x ; y`,
		`x{a="b"} | y`,
		`5mm`,
		`x[1h30]`,
		`$`,
		"x{a=\"new\nline\"}",
	} {
		if names, err := ExprMetricNames(expr); !errors.Is(err, ErrInvalidPromQL) {
			t.Errorf("ExprMetricNames(%q) = %q, %v; want ErrInvalidPromQL", expr, names, err)
		}
	}
}

func TestGrafanaQueryExpr(t *testing.T) {
	t.Parallel()
	tests := []struct{ q, want string }{
		{`label_values(herald_build_info, region)`, `herald_build_info`},
		{`label_values(herald_build_info{region=~"$region", a=","}, node)`, `herald_build_info{region=~"$region", a=","}`},
		{`label_values(region)`, ``},
		{`query_result(topk(5, x))`, `topk(5, x)`},
		{`label_names()`, ``},
		{`metrics(herald_.*)`, ``},
	}
	for _, tt := range tests {
		got, _ := grafanaQueryExpr(tt.q)
		if got != tt.want {
			t.Errorf("grafanaQueryExpr(%q) = %q, want %q", tt.q, got, tt.want)
		}
	}
}

// FuzzExprMetricNames: the scanner never panics, and whatever it accepts
// yields names that are themselves valid selectors.
func FuzzExprMetricNames(f *testing.F) {
	for _, s := range []string{
		`histogram_quantile(0.99, sum by (le) (rate(herald_delivery_latency_seconds_bucket{region=~"$region"}[$__rate_interval])))`,
		`a / on (region) group_left (node) b > bool 1`,
		`{__name__="x", a!~"b"}[5m:1m] offset -1h @ 123`,
		`count_values("v", m) # c`,
		"x{a=`b`}",
		`max_over_time(herald_gossip_health_score[5m]) >= 3`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		names, err := ExprMetricNames(expr)
		if err != nil {
			return
		}
		for _, n := range names {
			if n == "" {
				t.Fatalf("empty name from %q", expr)
			}
		}
	})
}
