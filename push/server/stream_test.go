package server_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/server"
)

const wait = 5 * time.Second

// storeFactory builds a fresh, empty store with the given retention.
type storeFactory func(t testing.TB, r push.Retention) push.Store

// eachStore runs fn against every store implementation.
func eachStore(t *testing.T, fn func(t *testing.T, newStore storeFactory)) {
	t.Run("memory", func(t *testing.T) { fn(t, newMemStore) })
	t.Run("redis", func(t *testing.T) { fn(t, newRedisStore) })
}

func TestStreamHeadersHelloAndLive(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n := startNode(t, newStore(t, push.Retention{}), nil)
		s := n.openStream(t, []string{"a", "b"}, "", nil)
		h := s.resp.Header
		if ct := h.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("Content-Type %q", ct)
		}
		if h.Get("Cache-Control") != "no-cache" || h.Get("X-Accel-Buffering") != "no" {
			t.Errorf("missing streaming headers: %v", h)
		}
		if h.Get("Connection") != "" && s.resp.ProtoMajor == 2 {
			t.Errorf("Connection header on HTTP/2")
		}
		hello := s.next(wait)
		if hello.Type != push.EventHello || hello.ID == "" {
			t.Fatalf("first event %+v, want id-bearing herald.hello", hello)
		}
		if d, ok := s.dec.Retry(); !ok || d < time.Second || d > 5*time.Second {
			t.Errorf("retry %v %v, want jittered 1s..5s", d, ok)
		}
		var hd helloEvent
		decodeJSON(t, hello.Data, &hd)
		if hd.Session == "" || hd.Cursor != hello.ID || hd.Resumed {
			t.Errorf("hello data %+v", hd)
		}
		n.publish("a", "greet", "line1\nline2\r\nline3\rline4")
		n.publish("b", "", "  leading spaces, ünïcødé ✓")
		// Order holds per topic, not across topics (README, Guarantees):
		// publishes racing the connect's catch-up read may arrive b first.
		want := map[string]struct{ typ, data string }{
			"a": {"greet", "line1\nline2\nline3\nline4"},
			"b": {"message", "  leading spaces, ünïcødé ✓"},
		}
		seen := map[string]uint64{"a": 0, "b": 0}
		for i := range 2 {
			ev := s.next(wait)
			got := offsets(t, ev.ID, []string{"a", "b"})
			topic := "a"
			if got["b"] > seen["b"] {
				topic = "b"
			}
			if got[topic] != 1 || got[other(topic)] != seen[other(topic)] {
				t.Errorf("event %d cursor offsets %v after %v: want exactly one topic advanced by one", i+1, got, seen)
			}
			if w := want[topic]; ev.Type != w.typ || ev.Data != w.data {
				t.Errorf("event %d (topic %s) = %+v, want type %q data %q", i+1, topic, ev, w.typ, w.data)
			}
			seen = got
		}
		if seen["a"] != 1 || seen["b"] != 1 {
			t.Errorf("final cursor offsets %v, want a=1 b=1", seen)
		}
	})
}

func TestResumeExactAfterDisconnect(t *testing.T) { forTransports(t, testResumeExactAfterDisconnect) }

