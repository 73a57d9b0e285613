package hub

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push"
)

// recent is one stream's last dispatched events, contiguous in offset and
// epoch, oldest first: the cache a node serves short resumes from while the
// store is unreachable (protection layer 4). Guarded by its shard's lock.
//
// It keeps what a resume needs of each event in a compact entry, not the
// *push.Event dispatched: an announced event's Epoch, Type and TraceParent
// are substrings of the whole Pub/Sub payload it was decoded from, so
// keeping the event kept the event (144 B) and the payload (~170 B for a
// 64-byte event) alive as well as its data. An entry is 72 B plus its own
// traceparent copy; the data is shared with the dispatched event (events
// are immutable once dispatched). The run's epoch is kept once, and an
// entry's type shares the previous entry's string when equal
// (docs/benchmarks.md, "Issue 20 item 4 memory, session 14").
type recent struct {
	evs   []recentEntry // ring, grown on demand up to the cache size
	epoch string        // of every entry: a run is contiguous in one epoch
	start int           // index of the oldest
	n     int
	bytes int
}

// recentEntry is one cached event (see recent).
type recentEntry struct {
	offset uint64
	ns     int64 // push.Event.Time in Unix nanoseconds, 0 for the zero time
	typ    string
	tp     string // traceparent
	data   []byte
}

// recentBudget bounds the bytes cached across a hub's streams.
type recentBudget struct {
	used  atomic.Int64
	limit int64
}

func eventBytes(ev *push.Event) int { return len(ev.Data) + len(ev.Type) + 64 }

func entryBytes(e *recentEntry) int { return len(e.data) + len(e.typ) + 64 }

// add appends ev (already deduplicated); a discontinuity restarts the run.
func (r *recent) add(ev *push.Event, size int, b *recentBudget) {
	if size <= 0 {
		return
	}
	var last *recentEntry
	if r.n > 0 {
		last = &r.evs[(r.start+r.n-1)%len(r.evs)]
		if r.epoch != ev.Epoch || ev.Offset != last.offset+1 {
			r.reset(b)
			last = nil
		}
	}
	if r.n == len(r.evs) && len(r.evs) < size {
		r.grow(size)
		if last != nil {
			last = &r.evs[r.n-1]
		}
	}
	sz := eventBytes(ev)
	for r.n > 0 && (r.n == len(r.evs) || b.used.Load()+int64(sz) > b.limit) {
		r.dropOldest(b)
	}
	if b.used.Load()+int64(sz) > b.limit {
		return // over budget even alone: not cached
	}
	e := recentEntry{offset: ev.Offset, data: ev.Data, tp: strings.Clone(ev.TraceParent)}
	if !ev.Time.IsZero() {
		e.ns = ev.Time.UnixNano()
	}
	switch {
	case last != nil && last.typ == ev.Type:
		e.typ = last.typ
	case ev.Type == push.DefaultEventType:
		e.typ = push.DefaultEventType
	default:
		e.typ = strings.Clone(ev.Type)
	}
	if r.n == 0 && r.epoch != ev.Epoch {
		r.epoch = strings.Clone(ev.Epoch)
	}
	r.evs[(r.start+r.n)%len(r.evs)] = e
	r.n++
	r.bytes += sz
	b.used.Add(int64(sz))
}

// grow enlarges the ring, oldest first at index 0, doubling up to size
// slots: a stream that sees a few events holds a few slots, not size of
// them (a watched topic each; docs/benchmarks.md, "Issue 20 item 4
// memory, session 12").
func (r *recent) grow(size int) {
	evs := make([]recentEntry, min(size, max(4, 2*len(r.evs))))
	for i := range r.n {
		evs[i] = r.evs[(r.start+i)%len(r.evs)]
	}
	r.evs, r.start = evs, 0
}

func (r *recent) dropOldest(b *recentBudget) {
	e := &r.evs[r.start]
	sz := entryBytes(e)
	*e = recentEntry{}
	r.start = (r.start + 1) % len(r.evs)
	r.n--
	r.bytes -= sz
	b.used.Add(-int64(sz))
}

