package resilience

import (
	"fmt"
	"testing"
)

// Layer 1 is on every publish: with both of its default limits set (per
// tenant and per topic), an admitted publish — Publish then Done — costs
// at most two heap allocations once its keys are tracked (ADR 0033). On
// sentinel's default hotspot controller it cost 9–11.
func TestIngressPublishAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop passes at random")
	}
	cfg := DefaultConfig()
	cfg.Ingress.PublishQPS = 1e8 // checked on every call, never refusing
	cfg.Ingress.TopicQPS = 1e8
	g := mustNew(t, cfg, Options{})
	topics := make([]string, 100)
	for i := range topics {
		topics[i] = fmt.Sprintf("t-%d", i)
	}
	i := 0
	publish := func() {
		p, blk := g.Publish("tenant", topics[i%len(topics)])
		if blk != nil {
			t.Fatal(blk)
		}
		p.Done(nil)
		i++
	}
	for range len(topics) { // track every key first
		publish()
	}
	if got := testing.AllocsPerRun(1000, publish); got > 2 {
		t.Errorf("Publish+Done: %.1f allocations per admitted publish, want ≤ 2", got)
	}
}
