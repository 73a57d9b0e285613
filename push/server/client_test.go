package server_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
)

// TestGoClientFailsOverAndResumes: the Go client streams from node A; A is
// shut down mid-stream; the client fails over to node B (same store) with
// its cursor and receives every event exactly once, in order.
func TestGoClientFailsOverAndResumes(t *testing.T) { forTransports(t, testGoClientFailsOverAndResumes) }

func testGoClientFailsOverAndResumes(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		store := newStore(t, push.Retention{})
		a := startNode(t, store, nil)
		b := startNode(t, store, nil)

		var mu sync.Mutex
		var got []string
		resets := 0
		connects := map[string]int{}
		const total = 200
		errDone := errors.New("done")
		s := client.Subscribe(client.StreamConfig{
			Endpoints: []string{a.URL, b.URL}, Topics: []string{"x", "y"}, Transport: transportOf(t),
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
			OnConnect: func(ep string) { mu.Lock(); connects[ep]++; mu.Unlock() },
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		runErr := make(chan error, 1)
		go func() {
			runErr <- s.Run(ctx, func(ev client.Event) error {
				mu.Lock()
				defer mu.Unlock()
				switch ev.Type {
				case client.EventReset:
					resets++
				case client.EventHello:
				default:
					got = append(got, ev.Data)
					if len(got) == total {
						return errDone
					}
				}
				return nil
			})
		}()
		waitFor(t, wait, "client connected to A", func() bool { mu.Lock(); defer mu.Unlock(); return connects[a.URL] == 1 })
		pub := client.NewPublisher(client.PublisherConfig{Endpoints: []string{b.URL}})
		for i := range total {
			if i == total/2 {
				waitFor(t, wait, "half delivered", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= total/4 })
				a.Close() // node A goes away mid-stream
			}
			topic := []string{"x", "y"}[i%2]
			if _, err := pub.Publish(ctx, topic, client.Message{Text: fmt.Sprintf("%s-%d", topic, i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-runErr; !errors.Is(err, errDone) {
			t.Fatalf("Run: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if resets != 0 || connects[b.URL] == 0 {
			t.Fatalf("resets %d, connects %v: want a failover to B without reset", resets, connects)
		}
		next := map[string]int{"x": 0, "y": 1}
		for _, d := range got {
			var topic string
			var n int
			if _, err := fmt.Sscanf(d, "%1s-%d", &topic, &n); err != nil {
				t.Fatalf("bad data %q", d)
			}
			if n != next[topic] {
				t.Fatalf("topic %s: got %d, want %d (gap or duplicate) in %v", topic, n, next[topic], got)
			}
			next[topic] += 2
		}
	})
}
