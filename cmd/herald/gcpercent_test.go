package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// A node started without GOGC runs its GC at defaultGCPercent (ADR 0036);
// an operator's GOGC wins. Read from the node's own /metrics
// (go_gc_gogc_percent, the runtime's /gc/gogc:percent).
func TestServeGCPercent(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		want int
	}{
		{"unset", "GOGC=", defaultGCPercent},
		{"operator", "GOGC=150", 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProc(t, "gc-"+tc.name, []string{tc.env})
			if got := gogcPercent(t, p.Admin); got != tc.want {
				t.Fatalf("go_gc_gogc_percent %d, want %d", got, tc.want)
			}
		})
	}
}

var gogcLine = regexp.MustCompile(`(?m)^go_gc_gogc_percent(?:\{[^}]*\})? (\d+)$`)

func gogcPercent(t *testing.T, admin string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	m := gogcLine.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no go_gc_gogc_percent on %s/metrics", admin)
	}
	n, err := strconv.Atoi(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
