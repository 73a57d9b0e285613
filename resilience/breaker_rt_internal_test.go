package resilience

import (
	"testing"
	"time"

	"github.com/alibaba/sentinel-golang/api"
)

// The slow-call rule sees the response time Breaker.Do records (recordRT:
// the call's duration less what starvation excuses), not the entry's wall
// time: three entries that each last 40ms of wall time but are recorded at
// 1ms leave a 20ms slow rule closed, and three recorded at their wall time
// open it.
func TestBreakerSlowRuleSeesRecordedTime(t *testing.T) {
	for _, tc := range []struct {
		name     string
		recorded time.Duration // what recordRT is told the call took
		want     string
	}{
		{"recorded-fast", 0, StateClosed},
		{"recorded-wall", 40 * time.Millisecond, StateOpen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := mustNew(t, Config{Breaker: BreakerConfig{
				SlowRatio: 0.5, SlowThreshold: 20 * time.Millisecond, MinRequests: 3,
				Window: 5 * time.Second, RetryTimeout: time.Minute,
			}}, Options{})
			b := g.Breaker("rt")
			for range 3 {
				e, blk := api.Entry(b.res, api.WithSlotChain(g.breakerChain))
				if blk != nil {
					t.Fatalf("blocked: %v", blk)
				}
				time.Sleep(40 * time.Millisecond) // the entry's wall time
				start := time.Now()
				b.recordRT(e, start, start.Add(tc.recorded))
				e.Exit()
			}
			if s := b.State(); s != tc.want {
				t.Fatalf("state %s, want %s", s, tc.want)
			}
		})
	}
}