func testResumeExactAfterDisconnect(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n := startNode(t, newStore(t, push.Retention{}), nil)
		topics := []string{"a", "b"}
		s := n.openStream(t, topics, "", nil)
		s.next(wait) // hello
		for i := 1; i <= 3; i++ {
			n.publish("a", "", fmt.Sprint("a", i))
		}
		var last string
		for i := 1; i <= 3; i++ {
			last = s.next(wait).ID
		}
		s.Close()
		for i := 4; i <= 6; i++ {
			n.publish("a", "", fmt.Sprint("a", i))
			n.publish("b", "", fmt.Sprint("b", i))
		}
		r := n.openStream(t, topics, last, nil)
		hello := r.next(wait)
		var hd helloEvent
		decodeJSON(t, hello.Data, &hd)
		if hello.Type != push.EventHello || hello.ID != last || !hd.Resumed {
			t.Fatalf("hello on resume: %+v %+v (id should equal the client's cursor)", hello, hd)
		}
		got := map[string][]string{}
		for range 6 {
			ev := r.next(wait)
			topic := "a"
			if strings.HasPrefix(ev.Data, "b") {
				topic = "b"
			}
			got[topic] = append(got[topic], ev.Data)
		}
		if strings.Join(got["a"], ",") != "a4,a5,a6" || strings.Join(got["b"], ",") != "b4,b5,b6" {
			t.Fatalf("replayed %v, want a4..a6 and b4..b6 exactly once in order", got)
		}
		// Live continues with no duplicate at the seam.
		n.publish("a", "", "a7")
		if ev := r.next(wait); ev.Data != "a7" {
			t.Fatalf("live after replay = %q", ev.Data)
		}
		r.noEvent(200 * time.Millisecond)
	})
}

func TestHelloCursorResumesFromConnectPoint(t *testing.T) {
	forTransports(t, testHelloCursorResumesFromConnectPoint)
}

func testHelloCursorResumesFromConnectPoint(t *testing.T) {
	// A client that drops before its first data event resumes from where it
	// connected, not from a later head.
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n := startNode(t, newStore(t, push.Retention{}), nil)
		n.publish("a", "", "before")
		s := n.openStream(t, []string{"a"}, "", nil)
		hello := s.next(wait)
		s.Close()
		n.publish("a", "", "missed-1")
		n.publish("a", "", "missed-2")
		r := n.openStream(t, []string{"a"}, hello.ID, nil)
		r.next(wait)
		if a, b := r.next(wait).Data, r.next(wait).Data; a != "missed-1" || b != "missed-2" {
			t.Fatalf("got %q %q", a, b)
		}
	})
}

func TestFromEarliestAndQueryCursor(t *testing.T) { forTransports(t, testFromEarliestAndQueryCursor) }

func testFromEarliestAndQueryCursor(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n := startNode(t, newStore(t, push.Retention{}), nil)
		n.publish("a", "", "1")
		n.publish("a", "", "2")
		s := n.openStream(t, []string{"a"}, "", url.Values{"from": {"earliest"}})
		s.next(wait)
		first := s.next(wait)
		if first.Data != "1" || s.next(wait).Data != "2" {
			t.Fatal("from=earliest did not replay everything retained")
		}
		// First request carrying the cursor as a query parameter.
		n.publish("a", "", "3")
		r := n.openStream(t, []string{"a"}, "", url.Values{"last_event_id": {first.ID}})
		r.next(wait)
		if r.next(wait).Data != "2" || r.next(wait).Data != "3" {
			t.Fatal("last_event_id query parameter not honoured")
		}
	})
}

func TestResumeTrimmedSendsReset(t *testing.T) { forTransports(t, testResumeTrimmedSendsReset) }

func testResumeTrimmedSendsReset(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n := startNode(t, newStore(t, push.Retention{MaxLen: 5}), nil)
		s := n.openStream(t, []string{"a"}, "", nil)
		s.next(wait)
		n.publish("a", "", "1")
		id1 := s.next(wait).ID
		s.Close()
		for i := 2; i <= 200; i++ {
			n.publish("a", "", fmt.Sprint(i))
		}
		info := topicInfo(t, n, "a")
		r := n.openStream(t, []string{"a"}, id1, nil)
		hello := r.next(wait)
		if hello.Type != push.EventHello || hello.ID != "" {
			t.Fatalf("hello before a reset must not carry an id: %+v", hello)
		}
		reset := r.next(wait)
		if reset.Type != push.EventReset || reset.ID == "" {
			t.Fatalf("want id-bearing herald.reset, got %+v", reset)
		}
		var rd resetEvent
		decodeJSON(t, reset.Data, &rd)
		if len(rd.Streams) != 1 || rd.Streams[0].Reason != push.ResetTrimmed || rd.Streams[0].Topic != "a" ||
			rd.Streams[0].LostFrom != 2 || rd.Streams[0].LostTo != info.First-1 || rd.Streams[0].ContinueFrom != info.First {
			t.Fatalf("reset %+v, want trimmed a lost 2..%d, continue from %d", rd, info.First-1, info.First)
		}
		if got := offsets(t, reset.ID, []string{"a"})["a"]; got != info.First-1 {
			t.Fatalf("reset cursor at %d, want %d (before the retained stream)", got, info.First-1)
		}
		// Only the trimmed events are lost: the retained ones follow in
		// order, then live events; nothing is skipped unnamed.
		for want := info.First; want <= 200; want++ {
			if ev := r.next(wait); ev.Data != fmt.Sprint(want) {
				t.Fatalf("after reset got %q, want retained %d", ev.Data, want)
			}
		}
		n.publish("a", "", "201")
		if ev := r.next(wait); ev.Data != "201" {
			t.Fatalf("after the retained stream got %q, want live 201", ev.Data)
		}
	})
}

