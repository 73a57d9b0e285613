package push

import (
	"slices"
	"testing"
)

func TestResolveLineages(t *testing.T) {
	topics, origins := []string{"a", "b", "c"}, []string{"eu"}
	c, err := NewCursor(topics, origins)
	if err != nil {
		t.Fatal(err)
	}
	// The client read a in e1 (since forked twice), b in f1 (since forked
	// once) and nothing of c.
	c.SetAt(c.Index("a", "eu"), Position{Epoch: "e1", Offset: 4})
	c.SetAt(c.Index("b", "eu"), Position{Epoch: "f1", Offset: 9})
	parsed, err := ParseCursor(c.String(), topics, origins)
	if err != nil {
		t.Fatal(err)
	}
	ia, ib, ic := c.Index("a", "eu"), c.Index("b", "eu"), c.Index("c", "eu")
	cands := make([][]string, 3)
	cands[ia] = []string{"e3", "e2", "e1"}
	cands[ib] = []string{"f2", "f1"}
	cands[ic] = []string{"g1"}
	choice, ok := parsed.ResolveLineages(cands)
	if !ok {
		t.Fatal("lineage not resolved")
	}
	want := make([]int, 3)
	want[ia], want[ib], want[ic] = 2, 1, -1
	if !slices.Equal(choice, want) {
		t.Fatalf("choice %v, want %v", choice, want)
	}
	// Current epochs: all zeros.
	cands[ia], cands[ib] = []string{"e1"}, []string{"f1", "f0"}
	if choice, ok = parsed.ResolveLineages(cands); !ok || choice[ia] != 0 || choice[ib] != 0 {
		t.Fatalf("current epochs: %v %v", choice, ok)
	}
	// An epoch in no lineage: unresolved.
	cands[ib] = []string{"f2", "f9"}
	if _, ok = parsed.ResolveLineages(cands); ok {
		t.Fatal("resolved a cursor whose epoch of b is in no candidate")
	}
	// A never-written stream for a read slot: unresolved.
	cands[ib] = nil
	if _, ok = parsed.ResolveLineages(cands); ok {
		t.Fatal("resolved against a stream with no lineage")
	}
}
