package hub_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/sse"
	"github.com/heraldpush/herald/push/store/memstore"
)

// Subscribers spread over topics in every shard get exactly the events of
// their own topics; unsubscribing some leaves the others untouched and
// unwatches exactly the topics nobody reads any more.
func TestSubscribeUnsubscribeAcrossShards(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 4)
	topics := make([]string, 64) // 16 per shard on average: every shard is used
	for i := range topics {
		topics[i] = fmt.Sprintf("topic-%02d", i)
	}
	// Subscriber i reads topics i, i+1, i+2 (mod 64): every topic has three
	// subscribers and every subscriber spans shards.
	subs := make([]*hub.Subscriber, len(topics))
	for i := range subs {
		subs[i] = mustSubscribe(t, h, []string{topics[i], topics[(i+1)%64], topics[(i+2)%64]}, hub.Limits{})
	}
	for _, tp := range topics {
		if !store.Watched(tp) || store.Watches(tp) != 1 {
			t.Fatalf("%s: watched=%v after %d Watch calls; want watched once", tp, store.Watched(tp), store.Watches(tp))
		}
	}
	for _, tp := range topics {
		mustAppend(t, store, tp, "one")
	}
	for i, sub := range subs {
		got := offsetsOf(sub.Take(nil))
		slices.Sort(got)
		want := []string{topics[i] + ":1", topics[(i+1)%64] + ":1", topics[(i+2)%64] + ":1"}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("subscriber %d got %v, want %v", i, got, want)
		}
	}

	// Unsubscribe the even subscribers: topic j keeps readers j-1 (odd) or
	// j-2 (odd), so every topic is still watched; odd subscribers still get
	// everything.
	for i := 0; i < len(subs); i += 2 {
		h.Unsubscribe(subs[i])
		h.Unsubscribe(subs[i]) // idempotent
	}
	for _, tp := range topics {
		mustAppend(t, store, tp, "two")
	}
	for i, sub := range subs {
		n := len(sub.Take(nil))
		switch {
		case i%2 == 0 && n != 0:
			t.Fatalf("unsubscribed subscriber %d got %d events", i, n)
		case i%2 == 1 && n != 3:
			t.Fatalf("subscriber %d got %d events, want 3", i, n)
		}
		if !store.Watched(topics[i]) {
			t.Fatalf("%s unwatched while subscriber %d still reads it", topics[i], (i+63)%64)
		}
	}

	// Unsubscribe subscribers 1, 3, ..., 61: topics 63, 0 and 1 keep reader
	// 63; every other topic has no reader left and must be unwatched.
	for i := 1; i < 63; i += 2 {
		h.Unsubscribe(subs[i])
	}
	for i, tp := range topics {
		kept := i == 63 || i == 0 || i == 1
		if store.Watched(tp) != kept {
			t.Fatalf("%s watched=%v, want %v", tp, store.Watched(tp), kept)
		}
	}
	if s := h.Stats(); s.Dispatched != 64*3+64*3/2 || s.SlowCutoffs != 0 || s.Duplicates != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// Many publishers append to many topics while many subscribers (some of