func TestResumeEpochChangedSendsReset(t *testing.T) {
	forTransports(t, testResumeEpochChangedSendsReset)
}

func testResumeEpochChangedSendsReset(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		last := lostHistoryCursor(t, newStore, []string{"a", "b"}, "a x1", "a x2", "a x3", "b y")
		// Another store instance: same topics, different epochs (history
		// lost). a's new lineage is behind the client; b has none yet. Both
		// are pinned as changed even when a tag collides (1 in 256 each):
		// b has no lineage, and a client past a's head after a failed
		// epoch check read that offset in another lineage.
		n := startNode(t, newStore(t, push.Retention{}), nil)
		n.publish("a", "", "new-a")
		r := n.openStream(t, []string{"a", "b"}, last, nil)
		r.next(wait)
		expectEpochChanged(t, r, map[string]uint64{"a": 4, "b": 2})
		// The new lineage is new to the client: it is replayed, not skipped.
		if ev := r.next(wait); ev.Data != "new-a" {
			t.Fatalf("after reset got %q, want the new epoch's new-a", ev.Data)
		}
		n.publish("b", "", "new-b")
		if ev := r.next(wait); ev.Data != "new-b" {
			t.Fatalf("after reset got %q", ev.Data)
		}
	})
}

func TestResumeAheadOfHeadSendsReset(t *testing.T) { forTransports(t, testResumeAheadOfHeadSendsReset) }

func testResumeAheadOfHeadSendsReset(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n := startNode(t, newStore(t, push.Retention{}), nil)
		res := n.publish("a", "", "1")
		c, _ := push.NewCursor([]string{"a"}, []string{"local"})
		c.SetAt(0, push.Position{Epoch: res.Epoch, Offset: 50})
		r := n.openStream(t, []string{"a"}, c.String(), nil)
		r.next(wait)
		reset := r.next(wait)
		var rd resetEvent
		decodeJSON(t, reset.Data, &rd)
		if len(rd.Streams) != 1 || rd.Streams[0].Reason != push.ResetAhead || rd.Streams[0].LostFrom != 2 || rd.Streams[0].LostTo != 50 {
			t.Fatalf("reset %+v", rd)
		}
	})
}

// A stream whose new epoch carries the old one's 8-bit cursor tag, beside a
// stream whose epoch visibly changed: the client is past the first stream's
// head, which a stream never is within its own epoch, so that lineage is
// replayed from its start rather than resumed at its head (which would skip
// it silently).
func TestResumeAheadAfterAnEpochChangeReplaysTheLineage(t *testing.T) {
	forTransports(t, testResumeAheadAfterAnEpochChangeReplaysTheLineage)
}

