package resilience

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkIngressPublish is layer 1's cost per publish with both of its
// limits set, as by default (a tenant limit and a per-topic limit): Publish
// and Done, one tenant, topics rotating over 10,000 as in
// `default:topics10k`. The tenant's rate is raised so that the loop is not
// refused: the rule is still checked on every call.
func BenchmarkIngressPublish(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Ingress.PublishQPS = 1e8
	g := mustNew(b, cfg, Options{})
	topics := make([]string, 10_000)
	for i := range topics {
		topics[i] = fmt.Sprintf("t-%d", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p, blk := g.Publish("tenant", topics[i%len(topics)])
		if blk != nil {
			b.Fatal(blk)
		}
		p.Done(nil)
	}
}

// BenchmarkBreakerDo is layer 4's cost around one successful dependency
// call (the call itself does nothing), default configuration.
func BenchmarkBreakerDo(b *testing.B) {
	g := mustNew(b, DefaultConfig(), Options{})
	br := g.Breaker("redis")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Do(ctx, "append", succeeding); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAdmit is layer 2's cost per stream, default configuration (the
// connect rate with its warm-up, the stream caps): Admit, Live at the end
// of the handshake, Done when the stream ends. The connect rate is raised
// so that the loop is not refused: the rule is still checked on every call.
func BenchmarkAdmit(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Admission.ConnectRate = 1e9
	g := mustNew(b, cfg, Options{})
	b.ReportAllocs()
	for b.Loop() {
		s, blk := g.Admit("10.0.0.1")
		if blk != nil {
			b.Fatal(blk)
		}
		s.Live()
		s.Done()
	}
}
