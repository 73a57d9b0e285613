package main

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
)

// fleet is a set of resuming SDK subscribers, one topic each, that check
// every event they get: per-topic offsets must advance by exactly one
// (no gap, no duplicate) across every reconnect and node change.
type fleet struct {
	clients []*fleetClient
	hc      *http.Client
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	idle    time.Duration
	// transport is the clients' stream transport (transportOf the test).
	transport string
}

// forTransports runs f once per stream transport, as subtests "sse" and
// "ws": the transport is a parameter of the test (transportOf).
func forTransports(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	for _, tr := range []string{client.TransportSSE, client.TransportWS} {
		t.Run(tr, f)
	}
}

// transportOf is the transport of the subtest t runs in: "ws" under a "ws"
// subtest (forTransports), else "sse".
func transportOf(t testing.TB) string {
	if strings.Contains(t.Name()+"/", "/ws/") {
		return client.TransportWS
	}
	return client.TransportSSE
}

type fleetClient struct {
	topic     string
	endpoints []string
	stream    *client.Stream
	// stopStream ends the running stream and waits for it.
	stopStream func()

	mu       sync.Mutex
	last     uint64 // offset of the last event received
	started  bool   // hello seen: last is the start point
	received int
	dups     int
	gaps     uint64
	resets   int
	session  string
	sessions map[string]bool
	connects []connectRecord
}

type connectRecord struct {
	at       time.Time
	endpoint string
}

// newFleet starts n subscribers; client i subscribes to topics[i%len] and
// prefers endpoints rotated by pick(i).
func newFleet(t *testing.T, n int, topics []string, endpoints func(i int) []string, idle time.Duration) *fleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fleet{ctx: ctx, cancel: cancel, idle: idle, transport: transportOf(t), hc: &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   -1,
	}}}
	for i := range n {
		c := &fleetClient{topic: topics[i%len(topics)], sessions: map[string]bool{}}
		f.clients = append(f.clients, c)
		f.run(c, endpoints(i), "")
	}
	t.Cleanup(f.stop)
	return f
}

// run starts c's stream on endpoints, resuming after lastID when set.
func (f *fleet) run(c *fleetClient, endpoints []string, lastID string) {
	c.endpoints = endpoints
	st := client.Subscribe(client.StreamConfig{
		Endpoints:   endpoints,
		Topics:      []string{c.topic},
		LastEventID: lastID,
		HTTPClient:  f.hc,
		MinBackoff:  50 * time.Millisecond,
		MaxBackoff:  2 * time.Second,
		IdleTimeout: f.idle,
		Transport:   f.transport,
		OnConnect: func(ep string) {
			c.mu.Lock()
			c.connects = append(c.connects, connectRecord{at: time.Now(), endpoint: ep})
			c.mu.Unlock()
		},
	})
	c.stream = st
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	c.stopStream = func() { cancel(); <-done }
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(done)
		_ = st.Run(ctx, c.handle)
	}()
}

// disconnect closes c's connection and stops its stream; resume continues
// it, with the cursor of the last event it handled, on endpoints: what an
// application does when it drops a connection and opens one elsewhere.
func (f *fleet) disconnect(c *fleetClient) { c.stopStream() }

func (f *fleet) resume(c *fleetClient, endpoints []string) {
	f.run(c, endpoints, c.stream.LastEventID())
}

func (f *fleet) stop() {
	f.cancel()
	f.wg.Wait()
	f.hc.CloseIdleConnections()
}

func (c *fleetClient) handle(ev client.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev.Type {
	case push.EventHello:
		h, err := client.ParseHello(ev)
		if err != nil {
			return err
		}
		c.session = h.Session
		c.sessions[h.Session] = true
		if !c.started && ev.ID != "" {
			offs, err := push.DecodeOffsets(ev.ID, 1, nil)
			if err != nil || len(offs) != 1 {
				return fmt.Errorf("hello id %q: %v", ev.ID, err)
			}
			c.last, c.started = offs[0], true
		}
		return nil
	case push.EventReset:
		c.resets++
		return nil
	}
	offs, err := push.DecodeOffsets(ev.ID, 1, nil)
	if err != nil || len(offs) != 1 {
		return fmt.Errorf("event id %q: %v", ev.ID, err)
	}
	off := offs[0]
	switch {
	case off <= c.last:
		c.dups++
	case off > c.last+1:
		c.gaps += off - c.last - 1
	}
	c.last = max(c.last, off)
	c.received++
	return nil
}

