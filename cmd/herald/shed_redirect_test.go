package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster/gossiptest"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/sse"
)

// TestRedirectedFreshStreamMissesNothing: a node over its target sends a
// fresh browser stream (no Last-Event-ID) to a peer with 307; the redirect
// URL carries the stream's position as of the attempt (last_event_id=),
// so the stream, opened on the peer later, receives every event published
// since its first attempt and nothing older (ADR 0020).
func TestRedirectedFreshStreamMissesNothing(t *testing.T) {
	rd := redistest.StartServer(t)
	net := gossiptest.NewNetwork()
	a := runGossipNodeWith(t, net, "a", rd.URL(), "", nil, func(c *Config) {
		c.Cluster.ConnectionTarget, c.Cluster.Redirect = 1, true
	})
	b := runGossipNode(t, net, "b", rd.URL(), a.Cluster.Local().GossipAddr)
	occupant := openRaw(t, a.URL(), "r", "") // a is at its target
	defer occupant.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := client.NewPublisher(client.PublisherConfig{Endpoints: []string{a.URL()}})
	publish := func(d string) {
		t.Helper()
		if _, err := pub.Publish(ctx, "r", client.Message{Text: d}); err != nil {
			t.Fatal(err)
		}
	}
	publish("before")
	select {
	case ev := <-occupant.events:
		if ev.Data != "before" {
			t.Fatalf("occupant got %q", ev.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("occupant got nothing within 5s")
	}

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var loc string
	eventually(t, 20*time.Second, "a 307 to b", func() bool {
		resp, err := noFollow.Get(a.URL() + "/v1/stream?topic=r")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc = resp.Header.Get("Location")
		return resp.StatusCode == http.StatusTemporaryRedirect
	})
	u, err := url.Parse(loc)
	bu, _ := url.Parse(b.URL())
	if err != nil || u.Host != bu.Host {
		t.Fatalf("Location %q (%v), want b %s", loc, err, b.URL())
	}
	var want []string
	for i := range 3 {
		d := fmt.Sprintf("r-%d", i)
		publish(d)
		want = append(want, d)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("redirected stream: %d", resp.StatusCode)
	}
	events := make(chan sse.Event, 16)
	go func() {
		defer close(events)
		dec := sse.NewDecoder(resp.Body)
		for {
			ev, err := dec.Next()
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	next := func() sse.Event {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s")
		}
		return sse.Event{}
	}
	if ev := next(); ev.Type != push.EventHello {
		t.Fatalf("first event %q, want hello", ev.Type)
	}
	for _, w := range want {
		if ev := next(); ev.Data != w {
			t.Fatalf("event %q, want %q", ev.Data, w)
		}
	}
}
