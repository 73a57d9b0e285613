package push

// MaxLineage bounds the ancestors a store records per stream. A cursor
// older than the oldest recorded ancestor is treated like an unknown epoch
// (an epoch_changed reset): the record stays a few hundred bytes however
// often Redis restarts.
const MaxLineage = 16

// Fork is one ancestor in a stream's lineage: its child epoch began when
// the ancestor's head was At, so offsets 1..At of Epoch are the child's
// history too, and any event of Epoch above At no longer exists in the
// child (an RDB rollback, a failover to a replica that missed the tail).
type Fork struct {
	Epoch string `json:"epoch"`
	At    uint64 `json:"at"`
}

// SharedUpTo reports how much of epoch's history the stream's current
// lineage still holds: every offset of epoch up to upTo is the same event
// in the current epoch. For the current epoch that is its head (Last); for
// an ancestor it is the lowest fork point between it and the current epoch
// (a later fork can start below an earlier one when a snapshot rolls the
// stream back further). ok is false when epoch is not in the lineage.
func (in StreamInfo) SharedUpTo(epoch string) (upTo uint64, ok bool) {
	if epoch == "" {
		return 0, false
	}
	if epoch == in.Epoch {
		return in.Last, true
	}
	upTo = in.Last
	for _, f := range in.Lineage {
		upTo = min(upTo, f.At)
		if f.Epoch == epoch {
			return upTo, true
		}
	}
	return 0, false
}

// Descends reports whether epoch is the stream's current epoch or one of
// its recorded ancestors.
func (in StreamInfo) Descends(epoch string) bool {
	_, ok := in.SharedUpTo(epoch)
	return ok
}

// ResumeKind is what a reader positioned in some epoch does against a
// stream's current lineage.
type ResumeKind int

const (
	// ResumeContinue: the reader's position is history the current lineage
	// holds; it continues from its own offset with no reset.
	ResumeContinue ResumeKind = iota
	// ResumeRolledBack: the reader saw events (LostFrom..LostTo) that the
	// current lineage does not hold; it gets one reset naming exactly that
	// range and continues at ContinueFrom, the first offset of the lineage
	// that replaced them.
	ResumeRolledBack
	// ResumeUnknown: the reader's epoch is not in the lineage (the stream
	// was lost wholesale, or the lineage record is older than the reader's
	// epoch: a replica behind the reader, or more forks than MaxLineage).
	// The caller decides: wait for a replica, or the conservative reset.
	ResumeUnknown
)

// ResumeStep is the decision for one stream.
type ResumeStep struct {
	Kind     ResumeKind
	LostFrom uint64
	LostTo   uint64
	// ContinueFrom is the first offset the reader gets next.
	ContinueFrom uint64
}

// Resume decides where a reader that has read epoch up to offset continues
// in the stream described by in. It is pure: cursor position + lineage in,
// decision out. Retention (trimmed history) and a reader ahead of the head
// within the current epoch are the caller's business: for the current epoch
// Resume always says continue.
func Resume(in StreamInfo, epoch string, offset uint64) ResumeStep {
	if epoch == in.Epoch {
		return ResumeStep{Kind: ResumeContinue, ContinueFrom: offset + 1}
	}
	shared, ok := in.SharedUpTo(epoch)
	switch {
	case !ok:
		return ResumeStep{Kind: ResumeUnknown}
	case offset <= shared:
		return ResumeStep{Kind: ResumeContinue, ContinueFrom: offset + 1}
	default:
		return ResumeStep{Kind: ResumeRolledBack, LostFrom: shared + 1, LostTo: offset, ContinueFrom: shared + 1}
	}
}