func (r *recent) reset(b *recentBudget) {
	for r.n > 0 {
		r.dropOldest(b)
	}
	r.start = 0
}

// snapshot returns the cached events of (topic, origin), oldest first, as
// new events (this path runs only while a store is away).
func (r *recent) snapshot(topic, origin string) []*push.Event {
	evs := make([]push.Event, r.n)
	out := make([]*push.Event, r.n)
	for i := range r.n {
		e := &r.evs[(r.start+i)%len(r.evs)]
		ev := &evs[i]
		*ev = push.Event{Topic: topic, Origin: origin, Epoch: r.epoch, Offset: e.offset, Type: e.typ, Data: e.data, TraceParent: e.tp}
		if e.ns != 0 {
			ev.Time = time.Unix(0, e.ns)
		}
		out[i] = ev
	}
	return out
}

// Recent returns the events this hub last dispatched for (topic, origin),
// contiguous and oldest first, or ok=false when it holds none (the topic
// has no local subscribers, or caching is off). The events are shared:
// do not modify them.
func (h *Hub) Recent(topic, origin string) (evs []*push.Event, ok bool) {
	sh := h.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ts := sh.topics[topic]
	if ts == nil {
		return nil, false
	}
	st := h.stream(ts, origin)
	if st == nil || st.recent.n == 0 {
		return nil, false
	}
	return st.recent.snapshot(topic, origin), true
}

// Head returns the position of the last event this hub dispatched for
// (topic, origin), or ok=false when it knows none (the topic has no local
// subscribers, or none of that origin's events reached them since they
// subscribed). The store's head may be ahead of it by the events still
// being announced, never behind.
func (h *Hub) Head(topic, origin string) (pos push.Position, ok bool) {
	sh := h.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ts := sh.topics[topic]; ts != nil {
		pos, ok = h.last(ts, origin)
	}
	return pos, ok
}

// Heads describes the streams of topics × origins as this hub knows them:
// each one's epoch and the offset of the last event dispatched (zero
// position: none since the watch began, and the store held none then). It
// answers only when that is as good as the store's own answer for a stream
// that starts at the head: every topic is watched (its watch done), every
// listener is synced (push.SyncedListener) and no resync is pending, so
// the positions are of the stores' current lineages and at most behind
// their heads by announcements still in flight, which reach the topic's
// subscribers (and a stream registered later reads from its position).
// Otherwise ok is false and the caller asks the stores. A fresh stream on
// a watched topic then connects without a store call.
func (h *Hub) Heads(topics, origins []string) (infos []push.StreamInfo, ok bool) {
	if !h.synced() {
		return nil, false
	}
	for _, o := range origins {
		if _, known := h.stores[o]; !known {
			return nil, false
		}
	}
	infos = make([]push.StreamInfo, 0, len(topics)*len(origins))
	for _, t := range topics {
		sh := h.shard(t)
		sh.mu.Lock()
		ts := sh.topics[t]
		watched := ts != nil && ts.watched()
		if watched {
			for _, o := range origins {
				p, _ := h.last(ts, o)
				infos = append(infos, push.StreamInfo{Topic: t, Origin: o, Epoch: p.Epoch, Last: p.Offset})
			}
		}
		sh.mu.Unlock()
		if !watched {
			return nil, false
		}
	}
	// Checked again after reading: a connection that broke, or a resync
	// asked for, while the positions were read makes them suspect.
	if !h.synced() {
		return nil, false
	}
	return infos, true
}

// synced reports that every listener is synced and no resync is pending.
func (h *Hub) synced() bool {
	if h.resyncAsked.Load() != h.resyncDone.Load() {
		return false
	}
	for _, l := range h.listeners {
		if sl, ok := l.(push.SyncedListener); !ok || !sl.Synced() {
			return false
		}
	}
	return true
}

// watched reports that the topic's watch finished and succeeded. The shard
// lock is held.
func (ts *topicState) watched() bool {
	select {
	case <-ts.ready:
		return ts.err == nil
	default:
		return false
	}
}
