package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldpush/herald/cluster/gossiptest"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/sse"
	"github.com/heraldpush/herald/push/wire"
)

// TestRedirectedFreshStreamMissesNothing: a node over its target sends a
// fresh stream (no Last-Event-ID) to a peer — SSE: 307 whose URL carries
// the stream's position as of the attempt (last_event_id=); WebSocket: a
// herald.moved naming the peer with that position as its id, then close
// 4307 (ADR 0023) — so the stream, opened on the peer later, receives every
// event published since its first attempt and nothing older (ADR 0020).
func TestRedirectedFreshStreamMissesNothing(t *testing.T) {
	forTransports(t, redirectedFreshStreamMissesNothing)
}

func redirectedFreshStreamMissesNothing(t *testing.T) {
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

	// redirected opens a fresh stream on a and returns where a sends it
	// (the URL to open, the id to resume with), or ok false when a served
	// it (b not known yet).
	redirected := func() (to, lastID string, ok bool) {
		if transportOf(t) == client.TransportWS {
			ws := dialFrames(t, ctx, a.URL()+"/v1/ws?topic=r", "")
			defer ws.close()
			f := ws.next(t)
			if f.Event == push.EventHello {
				return "", "", false
			}
			var m push.Moved
			if err := json.Unmarshal([]byte(f.Data), &m); f.Event != push.EventMoved || err != nil || len(m.Alternates) != 1 || f.ID == "" {
				t.Fatalf("refused ws stream: %+v, want herald.moved naming one peer, with the stream's position as id", f)
			}
			if code := ws.closed(t); code != 4307 {
				t.Fatalf("redirected ws stream closed with %d, want 4307", code)
			}
			return m.Alternates[0] + "/v1/ws?topic=r", f.ID, true
		}
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noFollow.Get(a.URL() + "/v1/stream?topic=r")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Location"), "", resp.StatusCode == http.StatusTemporaryRedirect
	}
	var loc, lastID string
	eventually(t, 20*time.Second, "a redirect to b", func() bool {
		var ok bool
		loc, lastID, ok = redirected()
		return ok
	})
	u, err := url.Parse(loc)
	bu, _ := url.Parse(b.URL())
	if err != nil || u.Host != bu.Host {
		t.Fatalf("redirect to %q (%v), want b %s", loc, err, b.URL())
	}
	var want []string
	for i := range 3 {
		d := fmt.Sprintf("r-%d", i)
		publish(d)
		want = append(want, d)
	}

	var next func() sse.Event
	if transportOf(t) == client.TransportWS {
		ws := dialFrames(t, ctx, loc, lastID)
		defer ws.close()
		next = func() sse.Event {
			f := ws.next(t)
			return sse.Event{ID: f.ID, Type: f.Event, Data: f.Data}
		}
	} else {
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
		next = func() sse.Event {
			t.Helper()
			select {
			case ev := <-events:
				return ev
			case <-time.After(5 * time.Second):
				t.Fatal("no event within 5s")
			}
			return sse.Event{}
		}
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

// frames is a raw WebSocket stream (GET /v1/ws) read frame by frame.
type frames struct {
	conn *websocket.Conn
}

// dialFrames opens the WebSocket stream at rawURL (an http:// URL),
// resuming after lastID when set.
func dialFrames(t *testing.T, ctx context.Context, rawURL, lastID string) *frames {
	t.Helper()
	h := http.Header{}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(rawURL, "http"), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("ws %s: %v", rawURL, err)
	}
	conn.SetReadLimit(1 << 20)
	return &frames{conn: conn}
}

// next reads the next frame, failing the test after 5s.
func (f *frames) next(t *testing.T) wire.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := f.conn.Read(ctx)
	if err != nil {
		t.Fatalf("ws read: %v", err)
	}
	var fr wire.Frame
	if typ != websocket.MessageText || json.Unmarshal(b, &fr) != nil {
		t.Fatalf("not a Herald frame: %q", b)
	}
	return fr
}

// closed reads until the socket ends and returns its close code (-1: no
// close frame).
func (f *frames) closed(t *testing.T) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := f.conn.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

func (f *frames) close() { _ = f.conn.CloseNow() }
