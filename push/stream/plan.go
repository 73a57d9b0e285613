package stream

import (
	"github.com/heraldpush/herald/push"
)

// Resume is what a client asked for when it opened a stream.
type Resume struct {
	// Parsed is the client's cursor; nil when it gave none (or Discard).
	Parsed *push.ParsedCursor
	// Discard is why the client's cursor is not used (a reset reason:
	// push.ResetForeignCursor, push.ResetInvalidCursor), or "".
	Discard string
	// From is where a stream without a position starts: "" or "latest"
	// (the head), "earliest" (the whole retained history).
	From string
	// Local is this region's origin: its streams never lag a replica.
	Local string
}

// Decision is a resume plan: the streams to reset and, per cursor slot,
// the offset to replay up to (0: nothing to replay). The cursor's slots
// hold the positions the stream starts from.
type Decision struct {
	Resets []push.StreamReset
	Upto   []uint64
}

// Replays reports whether any slot of cur has history to replay.
func (d Decision) Replays(cur *push.Cursor) bool {
	for i, u := range d.Upto {
		if u > cur.At(i).Offset {
			return true
		}
	}
	return false
}

// lineageStart returns the offset before the first event of the stream's
// current epoch (0 for a stream never written).
func lineageStart(in push.StreamInfo) uint64 {
	if in.EpochStart == 0 {
		return 0
	}
	return in.EpochStart - 1
}

// Plan decides, per stream, where the client starts: it sets each slot of
// cur and returns the streams to reset and the offsets to replay up to. It
// reads nothing: infos describe every (topic, origin) stream of cur as the
// stores hold them now.
func Plan(cur *push.Cursor, r Resume, infos []push.StreamInfo) Decision {
	parsed, discard, from := r.Parsed, r.Discard, r.From
	byKey := make(map[push.StreamKey]push.StreamInfo, len(infos))
	for _, in := range infos {
		byKey[push.StreamKey{Topic: in.Topic, Origin: in.Origin}] = in
	}
	upto := make([]uint64, cur.Len())
	var verified []bool
	var lineage []int // per slot: 0 current epoch, j > 0 its ancestor j (ADR 0024)
	intact := true
	if parsed != nil {
		verified, intact = verifyAgainst(cur, parsed, infos)
		if !intact {
			lineage = resolveLineage(cur, parsed, infos)
		}
	}
	var resets []push.StreamReset
	for i := range cur.Len() {
		k := cur.Key(i)
		in := byKey[k]
		head := push.Position{Epoch: in.Epoch, Offset: in.Last}
		reset := func(reason string, lostFrom, lostTo uint64) {
			resets = append(resets, push.StreamReset{Topic: k.Topic, Origin: k.Origin, Reason: reason,
				LostFrom: lostFrom, LostTo: lostTo, Epoch: in.Epoch, ContinueFrom: in.Last + 1})
			cur.SetAt(i, head)
		}
		switch {
		case discard == push.ResetForeignCursor:
			reset(push.ResetForeignCursor, 0, 0)
		case discard != "" && from == "earliest":
			// Nothing is known of what the client read: it asked for the
			// whole history, so it gets it, after a reset that says so.
			first := in.First
			if in.Length == 0 {
				first = in.Last + 1
			}
			resets = append(resets, push.StreamReset{Topic: k.Topic, Origin: k.Origin, Reason: discard,
				Epoch: in.Epoch, ContinueFrom: first})
			cur.SetAt(i, push.Position{Epoch: in.Epoch})
			upto[i] = in.Last
		case discard != "":
			reset(discard, 0, 0)
		case parsed == nil || !parsed.Present(i):
			if from == "earliest" {
				cur.SetAt(i, push.Position{Epoch: in.Epoch})
				upto[i] = in.Last
			} else {
				cur.SetAt(i, head)
			}
		case lineage != nil && lineage[i] > 0 &&
			lineageStep(in, lineage[i], parsed.Offset(i)).Kind == push.ResumeRolledBack:
			// The client read an ancestor epoch past the point where the
			// current lineage forked from it: exactly those offsets no
			// longer exist; the new lineage follows from the fork.
			step := lineageStep(in, lineage[i], parsed.Offset(i))
			reset(push.ResetEpochChanged, step.LostFrom, step.LostTo)
			resets[len(resets)-1].ContinueFrom = step.ContinueFrom
			cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: step.ContinueFrom - 1})
			upto[i] = in.Last
		case lineage != nil:
			// The client's position is history the current lineage holds
			// (its epoch or an ancestor at or before the fork): it resumes
			// as if nothing had changed.
			resumeSlot(cur, r, i, k, in, parsed.Offset(i), &resets, upto)
		case !verified[i] || (!intact && parsed.Offset(i) > in.Last && k.Origin == r.Local):
			// The client's epoch is in no lineage this stream records (lost
			// wholesale, or forgotten by a rollback of the record): what it
			// missed there is lost, and nothing proves that any offset it
			// read is history the current lineage shares, so the whole
			// retained stream is new to it (ADR 0024).
			//
			// A local stream never moves back within an epoch, so a client
			// past its head when some stream's epoch changed read that
			// offset in another lineage, even if its 8-bit tag matched.
			reset(push.ResetEpochChanged, parsed.Offset(i)+1, 0)
			from := unknownLineageRestart(in)
			resets[len(resets)-1].ContinueFrom = from + 1
			cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: from})
			upto[i] = in.Last
		default:
			resumeSlot(cur, r, i, k, in, parsed.Offset(i), &resets, upto)
		}
	}
	return Decision{Resets: resets, Upto: upto}
}

