package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/sse"
)

// checkerVolume is the end-to-end checker's load (the acceptance volume of
// issue "Herald core": 5 publishers x 20,000 events over 10 topics, 200
// subscribers). It runs in make test, under the race detector (~2 min).
type checkerVolume struct {
	Publishers, EventsPerPublisher, Topics, Subscribers int
}

func TestEndToEndChecker(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end checker is not a -short test")
	}
	vol := checkerVolume{Publishers: 5, EventsPerPublisher: 20000, Topics: 10, Subscribers: 200}
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n := startNode(t, newStore(t, push.Retention{MaxLen: 1_000_000}), nil)
		runChecker(t, n, vol, 42)
	})
}

// subscriberLog is one simulated client's view: per topic the offsets it
// received, checked as they arrive.
type subscriberLog struct {
	topics   []string
	mu       sync.Mutex        // guards next: the checker polls it while run updates it
	next     map[string]uint64 // next expected offset per topic
	received atomic.Int64
	connects atomic.Int64
	cutoffs  atomic.Int64 // streams the server closed
	err      error
}

// runChecker publishes from vol.Publishers goroutines while vol.Subscribers
// clients disconnect and reconnect at random moments with their cursor, then
// asserts every subscriber received every event of its topics exactly once,
// in per-topic order.
func runChecker(t *testing.T, n *testNode, vol checkerVolume, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	allTopics := make([]string, vol.Topics)
	for i := range allTopics {
		allTopics[i] = fmt.Sprintf("e2e-%d", i)
	}
	subs := make([]*subscriberLog, vol.Subscribers)
	for i := range subs {
		k := 1 + rng.IntN(3)
		perm := rng.Perm(vol.Topics)[:k]
		s := &subscriberLog{next: map[string]uint64{}}
		for _, p := range perm {
			s.topics = append(s.topics, allTopics[p])
			s.next[allTopics[p]] = 1
		}
		subs[i] = s
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()

	// Every subscriber connects (and gets its hello cursor) before publishing.
	var wg sync.WaitGroup
	ready := make(chan struct{}, len(subs))
	// Cancelling stopCtx ends every subscriber, including those blocked in a read.
	stopCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.err = s.run(stopCtx, client, n.URL, seed+uint64(i), ready)
		}()
	}
	for range subs {
		select {
		case <-ready:
		case <-ctx.Done():
			t.Fatal("subscribers did not connect")
		}
	}

	// Publishers: each sends its events in batches to random topics.
	perTopic := make([]atomic.Uint64, vol.Topics)
	// The first publisher error; later ones (of other types) are dropped.
	var pubErrMu sync.Mutex
	var pubErr error
	var pwg sync.WaitGroup
	start := time.Now()
	for p := range vol.Publishers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			prng := rand.New(rand.NewPCG(seed, uint64(p)+100))
			const batch = 50
			for sent := 0; sent < vol.EventsPerPublisher; sent += batch {
				var items []map[string]any
				for j := range min(batch, vol.EventsPerPublisher-sent) {
					ti := prng.IntN(vol.Topics)
					items = append(items, map[string]any{"topic": allTopics[ti], "data": fmt.Sprintf("%s|p%d|%d", allTopics[ti], p, sent+j)})
					perTopic[ti].Add(1)
				}
				if err := publishBatch(ctx, client, n.URL, items); err != nil {
					pubErrMu.Lock()
					if pubErr == nil {
						pubErr = err
					}
					pubErrMu.Unlock()
					return
				}
			}
		}()
	}
	pwg.Wait()
	if pubErr != nil {
		t.Fatalf("publisher: %v", pubErr)
	}
	pubDur := time.Since(start)
	want := map[string]uint64{}
	for i := range perTopic {
		want[allTopics[i]] = perTopic[i].Load()
	}

	// Wait until every subscriber has everything (or the deadline).
	deadline := time.Now().Add(3 * time.Minute)
	for {
		done := true
		for _, s := range subs {
			for _, tp := range s.topics {
				if s.position(tp) < want[tp] {
					done = false
				}
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopAll()
	wg.Wait()
	stuck := 0
	for i, s := range subs {
		for _, tp := range s.topics {
			if got := s.position(tp); got < want[tp] && stuck < 5 {
				stuck++
				t.Logf("subscriber %d topic %s at %d of %d", i, tp, got, want[tp])
			}
		}
	}

	var deliveries, connects, cutoffs int64
	for i, s := range subs {
		if s.err != nil {
			t.Errorf("subscriber %d (%v): %v", i, s.topics, s.err)
			continue
		}
		for _, tp := range s.topics {
			if got := s.position(tp); got != want[tp] {
				t.Errorf("subscriber %d topic %s: received up to %d of %d (lost %d)", i, tp, got, want[tp], want[tp]-got)
			}
		}
		deliveries += s.received.Load()
		connects += s.connects.Load()
		cutoffs += s.cutoffs.Load()
	}
	var expected uint64
	for _, s := range subs {
		for _, tp := range s.topics {
			expected += want[tp]
		}
	}
	if uint64(deliveries) != expected {
		t.Errorf("deliveries %d, want exactly %d (duplicates or loss)", deliveries, expected)
	}
	verdict := "0 lost, 0 duplicated"
	if t.Failed() {
		verdict = "FAILED"
	}
	t.Logf("published %d events in %s; %d subscribers made %d connections (%d closed by the server as slow) and received %d events (expected %d): %s",
		vol.Publishers*vol.EventsPerPublisher, pubDur.Round(time.Millisecond), len(subs), connects, cutoffs, deliveries, expected, verdict)
}

func (s *subscriberLog) position(topic string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next[topic] - 1
}

// run connects, reads a random number of events, disconnects, and resumes
// with its cursor, until stop. Every event is checked on arrival.
func (s *subscriberLog) run(ctx context.Context, client *http.Client, base string, seed uint64, ready chan<- struct{}) error {
	rng := rand.New(rand.NewPCG(seed, 99))
	q := url.Values{"topic": s.topics}
	last := ""
	first := true
	for {
		if ctx.Err() != nil {
			return nil
		}
		cctx, cancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(cctx, http.MethodGet, base+"/v1/stream?"+q.Encode(), nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := client.Do(req)
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
			cancel()
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		s.connects.Add(1)
		dec := sse.NewDecoder(bufio.NewReaderSize(resp.Body, 64<<10))
		budget := 1 + rng.IntN(4000)
		var prev map[string]uint64
		err = func() error {
			for budget > 0 {
				ev, err := dec.Next()
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
						// The server closed the stream: a subscriber that fell
						// more than limits.queue_max_lag behind (a loaded
						// machine) is cut off by design; it resumes with its
						// cursor like any client, and must lose nothing.
						s.cutoffs.Add(1)
						return nil
					}
					return fmt.Errorf("stream ended: %w", err)
				}
				switch ev.Type {
				case push.EventHello:
					if last != "" && ev.ID != last {
						return fmt.Errorf("hello id %q on resume, want our cursor %q", ev.ID, last)
					}
					prev = s.decode(ev.ID)
					last = ev.ID
					if first {
						first = false
						ready <- struct{}{}
					}
					continue
				case push.EventReset:
					return fmt.Errorf("unexpected reset %s", ev.Data)
				}
				cur := s.decode(ev.ID)
				if cur == nil {
					return fmt.Errorf("undecodable id %q", ev.ID)
				}
				tp, _, _ := strings.Cut(ev.Data, "|")
				if err := s.accept(prev, cur, tp); err != nil {
					return err
				}
				prev, last = cur, ev.ID
				s.received.Add(1)
				budget--
			}
			return nil
		}()
		cancel()
		resp.Body.Close()
		if err != nil {
			return err
		}
	}
}

func (s *subscriberLog) decode(id string) map[string]uint64 {
	p, err := push.ParseCursor(id, s.topics, []string{"local"})
	if err != nil {
		return nil
	}
	out := make(map[string]uint64, p.Len())
	for i := range p.Len() {
		out[p.Key(i).Topic] = p.Offset(i)
	}
	return out
}

// accept checks that exactly one topic advanced, by exactly one, to the
// offset this subscriber expects next, and that it is the event's topic.
func (s *subscriberLog) accept(prev, cur map[string]uint64, dataTopic string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	moved := ""
	for tp, off := range cur {
		if off != prev[tp] {
			if moved != "" {
				return fmt.Errorf("cursor moved on two topics (%s, %s)", moved, tp)
			}
			moved = tp
		}
	}
	if moved == "" {
		return errors.New("duplicate: cursor did not advance")
	}
	if moved != dataTopic {
		return fmt.Errorf("event of %s advanced the cursor of %s", dataTopic, moved)
	}
	if got, want := cur[moved], s.next[moved]; got != want {
		if got < want {
			return fmt.Errorf("duplicate on %s: offset %d, expected %d", moved, got, want)
		}
		return fmt.Errorf("gap on %s: offset %d, expected %d", moved, got, want)
	}
	s.next[moved]++
	return nil
}

func publishBatch(ctx context.Context, client *http.Client, base string, items []map[string]any) error {
	body, _ := json.Marshal(map[string]any{"events": items})
	{
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		var out struct {
			Results []struct {
				Error *struct{ Code, Message string } `json:"error"`
			} `json:"results"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			var failed []string
			for i, r := range out.Results {
				if r.Error != nil {
					failed = append(failed, fmt.Sprintf("#%d %s: %s", i, r.Error.Code, r.Error.Message))
				}
			}
			return fmt.Errorf("batch: status %d: %v; failed items: %v", resp.StatusCode, err, failed)
		}
		return nil
	}
}
