package resilience

import (
	"context"
	"testing"

	"github.com/alibaba/sentinel-golang/core/stat"
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