// them joining and leaving throughout) drain concurrently and a resync runs
// in a loop: every subscriber sees each topic's offsets contiguous, in
// order, without duplicates, and the long-lived ones see everything.
func TestOrderAndNoDuplicatesUnderConcurrency(t *testing.T) {
	const (
		numTopics     = 48
		numPublishers = 8
		appendsEach   = 250
		numSubs       = 40
		numChurners   = 6
	)
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 8)
	topics := make([]string, numTopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("conc-%d", i)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() []string {
		n := 1 + rng.IntN(6)
		var ts []string
		for _, i := range rng.Perm(numTopics)[:n] {
			ts = append(ts, topics[i])
		}
		return ts
	}

	stop := make(chan struct{})
	var consumers sync.WaitGroup
	type checker struct {
		sub      *hub.Subscriber
		fromOne  bool // subscribed before any append: offsets start at 1
		received atomic.Int64
	}
	// consume drains c.sub until stop or until it is cut off, checking order.
	consume := func(c *checker) {
		defer consumers.Done()
		next := map[string]uint64{}
		var batch []*hub.Delivery
		for {
			select {
			case <-stop:
				return
			case <-c.sub.Done():
				if r := c.sub.Reason(); r != hub.ReasonKicked { // churners kick themselves
					t.Errorf("subscriber %v cut off: %s", c.sub.Topics(), r)
				}
				return
			case <-c.sub.Ready():
			}
			batch = c.sub.Take(batch[:0])
			for _, d := range batch {
				ev := d.Event
				want, seen := next[ev.Topic]
				if !seen && c.fromOne {
					want, seen = 1, true
				}
				if seen && ev.Offset != want {
					t.Errorf("subscriber %v: %s offset %d, want %d", c.sub.Topics(), ev.Topic, ev.Offset, want)
					return
				}
				if !bytes.Equal(d.Body, sse.AppendBody(nil, ev.Type, ev.Data)) {
					t.Errorf("%s:%d: body %q does not encode the event", ev.Topic, ev.Offset, d.Body)
					return
				}
				next[ev.Topic] = ev.Offset + 1
				c.received.Add(1)
			}
		}
	}

	big := hub.Limits{MaxEvents: 1 << 20, MaxBytes: 1 << 30}
	checkers := make([]*checker, numSubs)
	for i := range checkers {
		checkers[i] = &checker{sub: mustSubscribe(t, h, pick(), big), fromOne: true}
		consumers.Add(1)
		go consume(checkers[i])
	}
	// Churners join and leave topics that long-lived subscribers also read,
	// so those topics stay watched throughout. (A topic whose last reader
	// leaves while another joins: TestResubscribeRaceDoesNotDeadlock.)
	churnTopics := make([][]string, numChurners)
	for i := range churnTopics {
		churnTopics[i] = checkers[i].sub.Topics()
	}

	var work sync.WaitGroup
	for p := range numPublishers {
		work.Add(1)
		go func() {
			defer work.Done()
			r := rand.New(rand.NewPCG(uint64(p), 99))
			for i := range appendsEach {
				n := 1 + r.IntN(3)
				drafts := make([]push.Draft, n)
				for j := range drafts {
					drafts[j] = push.Draft{Type: "tick", Data: fmt.Appendf(nil, "p%d-%d-%d", p, i, j)}
				}
				if _, err := store.Append(context.Background(), topics[r.IntN(numTopics)], drafts); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for _, ts := range churnTopics {
		work.Add(1)
		go func() {
			defer work.Done()
			for range 30 {
				c := &checker{sub: hub.NewSubscriber(ts, big)}
				if err := h.Subscribe(context.Background(), c.sub); err != nil {
					t.Error(err)
					return
				}
				consumers.Add(1)
				go consume(c)
				// Stay for a few events, or briefly when the topics are quiet.
				for until := time.Now().Add(20 * time.Millisecond); c.received.Load() < 3 && time.Now().Before(until); {
					runtime.Gosched()
				}
				h.Unsubscribe(c.sub)
				c.sub.Close(hub.ReasonKicked) // ends consume via Done without an error
			}
		}()
	}
	resyncDone := make(chan struct{})
	go func() {
		defer close(resyncDone)
		for {
			select {
			case <-stop:
				return
			default:
				h.Resync()
				runtime.Gosched()
			}
		}
	}()
	work.Wait()

	infos, err := store.Info(context.Background(), topics)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]int64{}
	var total int64
	for _, in := range infos {
		last[in.Topic] = int64(in.Last)
		total += int64(in.Last)
	}
	if total < numPublishers*appendsEach {
		t.Fatalf("only %d events appended", total)
	}
	for _, c := range checkers {
		var want int64
		for _, tp := range c.sub.Topics() {
			want += last[tp]
		}
		waitFor(t, fmt.Sprintf("subscriber %v to receive %d events", c.sub.Topics(), want), func() bool {
			return c.received.Load() >= want || t.Failed()
		})
		if got := c.received.Load(); got != want {
			t.Fatalf("subscriber %v received %d events, want %d", c.sub.Topics(), got, want)
		}
	}
	close(stop)
	consumers.Wait()
	<-resyncDone
	if s := h.Stats(); s.SlowCutoffs != 0 || s.Resyncs == 0 {
		t.Fatalf("stats %+v: want no slow cutoffs and some resync passes", s)
	}
}

// The body of an event is encoded once and shared by every subscriber.
func TestBodyEncodedOnceAndShared(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 0)
	a := mustSubscribe(t, h, []string{"shared"}, hub.Limits{})
	b := mustSubscribe(t, h, []string{"shared", "other"}, hub.Limits{})
	mustAppend(t, store, "shared", "line1\nline2")
	da, db := a.Take(nil), b.Take(nil)
	if len(da) != 1 || len(db) != 1 {
		t.Fatalf("got %d and %d deliveries, want 1 each", len(da), len(db))
	}
	if da[0] != db[0] {
		t.Fatal("subscribers got distinct deliveries for one event: the body was encoded per subscriber")
	}
	if want := "event: t\ndata: line1\ndata: line2\n"; string(da[0].Body) != want {
		t.Fatalf("body %q, want %q", da[0].Body, want)
	}
}

// A subscriber whose queue overflows, by events or by bytes, is cut off
// with ReasonSlow and counted once; the publisher does not wait and the
// other subscribers get everything.
func TestSlowSubscriberCutOff(t *testing.T) {
	const events = 50
	data := strings.Repeat("x", 40) // body "event: t\ndata: " + 40 + "\n" = 56 bytes
	tests := []struct {
		name     string
		limits   hub.Limits
		accepted int // events the slow queue takes before the cut
	}{
		{"events", hub.Limits{MaxEvents: 4}, 4},
		{"bytes", hub.Limits{MaxBytes: 3*56 + 55}, 3},
		{"bytes exactly full", hub.Limits{MaxBytes: 3 * 56}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newSpyStore(t, memstore.Config{})
			h := newHub(t, store, 0)
			fast := mustSubscribe(t, h, []string{"feed"}, hub.Limits{})
			slow := mustSubscribe(t, h, []string{"feed"}, tt.limits)
			bystander := mustSubscribe(t, h, []string{"feed"}, hub.Limits{})
			for range events {
				mustAppend(t, store, "feed", data)
			}
			select {
			case <-slow.Done():
			default:
				t.Fatal("slow subscriber not cut off")
			}
			if slow.Reason() != hub.ReasonSlow || slow.Len() != 0 {
				t.Fatalf("slow subscriber: reason %q, %d queued; want %q and an emptied queue", slow.Reason(), slow.Len(), hub.ReasonSlow)
			}
			for _, s := range []*hub.Subscriber{fast, bystander} {
				got := s.Take(nil)
				if len(got) != events || got[0].Event.Offset != 1 || got[events-1].Event.Offset != events {
					t.Fatalf("healthy subscriber got %v", offsetsOf(got))
				}
				if s.Reason() != hub.ReasonNone {
					t.Fatalf("healthy subscriber closed: %s", s.Reason())
				}
			}
			if st := h.Stats(); st.SlowCutoffs != 1 || st.Dispatched != uint64(2*events+tt.accepted) {
				t.Fatalf("stats %+v: want 1 slow cutoff and %d dispatched", st, 2*events+tt.accepted)
			}
			// The topic stays watched for the healthy subscribers.
			h.Unsubscribe(slow)
			mustAppend(t, store, "feed", "after")
			if fast.Len() != 1 || bystander.Len() != 1 {
				t.Fatalf("after the cut: %d and %d queued, want 1 and 1", fast.Len(), bystander.Len())
			}
		})
	}
}