func testResumeAheadAfterAnEpochChangeReplaysTheLineage(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore storeFactory) {
		n := startNode(t, newStore(t, push.Retention{}), nil)
		resA := n.publish("a", "", "a1")
		resB := n.publish("b", "", "b1")
		c, _ := push.NewCursor([]string{"a", "b"}, []string{"local"})
		c.SetAt(0, push.Position{Epoch: collidingEpoch(t, resA.Epoch, true), Offset: 5})
		c.SetAt(1, push.Position{Epoch: collidingEpoch(t, resB.Epoch, false), Offset: 1})
		r := n.openStream(t, []string{"a", "b"}, c.String(), nil)
		r.next(wait)
		expectEpochChanged(t, r, map[string]uint64{"a": 6, "b": 2})
		got := []string{r.next(wait).Data, r.next(wait).Data}
		slices.Sort(got)
		if !slices.Equal(got, []string{"a1", "b1"}) {
			t.Fatalf("after the reset got %q, want both lineages replayed: a1, b1", got)
		}
	})
}

// expectEpochChanged reads the next event, a herald.reset that must name
// exactly the topics of lostFrom, each epoch_changed from its offset there
// and continuing from 1 (the new lineage's start).
func expectEpochChanged(t *testing.T, r *stream, lostFrom map[string]uint64) {
	t.Helper()
	reset := r.next(wait)
	var rd resetEvent
	decodeJSON(t, reset.Data, &rd)
	if reset.Type != push.EventReset || len(rd.Streams) != len(lostFrom) {
		t.Fatalf("reset %+v %+v, want one entry per topic of %v", reset, rd, lostFrom)
	}
	for _, sr := range rd.Streams {
		want, ok := lostFrom[sr.Topic]
		if !ok || sr.Reason != push.ResetEpochChanged || sr.LostFrom != want || sr.ContinueFrom != 1 {
			t.Errorf("stream reset %+v, want epoch_changed lost from %d, continue from 1", sr, want)
		}
	}
}

// lostHistoryCursor publishes events ("topic data" each) on a node over a
// store of its own and returns the id of a client of topics that read
// them all from the earliest: a cursor of an epoch that any other store
// from newStore has not got (its history was lost).
func lostHistoryCursor(t *testing.T, newStore storeFactory, topics []string, events ...string) string {
	t.Helper()
	old := startNode(t, newStore(t, push.Retention{}), nil)
	for _, e := range events {
		topic, data, _ := strings.Cut(e, " ")
		old.publish(topic, "", data)
	}
	s := old.openStream(t, topics, "", url.Values{"from": {"earliest"}})
	s.next(wait)
	var last string
	for range events {
		last = s.next(wait).ID
	}
	return last
}

// collidingEpoch returns an epoch other than e whose cursor tag equals e's
// (collide) or differs from it, reading the tag from the cursor's wire form:
// the last byte of a one-stream cursor at offset 1.
func collidingEpoch(t *testing.T, e string, collide bool) string {
	t.Helper()
	tag := func(e string) byte {
		c, err := push.NewCursor([]string{"t"}, []string{"o"})
		if err != nil {
			t.Fatal(err)
		}
		c.SetAt(0, push.Position{Epoch: e, Offset: 1})
		raw, err := base64.RawURLEncoding.DecodeString(c.String())
		if err != nil {
			t.Fatal(err)
		}
		return raw[len(raw)-1]
	}
	for i := range 1 << 16 {
		if o := fmt.Sprintf("other-%d", i); o != e && (tag(o) == tag(e)) == collide {
			return o
		}
	}
	t.Fatalf("no epoch found with collide=%v against %q", collide, e)
	return ""
}

func TestForeignAndMalformedCursors(t *testing.T) { forTransports(t, testForeignAndMalformedCursors) }

