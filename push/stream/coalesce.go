package stream

import (
	"time"

	"github.com/heraldpush/herald/push/hub"
)

// coalescer decides when a stream's live writes are held back under load
// (ADR 0008, ADR 0020). When the node is overloaded (its streams' queues
// grow across writes: Overload), and the last write went out late (its
// oldest event waited more than CoalesceLate in the queue, not counting a
// deliberate hold), carried fewer than coalesceFew events (one syscall per
// event or so), and the stream's events are published less than half a
// window apart on average, events arriving within CoalesceWindow of that
// write wait on hold (a timer made only for streams that get there; at
// most coalesceGather average gaps, see holdWait) and go out in one write.
// An unloaded node writes every event at once, and so does a loaded one
// to streams too slow for a hold to batch.
//
// It belongs to the stream's goroutine.
type coalescer struct {
	window, lateAfter time.Duration
	overload          *Overload
	lastWrite         time.Time
	lastEvent         time.Time // publish time of the newest event written
	// gap is the stream's average time between events (publish times).
	// It starts at the window: a stream proves it is fast over several
	// events before its writes are held.
	gap     time.Duration
	late    bool
	hold    *time.Timer
	holding bool
	heldFor time.Duration
	// holds counts holds begun, for the node's stats.
	holds func()
}

func newCoalescer(window, lateAfter time.Duration, o *Overload, holds func()) coalescer {
	return coalescer{window: window, lateAfter: lateAfter, overload: o, gap: window, holds: holds}
}

// held is the channel that ends a hold, nil when not holding.
func (c *coalescer) held() <-chan time.Time {
	if c.holding {
		return c.hold.C
	}
	return nil
}

// endHold marks the hold over (its timer fired).
func (c *coalescer) endHold() { c.holding = false }

// ready is called when the queue has something (or a heartbeat's wake):
// it reports whether the write is held instead. A heartbeat's wake of a
// late stream is held like events (the queue is not looked at here: that
// would be one more lock per wake); its keep-alive, if due, follows the
// hold.
func (c *coalescer) ready() bool {
	if c.window <= 0 || !c.late {
		return false
	}
	wait := holdWait(c.window, time.Since(c.lastWrite), c.gap)
	if wait <= 0 {
		return false
	}
	c.heldFor = wait
	if c.hold == nil {
		c.hold = time.NewTimer(wait)
	} else {
		c.hold.Reset(wait)
	}
	c.holding = true
	c.holds()
	return true
}

// idle is a write with no events (a keep-alive).
func (c *coalescer) idle() { c.heldFor = 0 }

// batch records a write of batch at now: the stream's rate, whether the
// write went out late, and the node's overload verdict.
func (c *coalescer) batch(batch []*hub.Delivery, now time.Time) {
	// Late, the queue is not already batching by itself, and events come
	// at least twice per window on average (a hold then gathers more than
	// one; holding a slower stream only delays it, and so would holding a
	// slow stream's bursts).
	newest := batch[len(batch)-1].Event.Time
	if !c.lastEvent.IsZero() {
		c.gap = averageGap(c.gap, newest.Sub(c.lastEvent), len(batch))
	}
	c.lastEvent = newest
	fast := c.gap < c.window/2
	wait := now.Sub(batch[0].At) - c.heldFor
	c.late = false
	if c.window > 0 {
		c.overload.note(now, behindBy(wait, c.heldFor, c.gap, c.lateAfter))
		c.late = fast && len(batch) < coalesceFew && wait > c.lateAfter &&
			(c.lateAfter < 0 || c.overload.overloaded())
	}
	c.heldFor = 0
}

// wrote records the end of a write.
func (c *coalescer) wrote(at time.Time) { c.lastWrite = at }

// sinceWrite is the time since the last write.
func (c *coalescer) sinceWrite() time.Duration { return time.Since(c.lastWrite) }

// stop releases the hold timer.
func (c *coalescer) stop() {
	if c.hold != nil {
		c.hold.Stop()
	}
}

// averageGap folds n more events, published over span after the previous
// newest one, into avg, a moving average of the time between a stream's
// events that weighs each event 1/8. Publish times from several topics or
// origins need not be ordered: a negative span counts as no gap.
func averageGap(avg, span time.Duration, n int) time.Duration {
	g := max(span, 0) / time.Duration(max(n, 1))
	for range min(n, 16) { // after 16 events the old average weighs < 12%
		avg += (g - avg) / 8
	}
	return avg
}

// holdWait is how long a late, fast stream's next write waits: until the
// window after its last write ends, but no longer than it takes the stream
// to publish about coalesceGather events at its average gap. A stream whose
// queue already batches (events microseconds apart, as when publishers
// send batches) gathers enough in a few milliseconds; holding it for the
// whole window would only add latency to thousands of events.
func holdWait(window, sinceWrite, gap time.Duration) time.Duration {
	return min(window-sinceWrite, coalesceGather*gap)
}

// coalesceGather is how many events, at its average gap, a hold waits for.
const coalesceGather = 16

// coalesceFew: a late write of at least this many events already batches;
// holding it back would only add latency.
const coalesceFew = 4