// Unsubscribe stops delivery at once; the last subscriber's departure
// unwatches the topic, and a later subscriber re-watches it and gets
// the events appended from then on.
func TestUnsubscribeUnwatchesAndRewatch(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 0)
	a := mustSubscribe(t, h, []string{"rw"}, hub.Limits{})
	b := mustSubscribe(t, h, []string{"rw"}, hub.Limits{})
	mustAppend(t, store, "rw", "1")
	h.Unsubscribe(a)
	if !store.Watched("rw") {
		t.Fatal("topic unwatched while b still reads it")
	}
	mustAppend(t, store, "rw", "2")
	if got := offsetsOf(a.Take(nil)); !slices.Equal(got, []string{"rw:1"}) {
		t.Fatalf("a got %v, want only rw:1 (delivered before Unsubscribe)", got)
	}
	h.Unsubscribe(b)
	if store.Watched("rw") {
		t.Fatal("topic still watched after its last subscriber left")
	}
	mustAppend(t, store, "rw", "3")
	if got := offsetsOf(b.Take(nil)); !slices.Equal(got, []string{"rw:1", "rw:2"}) {
		t.Fatalf("b got %v, want rw:1 rw:2", got)
	}
	dispatched := h.Stats().Dispatched

	c := mustSubscribe(t, h, []string{"rw"}, hub.Limits{})
	if !store.Watched("rw") || store.Watches("rw") != 2 {
		t.Fatalf("re-subscribe: watched=%v after %d Watch calls, want watched by a second Watch", store.Watched("rw"), store.Watches("rw"))
	}
	mustAppend(t, store, "rw", "4", "5")
	if got := offsetsOf(c.Take(nil)); !slices.Equal(got, []string{"rw:4", "rw:5"}) {
		t.Fatalf("re-watched subscriber got %v, want rw:4 rw:5", got)
	}
	if s := h.Stats(); s.Dispatched != dispatched+2 || s.Duplicates != 0 || s.GapsFilled != 0 {
		t.Fatalf("stats %+v after re-watch (dispatched before: %d)", s, dispatched)
	}
}

