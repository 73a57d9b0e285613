package resilience

import (
	"context"
	"testing"

	"github.com/alibaba/sentinel-golang/core/base"
	"github.com/alibaba/sentinel-golang/core/stat"
	metric_exporter "github.com/alibaba/sentinel-golang/exporter/metric"
	"net/http"
	"net/http/httptest"
	"strings"
)

// The publish path's entries (layer 1, then layer 4 around the append) run
// their own slot chains (ADR 0028): sentinel's per-resource statistic node,
// which this package never reads for them, is never created — while their
// rules still refuse (ingress_test.go, breaker_test.go) — and the
// handshake, which does read its node, still has it.
func TestPublishPathEntriesSkipUnusedSlots(t *testing.T) {
	g := mustNew(t, DefaultConfig(), Options{})
	p, blk := g.Publish("tenant", "topic")
	if blk != nil {
		t.Fatal(blk)
	}
	p.Done(nil)
	b := g.Breaker("redis")
	if err := b.Do(context.Background(), "append", succeeding); err != nil {
		t.Fatal(err)
	}
	for _, res := range []string{g.resPublish, b.res} {
		if stat.GetResourceNode(res) != nil {
			t.Errorf("%s: sentinel kept a statistic node: the entry ran the global slot chain", res)
		}
	}
	st, ablk := g.Admit("192.0.2.1")
	if ablk != nil {
		t.Fatal(ablk)
	}
	st.Done()
	if stat.GetResourceNode(g.resHandshake) == nil {
		t.Error("the handshake's statistic node is missing")
	}
}

// TestHandshakeEntrySkipsUnusedSlots: a stream's handshake entry runs layer
// 2's own chain (newAdmissionChain), not sentinel's global one: sentinel's
// statistic slot, whose exporter counter of handled entries the global
// chain feeds, never sees it, while the handshake's statistic node (read
// by the flow check and the BBR check) still counts it.
func TestHandshakeEntrySkipsUnusedSlots(t *testing.T) {
	g := mustNew(t, DefaultConfig(), Options{})
	st, blk := g.Admit("192.0.2.1")
	if blk != nil {
		t.Fatal(blk)
	}
	n := stat.GetResourceNode(g.resHandshake)
	if n == nil {
		t.Fatal("the handshake's statistic node is missing")
	}
	if c := n.CurrentConcurrency(); c != 1 {
		t.Errorf("handshakes in flight %d, want 1", c)
	}
	st.Live()
	if c := n.CurrentConcurrency(); c != 0 {
		t.Errorf("handshakes in flight after Live %d, want 0", c)
	}
	if got := n.GetSum(base.MetricEventComplete); got != 1 {
		t.Errorf("handshakes completed %d, want 1", got)
	}
	if got := n.GetSum(base.MetricEventPass); got != 1 {
		t.Errorf("handshakes passed %d, want 1", got)
	}
	st.Done()
	rec := httptest.NewRecorder()
	metric_exporter.HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if strings.Contains(line, "handled_total") && strings.Contains(line, g.resHandshake) {
			t.Errorf("sentinel's global statistic slot counted the handshake: %s", strings.TrimSpace(line))
		}
	}
}
