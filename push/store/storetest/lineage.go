package storetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/heraldpush/herald/push"
)

// Backend is a durable store whose backing server the lineage suite can
// restart. Every method blocks until the store answers again.
type Backend struct {
	// Store is the store under test (and NewStore more clients of the same
	// backend, as other nodes of a cluster would hold).
	Store    push.Store
	NewStore func(t *testing.T) push.Store
	// Snapshot records the backend's data as it is now.
	Snapshot func(t *testing.T)
	// Restart begins a new run of the backend that lost nothing.
	Restart func(t *testing.T)
	// Rollback begins a new run from the last Snapshot: everything
	// acknowledged since is lost, the lineage record included.
	Rollback func(t *testing.T)
}

// BackendFactory returns a fresh backend for one subtest.
type BackendFactory func(t *testing.T) Backend

// RunLineage checks the lineage contract (ADR 0024) of a durable store:
// every new run of the backend that is appended to begins a new epoch whose
// lineage records the epoch it forked from and the head it found; a reader
// of an ancestor at or below the fork point continues with no loss; a
// reader past it is told exactly which offsets no longer exist.
func RunLineage(t *testing.T, newBackend BackendFactory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newBackend BackendFactory)
	}{
		{"LosslessRestart", testLosslessRestart},
		{"Rollback", testRollback},
		{"Chain", testChain},
		{"RollbackForgetsLaterEpochs", testRollbackForgetsLaterEpochs},
		{"NewRunRace", testNewRunRace},
		{"Bounded", testLineageBounded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newBackend) })
	}
}

func appendSeq(t *testing.T, s push.Store, topic string, from, n int) []push.AppendResult {
	t.Helper()
	var out []push.AppendResult
	for i := from; i < from+n; i++ {
		out = append(out, mustAppend(t, s, topic, push.Draft{Type: "e", Data: fmt.Appendf(nil, "%s-%d", topic, i)})...)
	}
	return out
}

func wantStep(t *testing.T, in push.StreamInfo, epoch string, off uint64, want push.ResumeStep) {
	t.Helper()
	if got := push.Resume(in, epoch, off); got != want {
		t.Fatalf("Resume(%s@%d) against %s %+v = %+v, want %+v", epoch, off, in.Epoch, in.Lineage, got, want)
	}
}

func testLosslessRestart(t *testing.T, newBackend BackendFactory) {
	b := newBackend(t)
	res := appendSeq(t, b.Store, "lossless", 1, 3)
	old := res[0].Epoch
	b.Restart(t)
	// Nothing was written in a new epoch yet: readers see the old one.
	in := mustInfo(t, b.Store, "lossless")[0]
	if in.Epoch != old || in.Last != 3 {
		t.Fatalf("after a restart, before any append: %+v, want epoch %s last 3", in, old)
	}
	r4 := appendSeq(t, b.Store, "lossless", 4, 1)[0]
	if r4.Epoch == old || r4.Offset != 4 {
		t.Fatalf("first append after the restart: %+v, want a new epoch at offset 4", r4)
	}
	in = mustInfo(t, b.Store, "lossless")[0]
	if in.Epoch != r4.Epoch || in.EpochStart != 4 || len(in.Lineage) != 1 || in.Lineage[0] != (push.Fork{Epoch: old, At: 3}) || in.Parent != old {
		t.Fatalf("lineage after the restart: %+v, want [%s@3]", in, old)
	}
	for off := uint64(0); off <= 3; off++ {
		wantStep(t, in, old, off, push.ResumeStep{Kind: push.ResumeContinue, ContinueFrom: off + 1})
	}
	evs, _, err := b.Store.Read(ctxFor(t), "lossless", 2, 10)
	if err != nil || len(evs) != 2 || string(evs[0].Data) != "lossless-3" || string(evs[1].Data) != "lossless-4" {
		t.Fatalf("read across the fork: %v %v", evs, err)
	}
}

