package stream

import (
	"sync/atomic"
	"time"
)

// Overload tells whether the node is short of CPU, from what its
// streams' writes show (ADR 0020). A write is *behind* when its oldest
// event waited in the queue, not counting a deliberate hold, longer than
// CoalesceLate and longer than its stream's average gap between events:
// the stream's next event was due before this one went out, so at this
// pace its queue grows. A write that ends a hold is behind when it waited
// longer than CoalesceLate after the hold: streams that are being held no
// longer move in one fan-out wave, so a wait there is the node's, not the
// wave's.
//
// The node is overloaded while, over the last completed window, at least
// one write in overloadShare was behind (and the window had a few writes
// at all). A large fan-out on a node with CPU to spare spreads each
// event's writes over a few tens of milliseconds, so many writes are late
// by CoalesceLate alone; but every stream's write still goes out before
// its next event is due, so none is behind, and nothing is held.
//
// It is lock-free and has no goroutine: the write that finds the window
// over closes it (one compare-and-swap decides which). The counts of one
// window may lose or gain a few writes racing the swap; the share does not
// need them exact.
type Overload struct {
	writes, behind atomic.Uint64
	since          atomic.Int64 // window start, Unix nanoseconds
	on             atomic.Bool
}

const (
	// overloadWindow is how long one verdict is based on, and so the
	// longest the node keeps coalescing after it recovers (or writes every
	// event at once after it is overloaded) before it notices.
	overloadWindow = 500 * time.Millisecond
	// overloadShare: the node is overloaded when at least 1 write in
	// overloadShare was behind.
	overloadShare = 4
	// overloadMinWrites: a window with fewer writes says nothing (a
	// single slow write of an otherwise idle node is no overload).
	overloadMinWrites = 8
)

// note records one write made at now.
func (d *Overload) note(now time.Time, behind bool) {
	d.writes.Add(1)
	if behind {
		d.behind.Add(1)
	}
	start, t := d.since.Load(), now.UnixNano()
	if t-start < int64(overloadWindow) || !d.since.CompareAndSwap(start, t) {
		return
	}
	w, b := d.writes.Swap(0), d.behind.Swap(0)
	d.on.Store(w >= overloadMinWrites && b*overloadShare >= w)
}

// overloaded reports the verdict of the last completed window.
func (d *Overload) overloaded() bool { return d.on.Load() }

// behindBy reports whether a write whose oldest event waited wait (not
// counting a hold of heldFor) is behind, for a stream with average gap
// between events gap. See Overload.
func behindBy(wait, heldFor, gap, late time.Duration) bool {
	if heldFor > 0 {
		return wait > late
	}
	return wait > late && wait > gap
}