// Close cuts every subscriber off with ReasonShutdown, is idempotent, stops
// the hub's goroutine, and refuses later subscriptions.
func TestCloseCutsEverySubscriber(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	before := runtime.NumGoroutine()
	h, err := hub.New(hub.Config{Store: store, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var subs []*hub.Subscriber
	for i := range 20 {
		subs = append(subs, mustSubscribe(t, h, []string{fmt.Sprint("c", i%7), fmt.Sprint("c", (i+3)%7)}, hub.Limits{}))
	}
	mustAppend(t, store, "c0", "x")
	h.Resync()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for i, s := range subs {
		select {
		case <-s.Done():
		default:
			t.Fatalf("subscriber %d not cut off by Close", i)
		}
		if s.Reason() != hub.ReasonShutdown {
			t.Fatalf("subscriber %d reason %q, want %q", i, s.Reason(), hub.ReasonShutdown)
		}
		h.Unsubscribe(s) // after Close: a no-op, not a panic
	}
	for i := range 7 {
		if tp := fmt.Sprint("c", i); store.Watched(tp) {
			t.Fatalf("%s still watched after Close", tp)
		}
	}
	late := hub.NewSubscriber([]string{"c0"}, hub.Limits{})
	if err := h.Subscribe(context.Background(), late); !errors.Is(err, push.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v, want push.ErrClosed", err)
	}
	h.Resync() // never blocks, even with nobody reading
	h.Resync()
	h.Deliver(&push.Event{Topic: "c0", Origin: "local", Epoch: "e", Offset: 9})
	waitFor(t, "the hub's goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

// An announcement that jumps past the hub's last dispatched offset (the
// ones in between were lost) is dispatched as is — Deliver never reads the
// store, it runs on the store's announcing goroutine — counted, and a resync
// is scheduled; the subscriber sees the jump and fills it from its own
// position (push/server does). A repeated announcement is dropped.
func TestDeliverJumpIsDispatchedAndResynced(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 0)
	sub := mustSubscribe(t, h, []string{"gap"}, hub.Limits{})
	mustAppend(t, store, "gap", "1", "2")
	store.Drop("gap", true)
	mustAppend(t, store, "gap", "3", "4")
	mustAppend(t, store, "gap", "5")
	store.Drop("gap", false)
	lost := store.Dropped()
	if len(lost) != 3 {
		t.Fatalf("%d announcements dropped, want 3", len(lost))
	}
	if got := offsetsOf(sub.Take(nil)); !slices.Equal(got, []string{"gap:1", "gap:2"}) {
		t.Fatalf("before the late announcement: %v", got)
	}
	resyncs := h.Stats().Resyncs
	h.Deliver(lost[2])
	if o := offsetsOf(sub.Take(nil)); !slices.Equal(o, []string{"gap:5"}) {
		t.Fatalf("after the jump: %v, want gap:5 (the subscriber fills 3..4 itself)", o)
	}
	waitFor(t, "the scheduled resync", func() bool { return h.Stats().Resyncs > resyncs })
	if s := h.Stats(); s.Gaps != 1 || s.Duplicates != 0 {
		t.Fatalf("stats %+v: want one jump counted", s)
	}
	h.Deliver(lost[0]) // an old announcement arriving late
	h.Deliver(lost[2])
	if sub.Len() != 0 || h.Stats().Duplicates != 2 {
		t.Fatalf("repeated announcements: %d queued, stats %+v", sub.Len(), h.Stats())
	}
	mustAppend(t, store, "gap", "6")
	if o := offsetsOf(sub.Take(nil)); !slices.Equal(o, []string{"gap:6"}) {
		t.Fatalf("after the jump: %v", o)
	}
}

// Resync compares positions with the store and dispatches what announcements
// lost, once, in order.
func TestResyncFillsLostAnnouncements(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 0)
	sub := mustSubscribe(t, h, []string{"rs", "quiet"}, hub.Limits{})
	mustAppend(t, store, "rs", "1")
	store.Drop("rs", true)
	mustAppend(t, store, "rs", "2", "3")
	mustAppend(t, store, "rs", "4")
	store.Drop("rs", false)
	if sub.Len() != 1 {
		t.Fatalf("%d queued before resync, want 1", sub.Len())
	}
	resyncPassDone(t, h)
	if o := offsetsOf(sub.Take(nil)); !slices.Equal(o, []string{"rs:1", "rs:2", "rs:3", "rs:4"}) {
		t.Fatalf("after resync: %v", o)
	}
	if s := h.Stats(); s.GapsFilled != 3 || s.Resyncs < 2 {
		t.Fatalf("stats %+v: want 3 filled and at least 2 passes", s)
	}
	// Announcements resume: nothing is duplicated by the earlier fill.
	mustAppend(t, store, "rs", "5")
	resyncPassDone(t, h)
	if o := offsetsOf(sub.Take(nil)); !slices.Equal(o, []string{"rs:5"}) {
		t.Fatalf("after resuming: %v", o)
	}
}

// A resync when the hub is up to date dispatches nothing again.
func TestResyncWhenCurrentDuplicatesNothing(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 0)
	sub := mustSubscribe(t, h, []string{"cur-a", "cur-b"}, hub.Limits{})
	mustAppend(t, store, "cur-a", "1", "2", "3")
	mustAppend(t, store, "cur-b", "1")
	base := h.Stats()
	resyncPassDone(t, h)
	resyncPassDone(t, h)
	got := offsetsOf(sub.Take(nil))
	if want := []string{"cur-a:1", "cur-a:2", "cur-a:3", "cur-b:1"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	s := h.Stats()
	if s.Resyncs < base.Resyncs+4 || s.Dispatched != base.Dispatched || s.GapsFilled != 0 {
		t.Fatalf("stats %+v (before: %+v): want 4 more passes and nothing dispatched", s, base)
	}
}

// Subscribe with an already-cancelled context fails and leaves no
// registration behind: the subscriber gets nothing, a topic nobody else
// reads is not left watched, and a topic another subscriber reads keeps
// being delivered to it.
func TestSubscribeErrorLeavesNoRegistration(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 0)
	other := mustSubscribe(t, h, []string{"shared"}, hub.Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 50 {
		fresh := fmt.Sprint("fresh-", i)
		sub := hub.NewSubscriber([]string{"shared", fresh}, hub.Limits{})
		err := h.Subscribe(ctx, sub)
		mustAppend(t, store, "shared", "x")
		mustAppend(t, store, fresh, "x")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("attempt %d: Subscribe with a cancelled context: %v, want context.Canceled", i, err)
		}
		if sub.Len() != 0 || store.Watched(fresh) {
			t.Fatalf("after a failed Subscribe: %d queued, %s watched=%v", sub.Len(), fresh, store.Watched(fresh))
		}
		h.Unsubscribe(sub) // a caller cleaning up anyway does no harm
	}
	if other.Len() != 50 || !store.Watched("shared") {
		t.Fatalf("the other subscriber got %d events (want 50), shared watched=%v", other.Len(), store.Watched("shared"))
	}
}

// fakeClock is a hub's injected clock (hub.Config.Now): tests move it to
// play a node whose streams run late or whose connections stall.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time                { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration) time.Time { return time.Unix(0, c.ns.Add(int64(d))) }

func newHubWithClock(tb testing.TB, store push.Store, clk *fakeClock) *hub.Hub {
	tb.Helper()
	h, err := hub.New(hub.Config{Store: store, Logger: quietLogger(), Now: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// A subscriber whose connection wrote promptly is not cut off however old
// its queued events are: on a starved node the stream's goroutine waits
// for a CPU while events queue up, which is not the consumer's doing (ADR
// 0034). The queue's head here is 10s older than MaxLag allows, at the
// hub's enqueue and at the connection's take.
func TestQueueLagNotFooledByStarvedNode(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	clk := newFakeClock()
	h := newHubWithClock(t, store, clk)
	const maxLag = 2 * time.Second
	sub := mustSubscribe(t, h, []string{"lag"}, hub.Limits{MaxLag: maxLag})
	// Its connection has written before, promptly.
	sub.Writing(clk.Now())
	sub.Wrote(clk.Add(time.Millisecond))
	mustAppend(t, store, "lag", "1")
	// The stream's goroutine does not run for 10s (starved node)…
	clk.Add(5 * maxLag)
	if sub.Lagging(clk.Now()) {
		t.Fatal("a queue whose connection never stalled reported lagging after the node starved it")
	}
	mustAppend(t, store, "lag", "2")
	clk.Add(5 * maxLag)
	mustAppend(t, store, "lag", "3")
	if sub.Reason() != hub.ReasonNone || h.Stats().SlowCutoffs != 0 {
		t.Fatalf("reason %q, stats %+v: a starved (not slow) subscriber was cut off", sub.Reason(), h.Stats())
	}
	// …then runs: it takes everything and writes it promptly.
	got, lagging := sub.TakeFresh(nil, clk.Now())
	if lagging || len(offsetsOf(got)) != 3 {
		t.Fatalf("TakeFresh after starvation: %v taken, lagging %v; want all 3 events, not lagging", offsetsOf(got), lagging)
	}
}

// A subscriber whose connection stalls in a write (its client stopped
// reading: the socket is full, the write waits for its deadline) for
// longer than MaxLag while events queue is cut off as slow at the next
// enqueue, its queue released; before that its connection's take reports
// the lag. Stalls add up across writes.
func TestQueueLagCutsOffStalledConnection(t *testing.T) {
	const maxLag = 2 * time.Second
	for _, tc := range []struct {
		name  string
		stall func(sub *hub.Subscriber, clk *fakeClock)
	}{
		{"one write in progress", func(sub *hub.Subscriber, clk *fakeClock) {
			sub.Writing(clk.Add(100 * time.Millisecond))
			clk.Add(maxLag + time.Millisecond)
		}},
		{"writes that ended", func(sub *hub.Subscriber, clk *fakeClock) {
			for range 3 {
				sub.Writing(clk.Add(10 * time.Millisecond))
				sub.Wrote(clk.Add(maxLag / 2))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newSpyStore(t, memstore.Config{})
			clk := newFakeClock()
			h := newHubWithClock(t, store, clk)
			sub := mustSubscribe(t, h, []string{"lag"}, hub.Limits{MaxLag: maxLag})
			other := mustSubscribe(t, h, []string{"lag"}, hub.Limits{MaxLag: maxLag})
			mustAppend(t, store, "lag", "1")
			if sub.Lagging(clk.Now()) {
				t.Fatal("fresh queue reported lagging")
			}
			tc.stall(sub, clk)
			if !sub.Lagging(clk.Now()) {
				t.Fatalf("a connection stalled past MaxLag is not lagging")
			}
			// The connection's take reports the lag and leaves the queue alone.
			if got, lagging := sub.TakeFresh(nil, clk.Now()); !lagging || len(got) != 0 || sub.Len() != 1 {
				t.Fatalf("TakeFresh while lagging: %d taken, lagging %v, %d queued; want 0, true, 1", len(got), lagging, sub.Len())
			}
			mustAppend(t, store, "lag", "2")
			if sub.Reason() != hub.ReasonSlow || h.Stats().SlowCutoffs != 1 || sub.Len() != 0 {
				t.Fatalf("reason %q, stats %+v, %d queued: want cut off as slow once, queue released", sub.Reason(), h.Stats(), sub.Len())
			}
			if got := offsetsOf(other.Take(nil)); len(got) != 2 {
				t.Fatalf("the other subscriber got %v, want both events", got)
			}
		})
	}
}

// A write that ends before the next event is enqueued does not count
// against that event: the lag is the stall since the queue's head arrived.
func TestQueueLagCountsStallsSinceHead(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	clk := newFakeClock()
	h := newHubWithClock(t, store, clk)
	const maxLag = 2 * time.Second
	sub := mustSubscribe(t, h, []string{"lag"}, hub.Limits{MaxLag: maxLag})
	sub.Writing(clk.Now())
	sub.Wrote(clk.Add(3 * maxLag)) // a long stall, over before anything queued
	mustAppend(t, store, "lag", "1")
	clk.Add(3 * maxLag)
	mustAppend(t, store, "lag", "2")
	if got, lagging := sub.TakeFresh(nil, clk.Now()); lagging || len(got) != 2 || sub.Reason() != hub.ReasonNone {
		t.Fatalf("TakeFresh: %d taken, lagging %v, reason %q; want 2, false, none", len(got), lagging, sub.Reason())
	}
}

// Seen is where the hub stood in each stream of a topic once a subscriber
// was registered: the store's head when the watch began, then the last
// dispatched event; the zero position for a stream the store did not hold
// and the hub never dispatched; nothing for a topic the subscriber does
// not read. (The server skips its seam read when its cursor is there.)
func TestSeenIsWhereTheHubStood(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 4)
	origin := store.Origin()

	empty := mustSubscribe(t, h, []string{"e"}, hub.Limits{})
	if pos, ok := empty.Seen("e", origin); !ok || pos != (push.Position{}) {
		t.Fatalf("empty stream: Seen = %+v, %v; want the zero position", pos, ok)
	}
	if _, ok := empty.Seen("other", origin); ok {
		t.Fatal("Seen reports a topic the subscriber does not read")
	}

	res := mustAppend(t, store, "h", "1", "2", "3")
	first := mustSubscribe(t, h, []string{"h"}, hub.Limits{})
	if pos, ok := first.Seen("h", origin); !ok || pos.Offset != 3 || pos.Epoch != res[2].Epoch {
		t.Fatalf("fresh watch: Seen = %+v, %v; want the store's head %s/3", pos, ok, res[2].Epoch)
	}
	mustAppend(t, store, "h", "4", "5")
	got := 0
	waitFor(t, "events 4 and 5 dispatched", func() bool { got += len(first.Take(nil)); return got == 2 })
	second := mustSubscribe(t, h, []string{"h"}, hub.Limits{})
	if pos, _ := second.Seen("h", origin); pos.Offset != 5 {
		t.Fatalf("watched topic: Seen offset %d, want 5 (the last dispatched)", pos.Offset)
	}
	// An event the hub has not dispatched yet is after Seen: it reaches
	// the queue of a subscriber registered before it is announced.
	store.Drop("h", true)
	mustAppend(t, store, "h", "6")
	third := mustSubscribe(t, h, []string{"h"}, hub.Limits{})
	if pos, _ := third.Seen("h", origin); pos.Offset != 5 {
		t.Fatalf("announcement held back: Seen offset %d, want 5", pos.Offset)
	}
}

// Heads answers a watched topic's positions only while they are as good as
// the store's: listeners synced, no resync pending.
func TestHeadsOnlyWhileSynced(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 0)
	origin := store.Origin()
	if _, ok := h.Heads([]string{"hd"}, []string{origin}); ok {
		t.Fatal("Heads answered for a topic nobody watches")
	}
	sub := mustSubscribe(t, h, []string{"hd"}, hub.Limits{})
	res := mustAppend(t, store, "hd", "1", "2")
	waitFor(t, "two deliveries", func() bool { return sub.Len() == 2 })
	head := func() (push.StreamInfo, bool) {
		t.Helper()
		in, ok := h.Heads([]string{"hd"}, []string{origin})
		if ok && len(in) != 1 {
			t.Fatalf("Heads gave %d infos, want 1", len(in))
		}
		if !ok {
			return push.StreamInfo{}, false
		}
		return in[0], true
	}
	if in, ok := head(); !ok || in.Last != 2 || in.Epoch != res[1].Epoch || in.Topic != "hd" || in.Origin != origin {
		t.Fatalf("Heads = %+v, %v; want offset 2 of epoch %s", in, ok, res[1].Epoch)
	}
	if _, ok := h.Heads([]string{"hd"}, []string{"elsewhere"}); ok {
		t.Fatal("Heads answered for an origin the hub has no store of")
	}

	store.SetSynced(false)
	if _, ok := head(); ok {
		t.Fatal("Heads answered while the listener was not synced")
	}
	store.SetSynced(true)

	// Announcements lost, then a resync: while the pass runs (held in
	// its Info), Heads does not answer; after it, the head is caught up.
	store.Drop("hd", true)
	mustAppend(t, store, "hd", "3")
	store.Drop("hd", false)
	entered, release := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	unblock := func() { released.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the hub's Close, which waits for the pass
	store.SetHook(func(op, _ string) {
		if op == "info" {
			once.Do(func() { close(entered); <-release })
		}
	})
	h.Resync()
	<-entered
	if _, ok := head(); ok {
		t.Fatal("Heads answered while a resync was pending")
	}
	unblock()
	store.SetHook(nil)
	waitFor(t, "Heads after the resync", func() bool { _, ok := head(); return ok })
	if in, _ := head(); in.Last != 3 {
		t.Fatalf("Heads after the resync: offset %d, want 3", in.Last)
	}
}