// resumeSlot resumes slot i at the client's offset off, which is history
// of in's current lineage, unless retention or the head says otherwise.
func resumeSlot(cur *push.Cursor, r Resume, i int, k push.StreamKey, in push.StreamInfo, off uint64, resets *[]push.StreamReset, upto []uint64) {
	first := in.First
	if in.Length == 0 {
		first = in.Last + 1 // nothing retained
	}
	reset := func(reason string, lostFrom, lostTo uint64) {
		*resets = append(*resets, push.StreamReset{Topic: k.Topic, Origin: k.Origin, Reason: reason,
			LostFrom: lostFrom, LostTo: lostTo, Epoch: in.Epoch, ContinueFrom: in.Last + 1})
		cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: in.Last})
	}
	switch {
	case off > in.Last && k.Origin != r.Local:
		// This region's replica of the origin has not received
		// events the client already has (the origin is down or
		// far behind): the client keeps its position and gets the
		// rest when the replica catches up, or an epoch_changed
		// reset if the origin comes back without them.
		*resets = append(*resets, push.StreamReset{Topic: k.Topic, Origin: k.Origin, Reason: push.ResetReplicaBehind,
			LostFrom: in.Last + 1, LostTo: off, Epoch: in.Epoch, ContinueFrom: off + 1})
		cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: off})
	case off > in.Last:
		reset(push.ResetAhead, in.Last+1, off)
	case off+1 < first:
		// Only the trimmed events are lost: the retained stream follows
		// from its first offset, so no event is skipped unnamed.
		*resets = append(*resets, push.StreamReset{Topic: k.Topic, Origin: k.Origin, Reason: push.ResetTrimmed,
			LostFrom: off + 1, LostTo: first - 1, Epoch: in.Epoch, ContinueFrom: first})
		cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: first - 1})
		upto[i] = in.Last
	default:
		cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: off})
		upto[i] = in.Last
	}
}

// Behind returns the remote origins whose replica in this region is
// behind the client's cursor, as infos show them: worth a short wait
// before Plan (see Stream.AwaitReplicas).
//
// A replica is behind the client when it lacks offsets the client has, or
// when it does not know the client's epoch: the client may come from the
// origin's primary after a restart or failover began a lineage the replica
// has not received yet. Answering that with epoch_changed would move the
// client back to the old lineage, and later forward again, replaying the
// new one from its start; so the replica gets the same short wait. (A
// replica that is current with a lineage the client never saw costs the
// wait before the reset; nothing in an epoch tells which of the two is
// older.)
func Behind(cur *push.Cursor, r Resume, infos []push.StreamInfo) map[string]bool {
	if r.Parsed == nil {
		return nil
	}
	out := Unverified(cur, r, infos)
	for _, in := range infos {
		if in.Origin == r.Local {
			continue
		}
		i := cur.Index(in.Topic, in.Origin)
		if i >= 0 && r.Parsed.Present(i) && r.Parsed.Offset(i) > in.Last {
			if out == nil {
				out = make(map[string]bool)
			}
			out[in.Origin] = true
		}
	}
	return out
}

// Unverified returns the remote origins whose epoch in infos does not
// verify against the client's cursor, for slots the client has read.
func Unverified(cur *push.Cursor, r Resume, infos []push.StreamInfo) map[string]bool {
	if r.Parsed == nil {
		return nil
	}
	verified, intact := verifyAgainst(cur, r.Parsed, infos)
	if !intact && resolveLineage(cur, r.Parsed, infos) != nil {
		return nil // every slot's epoch is in its stream's lineage
	}
	var out map[string]bool
	for i := range cur.Len() {
		k := cur.Key(i)
		if k.Origin == r.Local || !r.Parsed.Present(i) || verified[i] {
			continue
		}
		if out == nil {
			out = make(map[string]bool)
		}
		out[k.Origin] = true
	}
	return out
}

// ResumesEverySlot reports whether the client's cursor names a position
// for every slot.
func (r Resume) ResumesEverySlot() bool {
	p := r.Parsed
	if p == nil {
		return false
	}
	for i := range p.Len() {
		if !p.Present(i) {
			return false
		}
	}
	return true
}

// verifyAgainst verifies the client's cursor against the streams' current
// epochs and where those epochs begin.
func verifyAgainst(cur *push.Cursor, parsed *push.ParsedCursor, infos []push.StreamInfo) (verified []bool, intact bool) {
	epochs := make([]string, cur.Len())
	starts := make([]uint64, cur.Len())
	for _, in := range infos {
		if i := cur.Index(in.Topic, in.Origin); i >= 0 {
			epochs[i], starts[i] = in.Epoch, lineageStart(in)
		}
	}
	return parsed.VerifyLineages(epochs, starts)
}
