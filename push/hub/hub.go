package hub

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/sse"
)

// Config configures a Hub. Zero values mean the documented defaults.
type Config struct {
	// Store is the local origin's store: its announcements feed the hub and
	// it fills gaps of that origin's streams.
	Store push.Store
	// Remotes are the stores of other origin regions (read-only replicas in
	// a multi-region deployment), fed and gap-filled like Store. Each must
	// have a distinct Origin.
	Remotes []push.Store
	// Shards is the number of topic shards; zero means 64.
	Shards int
	// FillTimeout bounds one resync read; zero means 2s.
	FillTimeout time.Duration
	// FillLimit caps the events one resync reads per stream; a larger gap is
	// left to the subscribers (each fills from its own position). Zero means 10000.
	FillLimit int
	// RecentEvents is the number of last events kept per stream with local
	// subscribers, served to resuming clients while the store is
	// unreachable; zero means 64, negative disables the cache.
	RecentEvents int
	// RecentBytes bounds the cache across all streams; zero means 32 MiB.
	RecentBytes int64
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now stamps each dispatch (Delivery.At); nil means time.Now. Tests
	// set it to play a node whose streams run late or whose connections
	// stall (ADR 0034).
	Now func() time.Time
}

// Stats are cumulative counters.
type Stats struct {
	Dispatched  uint64 // deliveries enqueued on subscriber queues
	SlowCutoffs uint64 // subscribers cut off because their queue overflowed
	GapsFilled  uint64 // events read from the store by resyncs to fill announcement gaps
	Gaps        uint64 // announcement jumps seen by Deliver (left to subscribers, then resynced)
	Duplicates  uint64 // announcements dropped as already dispatched
	Resyncs     uint64 // resync passes run
}

// Hub is a node's topic → local subscribers fan-out. See the package doc.
type Hub struct {
	cfg    Config
	log    *slog.Logger
	stores map[string]push.Store // by origin
	// origins lists the stores' origins, the local one first: a topic's
	// per-origin state is a slice in this order (topicState.streams).
	origins   []string
	listeners []push.Listener // one per store
	seed      maphash.Seed
	shards    []shard

	resync chan struct{} // capacity 1
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	closed atomic.Bool

	dispatched, slow, filled, gaps, dups, resyncs atomic.Uint64
	// resyncAsked counts Resync calls; resyncDone is the count the last
	// resync pass that read every store completed began after. They differ
	// while announcements may have been lost and not yet made up for
	// (Heads).
	resyncAsked, resyncDone atomic.Uint64
	budget                  recentBudget

	waker waker
	lists sync.Pool // of *wakeList, for dispatches
}

type shard struct {
	mu     sync.Mutex
	topics map[string]*topicState
	// watchMu serialises Watch/Unwatch decisions for the shard's topics so an
	// Unwatch of a topic that emptied cannot undo a newer Watch.
	watchMu sync.Mutex
}

type topicState struct {
	subs map[*Subscriber]struct{}
	// streams is the state of the topic's stream of each origin, in
	// Hub.origins order. A slice indexed by origin rather than maps keyed
	// by it: a node watches as many topics as its streams do (10,000 in
	// issue 20's topics10k), and two small maps per topic (last position,
	// recent events) cost ~0.7 KiB before they held anything
	// (docs/benchmarks.md, "Issue 20 item 4 memory, session 12").
	streams []streamState
	// one backs streams for a hub with a single store (the default), in
	// the same allocation as the topic's state.
	one [1]streamState
	// ready is closed when the topic's Watch finished; err is its result.
	ready chan struct{}
	err   error
}

// streamState is one (topic, origin) stream as the hub tracks it.
type streamState struct {
	// last is the last dispatched position, valid when seen.
	last push.Position
	seen bool
	// recent caches the stream's last events (see recent.go).
	recent recent
}

// newTopicState returns a topic's state for the hub's origins.
func (h *Hub) newTopicState() *topicState {
	ts := &topicState{subs: make(map[*Subscriber]struct{}, 1), ready: make(chan struct{})}
	if len(h.origins) == 1 {
		ts.streams = ts.one[:]
	} else {
		ts.streams = make([]streamState, len(h.origins))
	}
	return ts
}

// stream returns the state of the topic's stream of origin, nil for an
// origin the hub has no store of (nothing of it is tracked or delivered:
// no stream's cursor holds such an origin).
func (h *Hub) stream(ts *topicState, origin string) *streamState {
	for i, o := range h.origins {
		if o == origin {
			return &ts.streams[i]
		}
	}
	return nil
}

