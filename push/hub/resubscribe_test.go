package hub_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/store/memstore"
)

// A topic whose last subscriber leaves while another joins (a single reader
// reconnecting while events are published) used to deadlock memstore: the
// joiner's fresh topic state could take an announcement (last = k) just
// before the leaver's Unwatch landed, the events appended until the joiner's
// Watch were not announced, and watch kept last = k because it adopts the
// store's head only when no position is recorded. The next announcement
// jumped past k and Deliver filled the jump with store.Read from inside
// memstore's announcement, under the topic lock Read needs. Appends must
// keep completing.
func TestResubscribeRaceDoesNotDeadlock(t *testing.T) {
	// Deliberately not closed through t.Cleanup: after a deadlock Close
	// blocks too, and the failure should be reported, not hang the binary.
	store := memstore.New(memstore.Config{})
	h, err := hub.New(hub.Config{Store: store, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var appended, churned atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := store.Append(context.Background(), "reconnect", []push.Draft{{Type: "v", Data: []byte("x")}}); err != nil {
				t.Error(err)
				return
			}
			appended.Add(1)
		}
	}()
	for range 2 {
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sub := hub.NewSubscriber([]string{"reconnect"}, hub.Limits{MaxEvents: 1 << 20})
				if err := h.Subscribe(context.Background(), sub); err != nil {
					t.Error(err)
					return
				}
				h.Unsubscribe(sub)
				churned.Add(1)
			}
		}()
	}
	// Both sides must complete many rounds while the other runs. A deadlock
	// stops them for good; the wait is bounded only so that a deadlock
	// fails the test instead of hanging it.
	const rounds = 3000
	deadline := time.Now().Add(2 * time.Minute)
	for appended.Load() < rounds || churned.Load() < rounds {
		if time.Now().After(deadline) {
			t.Fatalf("stalled at %d appends and %d resubscribes (want %d each): deadlock (goroutines are leaked); hub stats %+v",
				appended.Load(), churned.Load(), rounds, h.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	st := h.Stats()
	t.Logf("%d appends; hub stats %+v", appended.Load(), st)

	// The topic still works for a reader that stays.
	sub := hub.NewSubscriber([]string{"reconnect"}, hub.Limits{})
	if err := h.Subscribe(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	res, err := store.Append(context.Background(), "reconnect", []push.Draft{{Type: "v", Data: []byte("after")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := sub.Take(nil); len(got) != 1 || got[0].Event.Offset != res[0].Offset {
		t.Fatalf("after the churn: got %v, want offset %d", offsetsOf(got), res[0].Offset)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	_ = store.Close()
}
