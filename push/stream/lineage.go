package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldpush/herald/push"
)

// ErrNotInReplicaLineage ends a live stream whose position is in an epoch
// the replica of a remote origin does not know (yet): the replica is
// behind the client, and a reset now would move the client back to an
// older lineage. The client resumes; the resume path waits for the replica
// or defers (ADR 0024).
var ErrNotInReplicaLineage = errors.New("position not in the replica's lineage")

// lineageCandidates returns, per slot, the epochs of its stream's lineage:
// the current epoch first, then its recorded ancestors, newest first.
func lineageCandidates(cur *push.Cursor, infos []push.StreamInfo) [][]string {
	out := make([][]string, cur.Len())
	for _, in := range infos {
		i := cur.Index(in.Topic, in.Origin)
		if i < 0 || in.Epoch == "" {
			continue
		}
		c := make([]string, 0, 1+len(in.Lineage))
		c = append(c, in.Epoch)
		for _, f := range in.Lineage {
			c = append(c, f.Epoch)
		}
		out[i] = c
	}
	return out
}

// resolveLineage finds, per slot, which epoch of its stream's lineage the
// client read it in: 0 for the current epoch, j > 0 for the ancestor
// in.Lineage[j-1], -1 for slots it has not read. nil when the cursor's
// check holds under no assignment (some epoch is in no lineage known here).
func resolveLineage(cur *push.Cursor, parsed *push.ParsedCursor, infos []push.StreamInfo) []int {
	choice, ok := parsed.ResolveLineages(lineageCandidates(cur, infos))
	if !ok {
		return nil
	}
	return choice
}

// lineageStep decides a slot the client read in an ancestor of its
// stream's current epoch (choice j > 0 from resolveLineage).
func lineageStep(in push.StreamInfo, j int, off uint64) push.ResumeStep {
	return push.Resume(in, in.Lineage[j-1].Epoch, off)
}

// unknownLineageRestart is the position (continue_from - 1) of a client
// whose epoch is in no lineage the stream records: before the first
// retained event. Replaying from the current epoch's start instead (ADR
// 0002's addendum) assumed that the client's offsets below it are the
// history the current epoch inherited, which holds only when the client's
// epoch is an ancestor; the nemesis found clients of an epoch a rollback
// had forgotten that kept events which no longer exist and never got the
// ones that replaced them.
func unknownLineageRestart(in push.StreamInfo) uint64 {
	if in.Length == 0 || in.First == 0 {
		return in.Last
	}
	return in.First - 1
}

// crossLineage handles a live event of another epoch than the stream's
// position pos in slot i. It returns drop when the event belongs to a
// lineage the stream has already left (a late announcement, a lagging
// replica's); otherwise it moves the position into the event's epoch: with
// no reset when the client's position is history the new epoch holds, with
// a reset naming exactly the offsets that no longer exist when it is past
// the fork, and with the conservative reset when the client's epoch is in
// no lineage the (authoritative, local) store knows.
func (st *Stream) crossLineage(i int, pos push.Position, ev *push.Event) (drop bool, err error) {
	ctx, cancel := context.WithTimeout(st.ctx, 5*time.Second)
	infos, err := st.env.Stores[ev.Origin].Info(ctx, []string{ev.Topic})
	cancel()
	if err != nil {
		return false, err
	}
	in := infos[0]
	if in.Epoch != ev.Epoch {
		if in.Descends(ev.Epoch) {
			return true, nil // the stream has moved past the event's epoch
		}
		return false, fmt.Errorf("%v: epoch changed again", ev.Key())
	}
	step := push.Resume(in, pos.Epoch, pos.Offset)
	switch step.Kind {
	case push.ResumeContinue:
		st.cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: pos.Offset})
	case push.ResumeRolledBack:
		st.cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: step.ContinueFrom - 1})
		st.reset([]push.StreamReset{{Topic: ev.Topic, Origin: ev.Origin, Reason: push.ResetEpochChanged,
			LostFrom: step.LostFrom, LostTo: step.LostTo, Epoch: in.Epoch, ContinueFrom: step.ContinueFrom}})
	default:
		if ev.Origin != st.env.Local {
			return false, fmt.Errorf("%v: %w", ev.Key(), ErrNotInReplicaLineage)
		}
		// The lineage the client read is not recorded: what it missed
		// there is lost, and the whole retained stream is new to it.
		from := unknownLineageRestart(in)
		st.cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: from})
		st.reset([]push.StreamReset{{Topic: ev.Topic, Origin: ev.Origin, Reason: push.ResetEpochChanged,
			LostFrom: pos.Offset + 1, Epoch: in.Epoch, ContinueFrom: from + 1}})
	}
	return false, nil
}