// last returns the topic's last dispatched position of origin.
func (h *Hub) last(ts *topicState, origin string) (push.Position, bool) {
	if st := h.stream(ts, origin); st != nil && st.seen {
		return st.last, true
	}
	return push.Position{}, false
}

// New builds a hub and starts listening to cfg.Store.
func New(cfg Config) (*Hub, error) {
	if cfg.Store == nil {
		return nil, errors.New("hub: Store is required")
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 64
	}
	if cfg.FillTimeout <= 0 {
		cfg.FillTimeout = 2 * time.Second
	}
	if cfg.FillLimit <= 0 {
		cfg.FillLimit = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RecentEvents == 0 {
		cfg.RecentEvents = 64
	}
	if cfg.RecentBytes <= 0 {
		cfg.RecentBytes = 32 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Hub{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "hub"),
		stores:  map[string]push.Store{cfg.Store.Origin(): cfg.Store},
		origins: []string{cfg.Store.Origin()},
		seed:    maphash.MakeSeed(),
		shards:  make([]shard, cfg.Shards),
		resync:  make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	h.budget.limit = cfg.RecentBytes
	h.lists.New = func() any { return new(wakeList) }
	h.waker.init()
	for i := range h.shards {
		h.shards[i].topics = make(map[string]*topicState)
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.waker.run(h.stop)
	}()
	for _, r := range cfg.Remotes {
		if r == nil {
			return nil, errors.New("hub: nil remote store")
		}
		if _, dup := h.stores[r.Origin()]; dup {
			return nil, fmt.Errorf("hub: two stores for origin %q", r.Origin())
		}
		h.stores[r.Origin()] = r
		h.origins = append(h.origins, r.Origin())
	}
	for _, st := range append([]push.Store{cfg.Store}, cfg.Remotes...) {
		l, err := st.Listen(h)
		if err != nil {
			for _, l := range h.listeners {
				_ = l.Close()
			}
			close(h.stop)
			h.wg.Wait()
			return nil, fmt.Errorf("hub: listen to %s: %w", st.Origin(), err)
		}
		h.listeners = append(h.listeners, l)
	}
	h.wg.Add(1)
	go h.resyncLoop()
	return h, nil
}

func (h *Hub) shard(topic string) *shard {
	return &h.shards[maphash.String(h.seed, topic)%uint64(len(h.shards))]
}

// Stats returns the cumulative counters.
func (h *Hub) Stats() Stats {
	return Stats{
		Dispatched:  h.dispatched.Load(),
		SlowCutoffs: h.slow.Load(),
		GapsFilled:  h.filled.Load(),
		Gaps:        h.gaps.Load(),
		Duplicates:  h.dups.Load(),
		Resyncs:     h.resyncs.Load(),
	}
}

// Subscribe registers sub for its topics. When it returns nil, every event
// appended from now on reaches sub's queue (or sub is cut off); the caller
// then reads history from its own position to close the seam, dropping
// queued events it already has. On error sub is not registered.
func (h *Hub) Subscribe(ctx context.Context, sub *Subscriber) error {
	if h.closed.Load() {
		return push.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, t := range sub.topics {
		if err := h.subscribeTopic(ctx, sub, t); err != nil {
			h.unsubscribeTopics(sub, sub.topics[:i+1])
			return err
		}
	}
	return nil
}

func (h *Hub) subscribeTopic(ctx context.Context, sub *Subscriber, topic string) error {
	sh := h.shard(topic)
	sh.mu.Lock()
	ts := sh.topics[topic]
	fresh := ts == nil
	if fresh {
		ts = h.newTopicState()
		sh.topics[topic] = ts
	}
	ts.subs[sub] = struct{}{}
	sub.fanOut = max(sub.fanOut, len(ts.subs))
	sh.mu.Unlock()

	if fresh {
		ts.err = h.watch(ctx, sh, topic, ts)
		close(ts.ready)
	}
	select {
	case <-ts.ready:
	case <-ctx.Done():
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if ts.err != nil {
		return ts.err
	}
	// Where the hub stands now that sub is registered (and, for a fresh
	// topic, the watch has adopted the store's head): a later snapshot than
	// the registration itself, so at least as far (Seen).
	// An origin with no position: nothing dispatched since the watch began,
	// and the store held no stream of it then (Seen: the zero position).
	sh.mu.Lock()
	for i, origin := range h.origins {
		sub.seen = append(sub.seen, seenPosition{topic: topic, origin: origin, pos: ts.streams[i].last})
	}
	sh.mu.Unlock()
	return nil
}

// watch starts announcements for topic and records the stream's position at
// that moment, so later announcement gaps are detectable.
func (h *Hub) watch(ctx context.Context, sh *shard, topic string, ts *topicState) error {
	sh.watchMu.Lock()
	// A fresh state may have taken announcements from a watch that was
	// being undone (its previous last subscriber leaving); the Unwatch has
	// landed now (watchMu), so forget that position: the first announcement
	// after Watch, or the head from Info below, starts the tracking.
	sh.mu.Lock()
	for i := range ts.streams {
		ts.streams[i].last, ts.streams[i].seen = push.Position{}, false
	}
	sh.mu.Unlock()
	var err error
	for _, l := range h.listeners {
		if err = l.Watch(ctx, topic); err != nil {
			break
		}
	}
	sh.watchMu.Unlock()
	if err != nil {
		sh.mu.Lock()
		if sh.topics[topic] == ts {
			delete(sh.topics, topic) // the next subscriber retries
		}
		sh.mu.Unlock()
		return fmt.Errorf("watch %q: %w", topic, err)
	}
	var infos []push.StreamInfo
	for _, st := range h.stores {
		in, err := st.Info(ctx, []string{topic})
		if err != nil {
			return fmt.Errorf("watch %q: %w", topic, err)
		}
		infos = append(infos, in...)
	}
	// Adopt the head unless an announcement already moved past it. Moving
	// forward is safe: nobody subscribed through this fresh state has
	// returned from Subscribe yet, and each reads the store after it does.
	sh.mu.Lock()
	for _, in := range infos {
		st := h.stream(ts, in.Origin)
		if st != nil && in.Epoch != "" && (!st.seen || (st.last.Epoch == in.Epoch && in.Last > st.last.Offset)) {
			st.last, st.seen = push.Position{Epoch: in.Epoch, Offset: in.Last}, true
		}
	}
	sh.mu.Unlock()
	return nil
}

// Unsubscribe removes sub from every topic. It is idempotent.
func (h *Hub) Unsubscribe(sub *Subscriber) { h.unsubscribeTopics(sub, sub.topics) }

func (h *Hub) unsubscribeTopics(sub *Subscriber, topics []string) {
	for _, t := range topics {
		sh := h.shard(t)
		sh.mu.Lock()
		ts := sh.topics[t]
		empty := false
		if ts != nil {
			delete(ts.subs, sub)
			if len(ts.subs) == 0 {
				for i := range ts.streams {
					ts.streams[i].recent.reset(&h.budget)
				}
				delete(sh.topics, t)
				empty = true
			}
		}
		sh.mu.Unlock()
		if empty && !h.closed.Load() {
			sh.watchMu.Lock()
			sh.mu.Lock()
			_, again := sh.topics[t]
			sh.mu.Unlock()
			if !again {
				for _, l := range h.listeners {
					l.Unwatch(t)
				}
			}
			sh.watchMu.Unlock()
		}
	}
}

// Deliver implements push.Sink.
func (h *Hub) Deliver(ev *push.Event) {
	sh := h.shard(ev.Topic)
	sh.mu.Lock()
	ts := sh.topics[ev.Topic]
	if ts == nil {
		sh.mu.Unlock()
		return
	}
	last, seen := h.last(ts, ev.Origin)
	gap := seen && last.Epoch == ev.Epoch && ev.Offset > last.Offset+1
	w := h.lists.Get().(*wakeList)
	h.dispatchLocked(ts, ev, w)
	sh.mu.Unlock()
	h.waker.wake(w)
	h.lists.Put(w)
	if gap {
		// Announcements were lost. Deliver runs on the store's announcing
		// goroutine and must not block (memstore even holds the topic's
		// lock), so it does not read the store: each subscriber fills the
		// jump from its own position, and a resync re-aligns the hub.
		h.gaps.Add(1)
		h.Resync()
	}
}

// dispatchLocked enqueues ev on every subscriber of ts unless it was already
// dispatched. The shard lock is held.
func (h *Hub) dispatchLocked(ts *topicState, ev *push.Event, w *wakeList) {
	st := h.stream(ts, ev.Origin)
	if st == nil {
		return
	}
	if st.seen && st.last.Epoch == ev.Epoch && ev.Offset <= st.last.Offset {
		h.dups.Add(1)
		return
	}
	st.last, st.seen = push.Position{Epoch: ev.Epoch, Offset: ev.Offset}, true
	if h.cfg.RecentEvents > 0 {
		st.recent.add(ev, h.cfg.RecentEvents, &h.budget)
	}
	d := &Delivery{Event: ev, Body: sse.AppendBody(make([]byte, 0, len(ev.Data)+len(ev.Type)+24), ev.Type, ev.Data), At: h.cfg.Now()}
	for s := range ts.subs {
		switch s.enqueue(d) {
		case enqueuedWake:
			w.subs = append(w.subs, s)
			fallthrough
		case enqueued:
			h.dispatched.Add(1)
		case cutOff:
			h.slow.Add(1)
			delete(ts.subs, s) // its connection unsubscribes the other topics
		case wasClosed:
			delete(ts.subs, s)
		}
	}
}

// read returns events of (topic, origin) in (after, upto], bounded by
// FillLimit and FillTimeout; on error it returns what it has (subscribers
// fill the rest).
func (h *Hub) read(topic, origin string, after, upto uint64) []push.Event {
	st := h.stores[origin]
	if st == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.FillTimeout)
	defer cancel()
	var out []push.Event
	for after < upto && len(out) < h.cfg.FillLimit {
		n := min(int(upto-after), h.cfg.FillLimit-len(out), 1000)
		evs, _, err := st.Read(ctx, topic, after, n)
		if err != nil {
			h.log.Warn("gap fill failed", "topic", topic, "after", after, "err", err)
			return out
		}
		if len(evs) == 0 {
			return out
		}
		for _, e := range evs {
			if e.Offset > upto {
				return out
			}
			out = append(out, e)
			after = e.Offset
		}
	}
	return out
}

// Resync implements push.Sink: it schedules a comparison of every watched
// stream's position with the store. It never blocks.
func (h *Hub) Resync() {
	h.resyncAsked.Add(1)
	select {
	case h.resync <- struct{}{}:
	default:
	}
}

func (h *Hub) resyncLoop() {
	defer h.wg.Done()
	for {
		select {
		case <-h.stop:
			return
		case <-h.resync:
			h.resyncOnce()
		}
	}
}

func (h *Hub) resyncOnce() {
	h.resyncs.Add(1)
	asked, complete := h.resyncAsked.Load(), true
	defer func() {
		if complete {
			h.resyncDone.Store(asked)
		}
	}()
	var topics []string
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for t := range sh.topics {
			topics = append(topics, t)
		}
		sh.mu.Unlock()
	}
	for len(topics) > 0 {
		batch := topics[:min(len(topics), 500)]
		topics = topics[len(batch):]
		for origin, st := range h.stores {
			ctx, cancel := context.WithTimeout(context.Background(), h.cfg.FillTimeout)
			infos, err := st.Info(ctx, batch)
			cancel()
			if err != nil {
				h.log.Warn("resync: info failed", "origin", origin, "err", err)
				complete = false
				continue
			}
			for _, in := range infos {
				select {
				case <-h.stop:
					complete = false
					return
				default:
				}
				h.catchUp(in)
			}
		}
	}
}

// catchUp dispatches events the hub missed for one stream.
func (h *Hub) catchUp(in push.StreamInfo) {
	sh := h.shard(in.Topic)
	sh.mu.Lock()
	ts := sh.topics[in.Topic]
	if ts == nil || in.Epoch == "" {
		sh.mu.Unlock()
		return
	}
	st := h.stream(ts, in.Origin)
	if st == nil {
		sh.mu.Unlock()
		return
	}
	last := st.last
	if !st.seen {
		st.last, st.seen = push.Position{Epoch: in.Epoch, Offset: in.Last}, true
		sh.mu.Unlock()
		return
	}
	if last.Epoch != in.Epoch {
		// A new lineage whose announcements the hub missed: dispatch it
		// from its start; subscribers reset the old lineage when they see
		// the new epoch.
		last = push.Position{Epoch: in.Epoch}
		if in.EpochStart > 0 {
			last.Offset = in.EpochStart - 1
		}
		st.last = last
	}
	sh.mu.Unlock()
	if in.Last <= last.Offset {
		return
	}
	fill := h.read(in.Topic, in.Origin, last.Offset, in.Last)
	w := h.lists.Get().(*wakeList)
	sh.mu.Lock()
	if ts = sh.topics[in.Topic]; ts != nil {
		for i := range fill {
			fill[i].Epoch = in.Epoch
			h.filled.Add(1)
			h.dispatchLocked(ts, &fill[i], w)
		}
	}
	sh.mu.Unlock()
	h.waker.wake(w)
	h.lists.Put(w)
}

// Close stops the hub and cuts off every subscriber with ReasonShutdown.
func (h *Hub) Close() error {
	var err error
	h.once.Do(func() {
		h.closed.Store(true)
		close(h.stop)
		for _, l := range h.listeners {
			err = errors.Join(err, l.Close())
		}
		h.wg.Wait()
		for i := range h.shards {
			sh := &h.shards[i]
			sh.mu.Lock()
			for _, ts := range sh.topics {
				for s := range ts.subs {
					s.Close(ReasonShutdown)
				}
			}
			clear(sh.topics)
			sh.mu.Unlock()
		}
	})
	return err
}