func testForeignAndMalformedCursors(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), nil)
	n.publish("a", "", "1")
	other, _ := push.NewCursor([]string{"x", "y"}, []string{"local"})
	r := n.openStream(t, []string{"a"}, other.String(), nil)
	hello := r.next(wait)
	if hello.ID != "" {
		t.Fatalf("hello carried id %q for a foreign cursor", hello.ID)
	}
	reset := r.next(wait)
	var rd resetEvent
	decodeJSON(t, reset.Data, &rd)
	if len(rd.Streams) != 1 || rd.Streams[0].Reason != push.ResetForeignCursor {
		t.Fatalf("reset %+v", rd)
	}
	mine, _ := push.NewCursor([]string{"a"}, []string{"local"})
	mine.SetAt(0, push.Position{Epoch: "e", Offset: 1 << 20})
	truncated := mine.String()[:len(mine.String())-2]
	// A future version byte, as a newer Herald would mint it.
	future, _ := base64.RawURLEncoding.DecodeString(mine.String())
	future[0] = 99
	bads := []string{"garbage!", "12345", strings.Repeat("A", 600), truncated, mine.String() + "AAAA",
		base64.RawURLEncoding.EncodeToString(future)}
	sdk := http.Header{"Herald-Client": {"go"}}
	for _, bad := range bads {
		// An SDK client handles errors itself: a clear 400.
		_, status, body := n.tryStreamWith([]string{"a"}, bad, nil, sdk)
		if status != http.StatusBadRequest || !strings.Contains(body, `"code":"invalid_cursor"`) {
			t.Errorf("SDK, cursor %.20q: %d %s", bad, status, body)
		}
	}
	// A browser EventSource (no Herald-Client) would stop for good on a
	// 400: it gets 200, a reset naming the stream invalid_cursor, and the
	// stream from where `from` says: the live head by default, the whole
	// history with from=earliest.
	for i, bad := range bads {
		for _, from := range []string{"", "earliest"} {
			var extra url.Values
			if from != "" {
				extra = url.Values{"from": {from}}
			}
			s, status, body := n.tryStreamWith([]string{"a"}, bad, extra, nil)
			if status != http.StatusOK {
				t.Fatalf("browser, cursor %.20q: %d %s, want 200 + reset", bad, status, body)
			}
			if h := s.next(wait); h.Type != push.EventHello || h.ID != "" {
				t.Fatalf("browser, cursor %.20q: first event %+v, want a hello without id", bad, h)
			}
			reset := s.next(wait)
			var rd resetEvent
			decodeJSON(t, reset.Data, &rd)
			head := topicInfo(t, n, "a").Last
			wantFrom := head + 1
			if from == "earliest" {
				wantFrom = 1
			}
			if reset.Type != push.EventReset || reset.ID == "" || len(rd.Streams) != 1 ||
				rd.Streams[0].Reason != push.ResetInvalidCursor || rd.Streams[0].ContinueFrom != wantFrom {
				t.Fatalf("browser, cursor %.20q, from %q: reset %+v %+v, want invalid_cursor continuing at %d", bad, from, reset, rd, wantFrom)
			}
			if from == "earliest" {
				if ev := s.next(wait); ev.Data != "1" {
					t.Fatalf("from=earliest after an invalid cursor: got %+v, want the first event", ev)
				}
			}
			live := fmt.Sprintf("live-%d-%s", i, from)
			n.publish("a", "", live)
			for {
				ev := s.next(wait)
				if ev.Data == live {
					break
				}
				if from == "" || ev.Type == push.EventReset {
					t.Fatalf("browser, cursor %.20q: got %+v before the live event", bad, ev)
				}
			}
			s.Close()
		}
	}
}

