package resilience

import "testing"

// TestAdmitAllocs pins layer 2's allocations per admitted stream (Admit,
// Live, Done): the handshake entry runs layer 2's own slot chain on a
// resource built once per Guards (newAdmissionChain), so what is left is
// the stream's own record, sentinel's entry and its exit, and the flow
// check's two (its token result and its window's bucket list). Through
// api.Entry and sentinel's global chain it was 7.
func TestAdmitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop contexts at random")
	}
	cfg := DefaultConfig()
	cfg.Admission.ConnectRate = 1e9 // checked on every call, never refusing
	g := mustNew(t, cfg, Options{})
	admit := func() {
		s, blk := g.Admit("10.0.0.1")
		if blk != nil {
			t.Fatal(blk)
		}
		s.Live()
		s.Done()
	}
	admit()
	if got := testing.AllocsPerRun(1000, admit); got > 5 {
		t.Errorf("Admit+Live+Done: %.1f allocations per stream, want ≤ 5", got)
	}
}
