package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/server"
)

// shedScene is a node over its target of one stream (an occupant on topic
// t), with history on t and u from before any attempt: a fresh stream of
// t and u is turned away. The hub knows t's head (the occupant's topic);
// u's comes from the store.
func shedScene(t *testing.T, newStore storeFactory) (n *testNode, occupant *stream) {
	n = startNode(t, newStore(t, push.Retention{}), func(c *server.Config) { c.Node.ConnectionTarget = 1 })
	occupant = n.openStream(t, []string{"t"}, "", nil)
	hello(t, occupant)
	for _, topic := range []string{"t", "u"} {
		n.publish(topic, "x", topic+"-before")
	}
	if ev := occupant.next(5 * time.Second); ev.Data != "t-before" {
		t.Fatalf("occupant got %q, want t-before", ev.Data)
	}
	return n, occupant
}

// between is how many events publishBetween publishes.
const between = 6

// publishBetween publishes 3 events on each of t and u, after the first
// attempt and before the admission, and returns their data in order.
func publishBetween(n *testNode) []string {
	var want []string
	for i := range between / 2 {
		for _, topic := range []string{"t", "u"} {
			d := fmt.Sprintf("%s-%d", topic, i)
			n.publish(topic, "x", d)
			want = append(want, d)
		}
	}
	return want
}

// admit ends the occupant so the node is under its target again.
func admit(t *testing.T, n *testNode, occupant *stream) {
	t.Helper()
	occupant.Close()
	waitFor(t, 5*time.Second, "the occupant's stream to end", func() bool { return n.Srv.Stats().Streams == 0 })
}

// samePerTopic checks that got holds exactly want's events, in want's order
// within each topic (topics interleave as the replay reads them).
func samePerTopic(t *testing.T, got, want []string) {
	t.Helper()
	byTopic := func(ds []string) map[byte][]string {
		m := map[byte][]string{}
		for _, d := range ds {
			m[d[0]] = append(m[d[0]], d)
		}
		return m
	}
	g, w := byTopic(got), byTopic(want)
	for topic, ds := range w {
		if !slices.Equal(g[topic], ds) {
			t.Fatalf("topic %c: got %q, want %q (all: %q)", topic, g[topic], ds, got)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestShedFreshStreamMissesNothingUntilAdmitted: a browser stream with no
// cursor that is shed (200 + retry:) gets an id: at the heads as of its
// attempt; its retry, sending it as Last-Event-ID, receives every event
// published between the shed and the admission, and nothing older.
func TestShedFreshStreamMissesNothingUntilAdmitted(t *testing.T) {
	forTransports(t, testShedFreshStreamMissesNothingUntilAdmitted)
}

func testShedFreshStreamMissesNothingUntilAdmitted(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n, occupant := shedScene(t, newStore)
		first, status, body := n.tryStream([]string{"t", "u"}, "", nil)
		if status != http.StatusOK {
			t.Fatalf("first attempt: %d %s", status, body)
		}
		first.ended(5 * time.Second)
		// The retry sends what a browser would: the id: the shed answer
		// carried, if any.
		id := first.lastID()
		if r, ok := first.finalRetry(); !ok || r <= 0 {
			t.Fatalf("shed answer's retry: %v %v", r, ok)
		}
		want := publishBetween(n)
		admit(t, n, occupant)

		st := n.openStream(t, []string{"t", "u"}, id, nil)
		hello(t, st)
		var got []string
		for range want {
			got = append(got, st.next(5*time.Second).Data)
		}
		samePerTopic(t, got, want)
		st.noEvent(200 * time.Millisecond)
	})
}

// TestShedSDKStreamMissesNothingUntilAdmitted: the Go client's fresh stream
// refused (SSE: 503; WebSocket: herald.error, close 4503) takes the cursor
// from the error, and once admitted receives every event published after
// its first attempt, and nothing older.
func TestShedSDKStreamMissesNothingUntilAdmitted(t *testing.T) {
	forTransports(t, testShedSDKStreamMissesNothingUntilAdmitted)
}

func testShedSDKStreamMissesNothingUntilAdmitted(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n, occupant := shedScene(t, newStore)
		// The first attempt is refused: an SSE 503, or a WebSocket whose
		// handshake (101) is followed by the refusal in band.
		var refused atomic.Int64
		status := http.StatusServiceUnavailable
		if transportOf(t) == "ws" {
			status = http.StatusSwitchingProtocols
		}
		hc := &http.Client{Transport: countingTransport{base: http.DefaultTransport, status: status, n: &refused}}
		var mu sync.Mutex
		var got []string
		errDone := errors.New("done")
		s := client.Subscribe(client.StreamConfig{
			Endpoints: []string{n.URL}, Topics: []string{"t", "u"}, HTTPClient: hc,
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Transport: transportOf(t),
		})
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		runErr := make(chan error, 1)
		go func() {
			runErr <- s.Run(ctx, func(ev client.Event) error {
				if ev.Type == client.EventHello || ev.Type == client.EventReset {
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				got = append(got, ev.Data)
				if len(got) == between {
					return errDone
				}
				return nil
			})
		}()
		waitFor(t, 5*time.Second, "the client's first attempt to be refused", func() bool { return refused.Load() > 0 })
		want := publishBetween(n)
		admit(t, n, occupant)
		if err := <-runErr; !errors.Is(err, errDone) {
			t.Fatalf("Run: %v (got %q)", err, got)
		}
		mu.Lock()
		defer mu.Unlock()
		samePerTopic(t, got, want)
	})
}

// countingTransport counts responses with one status.
type countingTransport struct {
	base   http.RoundTripper
	status int
	n      *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil && resp.StatusCode == c.status {
		c.n.Add(1)
	}
	return resp, err
}