func testRollback(t *testing.T, newBackend BackendFactory) {
	b := newBackend(t)
	old := appendSeq(t, b.Store, "rb", 1, 5)[0].Epoch
	keep := appendSeq(t, b.Store, "keep", 1, 2)[0].Epoch
	b.Snapshot(t)
	appendSeq(t, b.Store, "rb", 6, 3) // acknowledged, lost below
	b.Rollback(t)
	in := mustInfo(t, b.Store, "rb")[0]
	if in.Epoch != old || in.Last != 5 {
		t.Fatalf("after the rollback, before any append: %+v, want %s last 5", in, old)
	}
	r := appendSeq(t, b.Store, "rb", 100, 2)
	if r[0].Epoch == old || r[0].Offset != 6 {
		t.Fatalf("first append after the rollback: %+v", r[0])
	}
	in = mustInfo(t, b.Store, "rb")[0]
	if len(in.Lineage) != 1 || in.Lineage[0] != (push.Fork{Epoch: old, At: 5}) || in.EpochStart != 6 {
		t.Fatalf("lineage after the rollback: %+v", in)
	}
	wantStep(t, in, old, 5, push.ResumeStep{Kind: push.ResumeContinue, ContinueFrom: 6})
	wantStep(t, in, old, 8, push.ResumeStep{Kind: push.ResumeRolledBack, LostFrom: 6, LostTo: 8, ContinueFrom: 6})
	wantStep(t, in, old, 6, push.ResumeStep{Kind: push.ResumeRolledBack, LostFrom: 6, LostTo: 6, ContinueFrom: 6})
	// A stream that lost nothing and is not written keeps its epoch.
	if k := mustInfo(t, b.Store, "keep")[0]; k.Epoch != keep || k.Last != 2 {
		t.Fatalf("untouched stream after the rollback: %+v", k)
	}
}

func testChain(t *testing.T, newBackend BackendFactory) {
	b := newBackend(t)
	e1 := appendSeq(t, b.Store, "chain", 1, 4)[0].Epoch
	b.Snapshot(t)
	b.Restart(t)
	e2 := appendSeq(t, b.Store, "chain", 5, 3)[0].Epoch // 5..7, fork e1@4
	b.Snapshot(t)
	b.Restart(t)
	e3 := appendSeq(t, b.Store, "chain", 8, 1)[0].Epoch // fork e2@7
	in := mustInfo(t, b.Store, "chain")[0]
	want := []push.Fork{{Epoch: e2, At: 7}, {Epoch: e1, At: 4}}
	if in.Epoch != e3 || fmt.Sprint(in.Lineage) != fmt.Sprint(want) {
		t.Fatalf("chain: epoch %s lineage %+v, want %s %+v", in.Epoch, in.Lineage, e3, want)
	}
	wantStep(t, in, e1, 4, push.ResumeStep{Kind: push.ResumeContinue, ContinueFrom: 5})
	wantStep(t, in, e2, 7, push.ResumeStep{Kind: push.ResumeContinue, ContinueFrom: 8})
	// Roll back to e2@7's snapshot, which holds the lineage [e1@4]; the
	// next epoch forks from e2 at 7 again and e3 is forgotten.
	appendSeq(t, b.Store, "chain", 9, 2) // e3: 9..10, lost
	b.Rollback(t)
	e4 := appendSeq(t, b.Store, "chain", 20, 1)[0].Epoch
	in = mustInfo(t, b.Store, "chain")[0]
	want = []push.Fork{{Epoch: e2, At: 7}, {Epoch: e1, At: 4}}
	if in.Epoch != e4 || fmt.Sprint(in.Lineage) != fmt.Sprint(want) {
		t.Fatalf("after rolling back over e3: lineage %+v, want %+v", in.Lineage, want)
	}
	wantStep(t, in, e3, 9, push.ResumeStep{Kind: push.ResumeUnknown})
	wantStep(t, in, e1, 3, push.ResumeStep{Kind: push.ResumeContinue, ContinueFrom: 4})
}

