package hub_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/store/memstore"
)

// waitTimeout bounds every eventual truth; generous because CI machines are
// small and -race is slow.
const waitTimeout = 10 * time.Second

// spyStore is the real memstore with two test hooks on its announcement
// path; nothing of the store is replaced. It records which topics the hub
// watches, and it can drop the announcements of chosen topics: the
// push.Store contract allows lost announcements (Redis pub/sub loses them
// on reconnect), and the hub's gap fill and Resync exist for exactly that.
// memstore alone never loses one, so without the hook those paths could not
// be reached over a real store.
type spyStore struct {
	*memstore.Store

	mu      sync.Mutex
	watched map[string]bool
	watches map[string]int // successful Watch calls per topic
	drop    map[string]bool
	dropped []*push.Event // announcements swallowed by drop, in order
	// hook, when set, runs before each Watch ("watch") and Unwatch
	// ("unwatch") reaches memstore and after a Watch succeeded ("watched"),
	// on the caller's goroutine, so a test can hold a call at that point and
	// interleave others deterministically.
	hook func(op, topic string)
	// unsynced makes the listener report itself not synced
	// (push.SyncedListener), as a Redis listener does while its
	// connection is down.
	unsynced bool
}

func newSpyStore(tb testing.TB, cfg memstore.Config) *spyStore {
	tb.Helper()
	s := &spyStore{
		Store:   memstore.New(cfg),
		watched: map[string]bool{},
		watches: map[string]int{},
		drop:    map[string]bool{},
	}
	tb.Cleanup(func() { _ = s.Store.Close() })
	return s
}

var _ push.Store = (*spyStore)(nil)

func (s *spyStore) Listen(sink push.Sink) (push.Listener, error) {
	l, err := s.Store.Listen(spySink{s: s, next: sink})
	if err != nil {
		return nil, err
	}
	return spyListener{s: s, next: l}, nil
}

// Watched reports whether the hub currently watches topic.
func (s *spyStore) Watched(topic string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watched[topic]
}

// Watches returns the number of successful Watch calls for topic.
func (s *spyStore) Watches(topic string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watches[topic]
}

// Drop starts (on) or stops swallowing announcements of topic.
func (s *spyStore) Drop(topic string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop[topic] = on
}

// Dropped returns the swallowed announcements so far.
func (s *spyStore) Dropped() []*push.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*push.Event(nil), s.dropped...)
}

// SetHook installs fn as the Watch/Unwatch hook (nil removes it).
func (s *spyStore) SetHook(fn func(op, topic string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = fn
}

func (s *spyStore) runHook(op, topic string) {
	s.mu.Lock()
	fn := s.hook
	s.mu.Unlock()
	if fn != nil {
		fn(op, topic)
	}
}

// SetSynced sets what the listener's Synced reports.
func (s *spyStore) SetSynced(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unsynced = !on
}

// Info runs the hook ("info", first topic) before memstore answers.
func (s *spyStore) Info(ctx context.Context, topics []string) ([]push.StreamInfo, error) {
	if len(topics) > 0 {
		s.runHook("info", topics[0])
	}
	return s.Store.Info(ctx, topics)
}

type spyListener struct {
	s    *spyStore
	next push.Listener
}

func (l spyListener) Watch(ctx context.Context, topic string) error {
	l.s.runHook("watch", topic)
	if err := l.next.Watch(ctx, topic); err != nil {
		return err
	}
	l.s.mu.Lock()
	l.s.watched[topic] = true
	l.s.watches[topic]++
	l.s.mu.Unlock()
	l.s.runHook("watched", topic)
	return nil
}

func (l spyListener) Unwatch(topic string) {
	l.s.runHook("unwatch", topic)
	l.next.Unwatch(topic)
	l.s.mu.Lock()
	delete(l.s.watched, topic)
	l.s.mu.Unlock()
}

func (l spyListener) Synced() bool {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	return !l.s.unsynced
}

func (l spyListener) Close() error {
	err := l.next.Close()
	l.s.mu.Lock()
	clear(l.s.watched)
	l.s.mu.Unlock()
	return err
}

type spySink struct {
	s    *spyStore
	next push.Sink
}

func (k spySink) Deliver(ev *push.Event) {
	k.s.mu.Lock()
	if k.s.drop[ev.Topic] {
		k.s.dropped = append(k.s.dropped, ev)
		k.s.mu.Unlock()
		return
	}
	k.s.mu.Unlock()
	k.next.Deliver(ev)
}

func (k spySink) Resync() { k.next.Resync() }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newHub returns a hub over store, closed by t.Cleanup.
func newHub(tb testing.TB, store push.Store, shards int) *hub.Hub {
	tb.Helper()
	h, err := hub.New(hub.Config{Store: store, Shards: shards, Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// mustSubscribe registers a subscriber for topics; Unsubscribe runs at cleanup.
func mustSubscribe(tb testing.TB, h *hub.Hub, topics []string, lim hub.Limits) *hub.Subscriber {
	tb.Helper()
	sub := hub.NewSubscriber(topics, lim)
	if err := h.Subscribe(context.Background(), sub); err != nil {
		tb.Fatalf("subscribe %v: %v", topics, err)
	}
	tb.Cleanup(func() { h.Unsubscribe(sub) })
	return sub
}

// mustAppend appends one event per data value to topic.
func mustAppend(tb testing.TB, s push.Store, topic string, data ...string) []push.AppendResult {
	tb.Helper()
	drafts := make([]push.Draft, len(data))
	for i, d := range data {
		drafts[i] = push.Draft{Type: "t", Data: []byte(d)}
	}
	res, err := s.Append(context.Background(), topic, drafts)
	if err != nil {
		tb.Fatalf("append to %s: %v", topic, err)
	}
	return res
}

// waitFor polls cond until it holds, failing after waitTimeout.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// offsetsOf returns "topic:offset" of each delivery, for readable diffs.
func offsetsOf(ds []*hub.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = fmt.Sprintf("%s:%d", d.Event.Topic, d.Event.Offset)
	}
	return out
}

// resyncPassDone calls Resync and returns once a full pass that started after
// the call has finished. Stats().Resyncs counts passes as they start and the
// hub queues at most one pending pass, so: request a pass, wait until it has
// started, request another; once that second one has started the first has
// returned.
func resyncPassDone(tb testing.TB, h *hub.Hub) {
	tb.Helper()
	base := h.Stats().Resyncs
	h.Resync()
	waitFor(tb, "a resync pass to start", func() bool { return h.Stats().Resyncs > base })
	started := h.Stats().Resyncs
	h.Resync()
	waitFor(tb, "the resync pass to finish", func() bool { return h.Stats().Resyncs > started })
}
