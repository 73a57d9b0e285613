package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/server"
)

// TestStarvedNodeKeepsPromptReaders: on a CPU-starved node a stream's
// goroutine gets to run long after the hub queued its event, so every
// queue head is older than MaxLag when the stream takes it; a client that
// reads promptly is not slow and must not be cut off (ADR 0034). The
// starvation is injected, not burned: the hub stamps every dispatch 10s
// in the past (hub.Config.Now), which is what the stream sees when it
// runs 10s late.
func TestStarvedNodeKeepsPromptReaders(t *testing.T) {
	forTransports(t, testStarvedNodeKeepsPromptReaders)
}

func testStarvedNodeKeepsPromptReaders(t *testing.T) {
	store := newMemStore(t, push.Retention{MaxLen: 1000})
	late := func() time.Time { return time.Now().Add(-10 * time.Second) }
	h, err := hub.New(hub.Config{Store: store, Logger: quietLogger(), Now: late})
	if err != nil {
		t.Fatal(err)
	}
	n := startNodeWithHub(t, store, h, func(c *server.Config) {
		c.Stream.Queue = hub.Limits{MaxLag: 500 * time.Millisecond}
	})
	s := n.openStream(t, []string{"a"}, "", nil)
	s.next(wait) // hello
	waitFor(t, wait, "the stream open", func() bool { return n.Srv.Stats().Streams == 1 })
	const total = 20
	for i := 1; i <= total; i++ {
		n.publish("a", "", "x")
		ev := s.next(wait)
		if got := offsets(t, ev.ID, []string{"a"})["a"]; got != uint64(i) || strings.HasPrefix(ev.Type, "herald.") {
			t.Fatalf("got %q at offset %d, want event %d", ev.Type, got, i)
		}
	}
	if st := n.Srv.Stats(); st.Streams != 1 || st.SlowEnded != 0 || st.LagCutoffs != 0 || n.Hub.Stats().SlowCutoffs != 0 {
		t.Fatalf("node stats %+v, hub %+v: a prompt reader on a starved node was cut off as slow", st, n.Hub.Stats())
	}
}

// TestStalledReaderCutOffByLag: a client that stops reading is still cut
// off as slow by the queue's MaxLag, long before its write deadline: the
// stream's write blocks on the full socket and that stall is the lag. The
// queue's memory bounds (MaxEvents, MaxBytes) are set out of reach, so
// the lag alone cuts it; the hub then drops its queue.
func TestStalledReaderCutOffByLag(t *testing.T) {
	forTransports(t, testStalledReaderCutOffByLag)
}

func testStalledReaderCutOffByLag(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{MaxLen: 100000}), func(c *server.Config) {
		c.Stream.Queue = hub.Limits{MaxEvents: 1 << 20, MaxBytes: 1 << 30, MaxLag: 200 * time.Millisecond}
		c.Stream.WriteTimeout = time.Minute
	})
	slow := openNonReader(t, n, "a")
	waitFor(t, wait, "the stream open", func() bool { return n.Srv.Stats().Streams == 1 })
	payload := strings.Repeat("z", 4000)
	const most = 10000 // 40 MB: far beyond any socket buffer
	start, published := time.Now(), 0
	for ; published < most && n.Hub.Stats().SlowCutoffs == 0; published++ {
		n.publish("a", "", payload)
	}
	if n.Hub.Stats().SlowCutoffs != 1 {
		t.Fatalf("a stream that reads nothing was not cut off after %d events of 4 KB (hub %+v)", published, n.Hub.Stats())
	}
	t.Logf("cut off after %d events, %v (write deadline %v)", published, time.Since(start).Round(time.Millisecond), time.Minute)
	// Reading, the client lets the blocked write finish; the stream then
	// ends as slow.
	lastID, got, end := slow()
	waitFor(t, wait, "the stream ended", func() bool { return n.Srv.Stats().Streams == 0 })
	if st := n.Srv.Stats(); st.SlowEnded != 1 {
		t.Fatalf("node stats %+v: want the stream ended as slow", st)
	}
	if from := offsets(t, lastID, []string{"a"})["a"]; from != uint64(got) {
		t.Fatalf("slow subscriber's events end at offset %d after %d events (%v)", from, got, end)
	}
}
