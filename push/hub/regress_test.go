package hub_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/store/memstore"
)

// Regression tests for defects found by review and fixed; each comment says
// what used to go wrong.

// Subscribe used to return nil about half the time with an already-cancelled
// context (the select between ready and ctx.Done picked at random).
func TestSubscribeWithCancelledContextFails(t *testing.T) {

	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	succeeded := 0
	for range 100 {
		sub := hub.NewSubscriber([]string{"cancelled"}, hub.Limits{})
		if err := h.Subscribe(ctx, sub); err == nil {
			succeeded++
			h.Unsubscribe(sub)
		}
	}
	if succeeded > 0 {
		t.Fatalf("%d of 100 Subscribe calls with a cancelled context returned nil", succeeded)
	}
}

// A subscriber cut off as slow stays registered on its other topics until its
// connection unsubscribes; SlowCutoffs used to count it again on each.
func TestSlowCutoffCountedOnce(t *testing.T) {

	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 0)
	slow := mustSubscribe(t, h, []string{"a", "b", "c"}, hub.Limits{MaxEvents: 1})
	mustAppend(t, store, "a", "1", "2") // the second one overflows: cut off
	if slow.Reason() != hub.ReasonSlow {
		t.Fatalf("reason %q", slow.Reason())
	}
	mustAppend(t, store, "b", "1")
	mustAppend(t, store, "c", "1")
	if n := h.Stats().SlowCutoffs; n != 1 {
		t.Fatalf("one slow subscriber counted %d times", n)
	}
}

