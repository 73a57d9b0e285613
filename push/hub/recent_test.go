package hub

import (
	"testing"

	"github.com/heraldpush/herald/push"
)

func TestRecentKeepsContiguousTailWithinBudget(t *testing.T) {
	b := &recentBudget{limit: 1 << 20}
	var r recent
	ev := func(epoch string, off uint64) *push.Event {
		return &push.Event{Topic: "t", Origin: "o", Epoch: epoch, Offset: off, Data: []byte("x")}
	}
	for off := uint64(1); off <= 10; off++ {
		r.add(ev("e", off), 4, b)
	}
	got := r.snapshot("t", "o")
	if len(got) != 4 || got[0].Offset != 7 || got[3].Offset != 10 {
		t.Fatalf("ring holds %v, want offsets 7..10", offs(got))
	}
	// A jump or an epoch change restarts the run: the cache stays contiguous.
	r.add(ev("e", 12), 4, b)
	if got := r.snapshot("t", "o"); len(got) != 1 || got[0].Offset != 12 {
		t.Fatalf("after a jump: %v, want [12]", offs(got))
	}
	r.add(ev("f", 13), 4, b)
	if got := r.snapshot("t", "o"); len(got) != 1 || got[0].Epoch != "f" {
		t.Fatalf("after an epoch change: %v", offs(got))
	}
	// The byte budget is shared and released.
	used := b.used.Load()
	if used != int64(eventBytes(ev("f", 13))) {
		t.Fatalf("budget used %d, want one event", used)
	}
	r.reset(b)
	if b.used.Load() != 0 {
		t.Fatalf("budget used %d after reset", b.used.Load())
	}
	tiny := &recentBudget{limit: int64(eventBytes(ev("e", 1))) * 2}
	var r2 recent
	for off := uint64(1); off <= 5; off++ {
		r2.add(ev("e", off), 64, tiny)
	}
	if got := r2.snapshot("t", "o"); len(got) != 2 || got[1].Offset != 5 {
		t.Fatalf("tight budget keeps %v, want the last two", offs(got))
	}
}

func offs(evs []*push.Event) []uint64 {
	var out []uint64
	for _, e := range evs {
		out = append(out, e.Offset)
	}
	return out
}
