package hub_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/store/memstore"
)

// TestPacedFanOutWakesEverySubscriber: a topic with more subscribers than
// PacedFanOut is woken through the hub's waker, beside a small topic woken
// inline, while two publishers append to both. Every subscriber must get
// every event in order with no wake of its own besides the hub's (a lost
// wake-up would leave events queued and the consumer stalled).
func TestPacedFanOutWakesEverySubscriber(t *testing.T) {
	const (
		bigSubs   = hub.PacedFanOut + 476
		smallSubs = 8
		perTopic  = 150 // appends per publisher per topic
	)
	store := newSpyStore(t, memstore.Config{})
	h := newHub(t, store, 4)
	big := hub.Limits{MaxEvents: 1 << 20, MaxBytes: 1 << 30, MaxLag: time.Hour}

	var wg sync.WaitGroup
	errs := make(chan error, bigSubs+smallSubs)
	consume := func(sub *hub.Subscriber, want uint64) {
		defer wg.Done()
		next := uint64(1)
		var batch []*hub.Delivery
		for next <= want {
			select {
			case <-sub.Ready():
			case <-sub.Done():
				errs <- fmt.Errorf("%v cut off: %s", sub.Topics(), sub.Reason())
				return
			case <-time.After(waitTimeout):
				errs <- fmt.Errorf("%v stalled at offset %d of %d with %d queued", sub.Topics(), next-1, want, sub.Len())
				return
			}
			batch = sub.Take(batch[:0])
			for _, d := range batch {
				if d.Event.Offset != next {
					errs <- fmt.Errorf("%v: offset %d, want %d", sub.Topics(), d.Event.Offset, next)
					return
				}
				next++
			}
		}
	}
	const total = 2 * perTopic
	for range bigSubs {
		wg.Add(1)
		go consume(mustSubscribe(t, h, []string{"paced"}, big), total)
	}
	for range smallSubs {
		wg.Add(1)
		go consume(mustSubscribe(t, h, []string{"inline"}, big), total)
	}
	var pubs sync.WaitGroup
	for p := range 2 {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for i := range perTopic {
				for _, topic := range []string{"paced", "inline"} {
					d := []push.Draft{{Type: "tick", Data: fmt.Appendf(nil, "p%d-%d", p, i)}}
					if _, err := store.Append(context.Background(), topic, d); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	pubs.Wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := h.Stats(); st.Dispatched != uint64((bigSubs+smallSubs)*total) {
		t.Errorf("dispatched %d, want %d", st.Dispatched, (bigSubs+smallSubs)*total)
	}
}

// FanOut reports the largest subscriber count among a subscriber's topics
// at the moment it subscribed, itself included: those who left before it
// joined do not count, and later joins do not change it.
func TestSubscriberFanOut(t *testing.T) {
	h := newHub(t, newSpyStore(t, memstore.Config{}), 4)
	lim := hub.Limits{}
	var first []*hub.Subscriber
	for i := range 3 {
		sub := mustSubscribe(t, h, []string{"big"}, lim)
		if got := sub.FanOut(); got != i+1 {
			t.Fatalf("subscriber %d of big: FanOut %d, want %d", i+1, got, i+1)
		}
		first = append(first, sub)
	}
	h.Unsubscribe(first[0])
	if got := mustSubscribe(t, h, []string{"small", "big"}, lim).FanOut(); got != 3 {
		t.Fatalf("after one left, small+big: FanOut %d, want 3 (big has 2 others)", got)
	}
	if got := mustSubscribe(t, h, []string{"small"}, lim).FanOut(); got != 2 {
		t.Fatalf("second of small: FanOut %d, want 2", got)
	}
	if got := first[1].FanOut(); got != 2 {
		t.Fatalf("FanOut of an earlier subscriber changed to %d, want 2 (its count at subscribe)", got)
	}
}

// SoleID encodes once per delivery however many subscribers ask, and every
// caller gets the same id.
func TestDeliverySoleIDEncodedOnce(t *testing.T) {
	t.Parallel()
	d := &hub.Delivery{Event: &push.Event{Topic: "a", Offset: 7}}
	var calls atomic.Int32
	enc := func(dst []byte) []byte {
		calls.Add(1)
		return append(dst, "id-7"...)
	}
	if got := string(d.SoleID(enc)); got != "id-7" {
		t.Fatalf("SoleID = %q", got)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if got := string(d.SoleID(enc)); got != "id-7" {
				t.Errorf("SoleID = %q", got)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("encoded %d times, want 1", n)
	}
}
