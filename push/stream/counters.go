package stream

import "sync/atomic"

// Counters are a node's cumulative stream counters, shared by its streams.
type Counters struct {
	Resets     atomic.Uint64 // herald.reset events sent
	Replayed   atomic.Uint64 // events written from history
	Delivered  atomic.Uint64 // events written in total
	LagCutoffs atomic.Uint64 // streams ended because their writes stalled past MaxLag while events waited (ADR 0034)
	SlowEnded  atomic.Uint64 // streams that ended as slow, for any reason
	Writes     atomic.Uint64 // live writes that carried queued events
	Holds      atomic.Uint64 // writes held back by coalescing
}
