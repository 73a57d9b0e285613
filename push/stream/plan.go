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
	var verified, inherited []bool
	intact := true
	if parsed != nil {
		verified, intact = verifyAgainst(cur, parsed, infos)
		if !intact {
			inherited = inheritedSlots(cur, parsed, infos)
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
		case inherited != nil && inherited[i]:
			// The client read the parent lineage up to an offset the
			// current epoch inherited: only the parent's events from the
			// epoch's start on are lost; the client continues from its own
			// position through the inherited history.
			start := lineageStart(in)
			reset(push.ResetEpochChanged, start+1, 0)
			resets[len(resets)-1].ContinueFrom = parsed.Offset(i) + 1
			cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: parsed.Offset(i)})
			upto[i] = in.Last
		case !verified[i] || (!intact && parsed.Offset(i) > in.Last && k.Origin == r.Local):
			// The client's lineage ended somewhere after its cursor; what it
			// missed there is lost. Everything written in the current epoch
			// is new to it: replay that lineage from its start.
			//
			// A local stream never moves back within an epoch, so a client
			// past its head when some stream's epoch changed read that
			// offset in another lineage, even if its 8-bit tag matched.
			reset(push.ResetEpochChanged, parsed.Offset(i)+1, 0)
			start := lineageStart(in)
			resets[len(resets)-1].ContinueFrom = start + 1
			cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: start})
			upto[i] = in.Last
		default:
			off := parsed.Offset(i)
			first := in.First
			if in.Length == 0 {
				first = in.Last + 1 // nothing retained
			}
			switch {
			case off > in.Last && k.Origin != r.Local:
				// This region's replica of the origin has not received
				// events the client already has (the origin is down or
				// far behind): the client keeps its position and gets the
				// rest when the replica catches up, or an epoch_changed
				// reset if the origin comes back without them.
				resets = append(resets, push.StreamReset{Topic: k.Topic, Origin: k.Origin, Reason: push.ResetReplicaBehind,
					LostFrom: in.Last + 1, LostTo: off, Epoch: in.Epoch, ContinueFrom: off + 1})
				cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: off})
			case off > in.Last:
				reset(push.ResetAhead, in.Last+1, off)
			case off+1 < first:
				reset(push.ResetTrimmed, off+1, first-1)
			default:
				cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: off})
				upto[i] = in.Last
			}
		}
	}
	return Decision{Resets: resets, Upto: upto}
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
	verified, _ := verifyAgainst(cur, r.Parsed, infos)
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

// inheritedSlots reports, per slot, that the client's position lies in
// history its stream's current epoch inherited from its parent epoch: the
// cursor's 32-bit check holds with the parent in place of the current epoch
// in every slot the client read below the epoch's start. nil when no slot
// qualifies or the check does not hold that way either.
func inheritedSlots(cur *push.Cursor, parsed *push.ParsedCursor, infos []push.StreamInfo) []bool {
	epochs := make([]string, cur.Len())
	inherited := make([]bool, cur.Len())
	some := false
	for _, in := range infos {
		i := cur.Index(in.Topic, in.Origin)
		if i < 0 {
			continue
		}
		epochs[i] = in.Epoch
		if off := parsed.Offset(i); in.Parent != "" && parsed.Present(i) && off > 0 && off < in.EpochStart {
			epochs[i], inherited[i], some = in.Parent, true, true
		}
	}
	if !some {
		return nil
	}
	if _, intact := parsed.VerifyLineages(epochs, nil); !intact {
		return nil
	}
	return inherited
}