// ready reports how many clients have seen their first hello.
func (f *fleet) ready() int {
	n := 0
	for _, c := range f.clients {
		c.mu.Lock()
		if c.started {
			n++
		}
		c.mu.Unlock()
	}
	return n
}

// caughtUp reports whether every client's last offset reached heads[topic].
func (f *fleet) caughtUp(heads map[string]uint64) (behind int) {
	for _, c := range f.clients {
		c.mu.Lock()
		if c.last < heads[c.topic] {
			behind++
		}
		c.mu.Unlock()
	}
	return behind
}

// fleetReport sums the clients' checks.
type fleetReport struct {
	clients, received, dups, resets, sessionChanges int
	lost                                            uint64
}

// report checks every client against heads: lost counts offsets never
// received (gaps and a tail short of the head).
func (f *fleet) report(heads map[string]uint64) fleetReport {
	var r fleetReport
	for _, c := range f.clients {
		c.mu.Lock()
		r.clients++
		r.received += c.received
		r.dups += c.dups
		r.resets += c.resets
		r.lost += c.gaps
		if c.last < heads[c.topic] {
			r.lost += heads[c.topic] - c.last
		}
		if len(c.sessions) > 1 {
			r.sessionChanges++
		}
		c.mu.Unlock()
	}
	return r
}

// reconnectsAfter returns, for clients whose connection at t0 was on
// endpoint victim, the delay from t0 to their next connect elsewhere, and
// every connect time after t0.
func (f *fleet) reconnectsAfter(t0 time.Time, victim string) (resume []time.Duration, connects []time.Time) {
	for _, c := range f.clients {
		c.mu.Lock()
		onVictim := false
		for _, cr := range c.connects {
			if cr.at.Before(t0) {
				onVictim = cr.endpoint == victim
			}
		}
		for _, cr := range c.connects {
			if cr.at.After(t0) {
				connects = append(connects, cr.at)
			}
		}
		if onVictim {
			for _, cr := range c.connects {
				if cr.at.After(t0) && cr.endpoint != victim {
					resume = append(resume, cr.at.Sub(t0))
					break
				}
			}
		}
		c.mu.Unlock()
	}
	slices.Sort(resume)
	return resume, connects
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// peakRate returns the most connects in any 100ms bucket, per second.
func peakRate(ts []time.Time) float64 {
	if len(ts) == 0 {
		return 0
	}
	buckets := map[int64]int{}
	best := 0
	for _, t := range ts {
		k := t.UnixMilli() / 100
		buckets[k]++
		best = max(best, buckets[k])
	}
	return float64(best) * 10
}

// publisher publishes sequentially to topics in round-robin through
// endpoints (failing over, same idempotency key per event) until stopped,
// at most rate events per second.
type publisher struct {
	pub    *client.Publisher
	topics []string
	rate   int
	acked  atomic.Int64
	failed atomic.Int64
	mu     sync.Mutex
	heads  map[string]uint64
	stopc  chan struct{}
	done   chan struct{}
}

func startPublisher(endpoints, topics []string, rate int) *publisher {
	p := &publisher{
		pub: client.NewPublisher(client.PublisherConfig{Endpoints: endpoints, MaxAttempts: 20,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}),
		topics: topics, rate: rate, heads: map[string]uint64{},
		stopc: make(chan struct{}), done: make(chan struct{}),
	}
	go p.run()
	return p
}

func (p *publisher) run() {
	defer close(p.done)
	tick := time.NewTicker(time.Second / time.Duration(p.rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-p.stopc:
			return
		case <-tick.C:
		}
		topic := p.topics[i%len(p.topics)]
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		r, err := p.pub.Publish(ctx, topic, client.Message{Event: "tick", Text: fmt.Sprint(i)})
		cancel()
		if err != nil {
			p.failed.Add(1)
			continue
		}
		p.acked.Add(1)
		p.mu.Lock()
		p.heads[topic] = max(p.heads[topic], r.Offset)
		p.mu.Unlock()
	}
}

// snapshot returns the highest acknowledged offset per topic so far.
func (p *publisher) snapshot() map[string]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.heads)
}

// stop ends publishing and returns the highest acknowledged offset per topic.
func (p *publisher) stop() map[string]uint64 {
	close(p.stopc)
	<-p.done
	p.pub.CloseIdleConnections()
	return p.snapshot()
}
