package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/redistest"
)

// While the store is unreachable, a resume that the node's recent-events
// cache covers is served from it (no gap, no duplicate); one it does not
// cover is shed browser-safely, never answered with a made-up reset.
func TestResumeFromRecentCacheWhileStoreDown(t *testing.T) {
	forTransports(t, testResumeFromRecentCacheWhileStoreDown)
}

func testResumeFromRecentCacheWhileStoreDown(t *testing.T) {
	rs := redistest.StartServer(t)
	n := startNode(t, newRedisStoreAt(t, rs.URL()), nil)
	watcher := n.openStream(t, []string{"rc"}, "", nil) // keeps the topic's cache warm
	hello(t, watcher)
	client := n.openStream(t, []string{"rc"}, "", nil)
	_, start := hello(t, client)

	for i := 1; i <= 5; i++ {
		n.publish("rc", "m", string(rune('0'+i)))
	}
	var ids []string
	for range 5 {
		ev := client.next(5 * time.Second)
		ids = append(ids, ev.ID)
		watcher.next(5 * time.Second)
	}
	client.Close()

	rs.Kill()
	// Resume after event 3: events 4 and 5 come from the cache.
	s := n.openStream(t, []string{"rc"}, ids[2], nil)
	h, _ := hello(t, s)
	if !h.Resumed {
		t.Fatal("hello does not say resumed")
	}
	for _, want := range []string{"4", "5"} {
		if ev := s.next(5 * time.Second); ev.Data != want {
			t.Fatalf("from cache got %+v, want data %q", ev, want)
		}
	}
	// A resume from before the first event is covered too (cache holds 1..5).
	s2 := n.openStream(t, []string{"rc"}, start, nil)
	hello(t, s2)
	if ev := s2.next(5 * time.Second); ev.Data != "1" {
		t.Fatalf("from cache got %+v, want data 1", ev)
	}

	// A topic with no local subscribers has no cache: shed browser-safely
	// (SSE: 200 + retry: only; WebSocket: close 4503 with retry_ms).
	cold, status, body := n.tryStream([]string{"cold"}, "", nil)
	if status != http.StatusOK {
		t.Fatalf("uncached topic while the store is down: %d %s, want a browser-safe shed", status, body)
	}
	cold.shedOnly(5 * time.Second)
}