func topicInfo(t testing.TB, n *testNode, topic string) (out struct {
	First  uint64 `json:"first_offset"`
	Last   uint64 `json:"last_offset"`
	Length int64  `json:"length"`
	Epoch  string `json:"epoch"`
}) {
	t.Helper()
	resp, err := http.Get(n.URL + "/v1/topics/" + topic)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("topic info: %d", resp.StatusCode)
	}
	if err := jsonDecode(resp, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCoalescingHoldsABusyStreamsWrites: with coalescing on and every write
// counted as late, events arriving right after a write wait for the window
// and then all arrive, in order, none lost.
func TestCoalescingHoldsABusyStreamsWrites(t *testing.T) {
	const window = 300 * time.Millisecond
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) {
		c.Stream.CoalesceWindow = window
		c.Stream.CoalesceLate = -1
	})
	st := n.openStream(t, []string{"co"}, "", nil)
	defer st.Close()
	if ev := st.next(5 * time.Second); ev.Type != push.EventHello {
		t.Fatalf("first event %q, want hello", ev.Type)
	}
	// A burst of warm-up events brings the stream's average gap (it
	// starts at the window) under half the window; then "0", which goes
	// out through the live loop's write (a warm-up appended before the
	// connect's history read may be replayed instead), and a hold follows
	// it. The burst is published without waiting for each delivery: a
	// publisher that waits for its own held events spaces them a window
	// apart, and such a stream is not fast.
	const warm = 12
	for i := range warm {
		n.publish("co", "x", "w"+strconv.Itoa(i))
	}
	for i := range warm {
		if ev := st.next(5 * time.Second); ev.Data != "w"+strconv.Itoa(i) {
			t.Fatalf("event %q, want w%d", ev.Data, i)
		}
	}
	n.publish("co", "x", "0")
	if ev := st.next(5 * time.Second); ev.Data != "0" {
		t.Fatalf("event %q, want 0", ev.Data)
	}
	t0 := time.Now()
	for i := 1; i <= 4; i++ {
		n.publish("co", "x", strconv.Itoa(i))
	}
	for i := 1; i <= 4; i++ {
		ev := st.next(5 * time.Second)
		if ev.Data != strconv.Itoa(i) {
			t.Fatalf("event %d: data %q", i, ev.Data)
		}
		if i == 1 {
			// The hold starts at the previous write, which t0 follows.
			if d := time.Since(t0); d < window/2 {
				t.Fatalf("second write %s after the first, want it held for about %s", d, window)
			}
		}
	}
	// The node counts its holds and how many events its writes carry.
	st1 := n.Srv.Stats()
	if st1.Holds == 0 || st1.Writes == 0 || st1.Writes >= st1.Delivered {
		t.Fatalf("stats %+v: want holds counted and fewer writes than events delivered", st1)
	}
}

// A stream whose events come further apart than half the window is never
// held, late or not: a hold would only delay it.
func TestCoalescingLeavesSlowStreamsAlone(t *testing.T) {
	forTransports(t, testCoalescingLeavesSlowStreamsAlone)
}

func testCoalescingLeavesSlowStreamsAlone(t *testing.T) {
	const window = 300 * time.Millisecond
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) {
		c.Stream.CoalesceWindow = window
		c.Stream.CoalesceLate = -1 // every write counts as late
	})
	st := n.openStream(t, []string{"co"}, "", nil)
	defer st.Close()
	if ev := st.next(5 * time.Second); ev.Type != push.EventHello {
		t.Fatalf("first event %q, want hello", ev.Type)
	}
	for i := range 4 {
		if i > 0 {
			time.Sleep(window/2 + 50*time.Millisecond) // accept times ≥ 200ms apart
		}
		d := strconv.Itoa(i)
		n.publish("co", "x", d)
		if ev := st.next(5 * time.Second); ev.Data != d {
			t.Fatalf("event %q, want %q", ev.Data, d)
		}
	}
	if h := n.Srv.Stats().Holds; h != 0 {
		t.Fatalf("%d holds on a stream with events 200ms apart (window %s)", h, window)
	}
}