// A snapshot rolls the lineage record back with the data: an epoch begun
// after the snapshot is in no lineage afterwards, and a reader of it is
// not told that it continues (the caller resets it conservatively).
func testRollbackForgetsLaterEpochs(t *testing.T, newBackend BackendFactory) {
	b := newBackend(t)
	e1 := appendSeq(t, b.Store, "forget", 1, 3)[0].Epoch
	b.Snapshot(t)
	b.Restart(t)
	e2 := appendSeq(t, b.Store, "forget", 4, 2)[0].Epoch // fork e1@3, lost below
	b.Rollback(t)
	e3 := appendSeq(t, b.Store, "forget", 10, 1)[0].Epoch
	in := mustInfo(t, b.Store, "forget")[0]
	if e3 == e2 || e3 == e1 || len(in.Lineage) != 1 || in.Lineage[0] != (push.Fork{Epoch: e1, At: 3}) {
		t.Fatalf("after the rollback: %s %+v", e3, in.Lineage)
	}
	wantStep(t, in, e2, 5, push.ResumeStep{Kind: push.ResumeUnknown})
	wantStep(t, in, e1, 3, push.ResumeStep{Kind: push.ResumeContinue, ContinueFrom: 4})
}

// Publishes that reach a restarted backend before any node has noticed the
// restart, from several nodes at once: the first append begins the new
// epoch atomically; all of them land in it, contiguous, under one fork.
func testNewRunRace(t *testing.T, newBackend BackendFactory) {
	b := newBackend(t)
	stores := []push.Store{b.Store, b.NewStore(t), b.NewStore(t)}
	e1 := appendSeq(t, b.Store, "race", 1, 4)[0].Epoch
	b.Snapshot(t)
	appendSeq(t, stores[1], "race", 5, 2) // lost below
	b.Rollback(t)
	var (
		mu   sync.Mutex
		got  = map[uint64]string{}
		wg   sync.WaitGroup
		errs = make(chan error, 30)
	)
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				r, err := s.Append(ctxFor(t), "race", []push.Draft{{Type: "e", Data: fmt.Appendf(nil, "n%d-%d", i, j)}})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, dup := got[r[0].Offset]; dup {
					errs <- fmt.Errorf("offset %d handed out twice (%s, %s)", r[0].Offset, prev, r[0].Epoch)
				}
				got[r[0].Offset] = r[0].Epoch
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	in := mustInfo(t, b.Store, "race")[0]
	for off := uint64(5); off <= 34; off++ {
		if got[off] != in.Epoch {
			t.Fatalf("offset %d in epoch %q, stream epoch %s (all: %v)", off, got[off], in.Epoch, got)
		}
	}
	if len(in.Lineage) != 1 || in.Lineage[0] != (push.Fork{Epoch: e1, At: 4}) {
		t.Fatalf("lineage after racing appends: %+v, want one fork %s@4", in.Lineage, e1)
	}
}

func testLineageBounded(t *testing.T, newBackend BackendFactory) {
	b := newBackend(t)
	var epochs []string
	for i := range push.MaxLineage + 2 {
		epochs = append(epochs, appendSeq(t, b.Store, "bound", i+1, 1)[0].Epoch)
		b.Snapshot(t)
		b.Restart(t)
	}
	in := mustInfo(t, b.Store, "bound")[0]
	if len(in.Lineage) != push.MaxLineage {
		t.Fatalf("lineage of %d entries after %d restarts, want the bound %d", len(in.Lineage), len(epochs), push.MaxLineage)
	}
	last := epochs[len(epochs)-1]
	if in.Epoch != last || in.Lineage[0].Epoch != epochs[len(epochs)-2] {
		t.Fatalf("newest entries: %s %+v", in.Epoch, in.Lineage[:2])
	}
	wantStep(t, in, epochs[0], 1, push.ResumeStep{Kind: push.ResumeUnknown})
	wantStep(t, in, epochs[2], 3, push.ResumeStep{Kind: push.ResumeContinue, ContinueFrom: 4})
}