// Deliver used to fill gaps with store.Read. memstore announces
// synchronously under the topic's lock (memstore/store.go Append → announce),
// and its doc forbids sinks to call back into the store, so Read blocks on
// the lock its own goroutine holds. memstore itself produces such a gap when
// retention trims part of a batch before announcing it (announce skips
// events already trimmed): with MaxLen 1, a batch of two appended to a topic
// the hub has seen deadlocks the appending goroutine, the topic, its watch
// shard and hub.Close (reachable over HTTP: retention max_len 1 and a
// POST /v1/events with two events for one subscribed topic). Deliver no
// longer reads the store.
func TestBatchLongerThanRetentionDoesNotDeadlock(t *testing.T) {

	// Nothing is closed: after the deadlock Close would block too.
	store := memstore.New(memstore.Config{Retention: push.RetentionPolicy{Default: push.Retention{MaxLen: 1}}})
	h, err := hub.New(hub.Config{Store: store, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	sub := hub.NewSubscriber([]string{"latest"}, hub.Limits{})
	if err := h.Subscribe(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx := context.Background()
		if _, err := store.Append(ctx, "latest", []push.Draft{{Type: "v", Data: []byte("1")}}); err != nil {
			done <- err
			return
		}
		_, err := store.Append(ctx, "latest", []push.Draft{{Type: "v", Data: []byte("2")}, {Type: "v", Data: []byte("3")}})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Append of a batch longer than MaxLen did not return within 5s: deadlock (the appending goroutine is leaked)")
	}
}

// hub.go watch used to adopt the store's head only when it had no position
// yet ("if !seen"). When a topic's last subscriber A leaves
// while B joins, B's fresh state can take an announcement (last = k) before
// A's Unwatch lands; the events appended until B's Watch are not announced,
// and watch keeps last = k although Info reports a later head. The next
// announcement is then a jump the hub itself manufactured, from a store that
// lost nothing: Stats.Gaps counts it and a full resync pass (Info on every
// watched topic) is scheduled. TestResubscribeRaceDoesNotDeadlock sees about
// 15 such jumps in 3 s of reconnect churn on one topic. Fixed: watch adopts
// Info's head when it is ahead of the recorded position in the same epoch
// (safe: only subscribers whose Subscribe has not returned yet share a fresh
// state, and they read the store after it returns).
func TestResubscribeRaceAdoptsStoreHead(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 0)
	a := hub.NewSubscriber([]string{"rw"}, hub.Limits{})
	if err := h.Subscribe(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, store, "rw", "1")

	unwatchHeld, releaseUnwatch := make(chan struct{}), make(chan struct{})
	watchHeld, releaseWatch := make(chan struct{}), make(chan struct{})
	store.SetHook(func(op, topic string) {
		switch op {
		case "unwatch":
			close(unwatchHeld)
			<-releaseUnwatch
		case "watch":
			close(watchHeld)
			<-releaseWatch
		}
	})
	// A leaves; its Unwatch is held (topic still watched in the store).
	left := make(chan struct{})
	go func() { defer close(left); h.Unsubscribe(a) }()
	<-unwatchHeld
	// B joins: its fresh state waits for the shard's watch lock, held by A.
	b := hub.NewSubscriber([]string{"rw"}, hub.Limits{})
	joined := make(chan error, 1)
	go func() { joined <- h.Subscribe(context.Background(), b) }()
	// Still announced: lands in B's fresh state once that exists.
	waitFor(t, "B's fresh state to take an announcement", func() bool {
		mustAppend(t, store, "rw", "x")
		return b.Len() > 0
	})
	k := b.Take(nil)[0].Event.Offset
	close(releaseUnwatch)
	<-left
	<-watchHeld // B's Watch is next: the topic is unwatched now
	mustAppend(t, store, "rw", "lost-1", "lost-2")
	store.SetHook(nil)
	close(releaseWatch)
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	defer h.Unsubscribe(b)

	mustAppend(t, store, "rw", "next")
	got := b.Take(nil)
	if o := offsetsOf(got); !slices.Equal(o, []string{fmt.Sprint("rw:", k+3)}) {
		t.Fatalf("B got %v, want rw:%d", o, k+3)
	}
	if s := h.Stats(); s.Gaps != 0 {
		t.Fatalf("stats %+v: the store lost no announcement, yet the hub saw %d jump(s): its position after re-watch was %d, the store's head %d", s, s.Gaps, k, k+2)
	}
}

// The remaining window of TestResubscribeRaceAdoptsStoreHead. hub.go watch
// adopts Info's head only after Watch returned and Info answered; an
// announcement landing between the two is compared with the stale position
// k a fresh state took before the previous Unwatch, so Deliver counts a jump
// (Stats.Gaps) and schedules a full resync pass, from a store that lost
// nothing (TestResubscribeRaceDoesNotDeadlock logged ~60 Gaps in 3 s of
// reconnect churn). Fixed: watch forgets positions recorded before this
// Watch (the previous Unwatch has landed by then), under the shard lock.
func TestAnnouncementBetweenWatchAndInfoIsNoJump(t *testing.T) {
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 0)
	a := hub.NewSubscriber([]string{"rw"}, hub.Limits{})
	if err := h.Subscribe(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, store, "rw", "1")

	unwatchHeld, releaseUnwatch := make(chan struct{}), make(chan struct{})
	watchHeld, releaseWatch := make(chan struct{}), make(chan struct{})
	watchedHeld, releaseWatched := make(chan struct{}), make(chan struct{})
	store.SetHook(func(op, topic string) {
		switch op {
		case "unwatch":
			close(unwatchHeld)
			<-releaseUnwatch
		case "watch":
			close(watchHeld)
			<-releaseWatch
		case "watched": // B's Watch is registered, its Info not yet read
			close(watchedHeld)
			<-releaseWatched
		}
	})
	left := make(chan struct{})
	go func() { defer close(left); h.Unsubscribe(a) }()
	<-unwatchHeld
	b := hub.NewSubscriber([]string{"rw"}, hub.Limits{})
	joined := make(chan error, 1)
	go func() { joined <- h.Subscribe(context.Background(), b) }()
	waitFor(t, "B's fresh state to take an announcement", func() bool {
		mustAppend(t, store, "rw", "x")
		return b.Len() > 0
	})
	k := b.Take(nil)[0].Event.Offset
	close(releaseUnwatch)
	<-left
	// Between A's Unwatch and B's Watch: not announced (lost to nobody:
	// B reads the store once Subscribe returns).
	<-watchHeld
	mustAppend(t, store, "rw", "unannounced")
	close(releaseWatch)
	<-watchedHeld
	mustAppend(t, store, "rw", "announced") // offset k+2, hub position k
	store.SetHook(nil)
	close(releaseWatched)
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	defer h.Unsubscribe(b)
	if o := offsetsOf(b.Take(nil)); !slices.Equal(o, []string{fmt.Sprint("rw:", k+2)}) {
		t.Fatalf("B got %v, want rw:%d", o, k+2)
	}
	if s := h.Stats(); s.Gaps != 0 {
		t.Fatalf("stats %+v: the store lost no announcement, yet the hub counted %d jump(s) (position %d, announcement %d)", s, s.Gaps, k, k+2)
	}
}