// TestCoalescingNoHoldOnAnIdleNode: a fan-out wave on a node with CPU to
// spare makes many writes late (here every one: CoalesceLate is 1ns, as
// the tail of a 2,000-stream wave is with 20ms), yet each stream's write
// goes out well before its next event is due, so the node is not
// overloaded and no write is held: the streams get every event at once.
// (Before ADR 0020 lateness alone held these fast streams.)
func TestCoalescingNoHoldOnAnIdleNode(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) {
		c.Stream.CoalesceWindow = 250 * time.Millisecond
		c.Stream.CoalesceLate = time.Nanosecond
	})
	const subs, events = 20, 40
	var streams []*stream
	for range subs {
		st := n.openStream(t, []string{"fan"}, "", nil)
		if ev := st.next(5 * time.Second); ev.Type != push.EventHello {
			t.Fatalf("first event %q, want hello", ev.Type)
		}
		streams = append(streams, st)
	}
	// 25 events/s: 40ms apart on average, fast enough for a hold to
	// gather several (under half the window).
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	for i := range events {
		<-tick.C
		n.publish("fan", "x", strconv.Itoa(i))
	}
	for _, st := range streams {
		for i := range events {
			if ev := st.next(5 * time.Second); ev.Data != strconv.Itoa(i) {
				t.Fatalf("event %q, want %d", ev.Data, i)
			}
		}
	}
	st := n.Srv.Stats()
	if st.Holds != 0 {
		t.Fatalf("stats %+v: %d holds on an idle node", st, st.Holds)
	}
	if st.Writes < subs*events/2 {
		t.Fatalf("stats %+v: want about one write per event per stream", st)
	}
}

// other is the other topic of the two-topic streams above.
func other(topic string) string {
	if topic == "a" {
		return "b"
	}
	return "a"
}

// Keep-alives: a silent stream gets a comment every heartbeat; a stream
// whose events come more often than half the interval needs none (its
// events keep proxies from timing it out) and gets none.
func TestKeepAliveCommentsOnlyOnSilentStreams(t *testing.T) {
	const beat = 150 * time.Millisecond
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) { c.Stream.Heartbeat = beat })
	comments := func(topic string, during time.Duration, publish bool) (events, beats int) {
		ctx, cancel := context.WithTimeout(context.Background(), during)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v1/stream?topic="+topic, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %s: %v %v", topic, resp, err)
		}
		defer resp.Body.Close()
		counted := make(chan [2]int, 1)
		go func() {
			var c [2]int
			br := bufio.NewReader(resp.Body)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					counted <- c
					return
				}
				switch {
				case strings.HasPrefix(line, "data:"):
					c[0]++
				case strings.HasPrefix(line, ":"):
					c[1]++
				}
			}
		}()
		if publish {
			tick := time.NewTicker(beat / 5)
			defer tick.Stop()
			for i := 0; ctx.Err() == nil; i++ {
				select {
				case <-ctx.Done():
				case <-tick.C:
					n.publish(topic, "", strconv.Itoa(i))
				}
			}
		}
		c := <-counted
		return c[0], c[1]
	}
	// About 10 intervals: a silent stream gets a comment in (nearly) each.
	if _, beats := comments("silent", 10*beat, false); beats < 6 {
		t.Errorf("silent stream: %d keep-alive comments in %s (heartbeat %s), want at least 6", beats, 10*beat, beat)
	}
	if events, beats := comments("busy", 10*beat, true); events < 20 || beats > 1 {
		t.Errorf("busy stream: %d events and %d keep-alive comments, want >= 20 events and at most 1 comment (before its first event)", events, beats)
	}
}

// GET /v1/topics/{topic} used to show max_age in nanoseconds
// (86400000000000).
func TestTopicInfoRetentionIsReadable(t *testing.T) {
	policy := push.RetentionPolicy{
		Default: push.Retention{MaxLen: 100, MaxAge: 24 * time.Hour},
		Rules:   []push.RetentionRule{{Pattern: "chat.*", Retention: push.Retention{MaxLen: 5, MaxAge: 90 * time.Second}}},
	}
	n := startNode(t, newMemStore(t, policy.Default), func(c *server.Config) { c.Retention = policy })
	for topic, want := range map[string]string{
		"news":    `"retention":{"max_len":100,"max_age":"24h0m0s","max_age_seconds":86400}`,
		"chat.eu": `"retention":{"max_len":5,"max_age":"1m30s","max_age_seconds":90}`,
	} {
		resp, err := http.Get(n.URL + "/v1/topics/" + topic)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %s, want %s", topic, resp.StatusCode, body, want)
		}
	}
}
