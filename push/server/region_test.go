package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/sse"
	"github.com/heraldpush/herald/push/store/redisstore"
)

// twoRegions is regions "a" and "b", each a node over its own primary and a
// replica of the other region's primary. b's replica of a replicates
// through a fault proxy (pxA), so the cross-region link can be cut.
type twoRegions struct {
	a, b        *testNode
	pxA         *toxiclient.Proxy
	replicaBofA *redistest.Server
	primaryA    *redistest.Server
	primaryB    *redistest.Server
	storeBofA   push.Store
}

// awaitReplicaHead waits until b's replica of region a holds "news" up to
// offset last.
func (r *twoRegions) awaitReplicaHead(t testing.TB, last uint64, timeout time.Duration, what string) {
	t.Helper()
	waitFor(t, timeout, what, func() bool {
		in, err := r.storeBofA.Info(t.Context(), []string{"news"})
		return err == nil && in[0].Last == last
	})
}

func regionStore(t testing.TB, url, origin string, readOnly bool) push.Store {
	t.Helper()
	opts, err := redisstore.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	s, err := redisstore.New(redisstore.Config{Options: opts, Origin: origin, KeyPrefix: "h", ReadOnly: readOnly, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func startRegionNode(t testing.TB, name string, local push.Store, remote push.Store, mutate func(*server.Config)) *testNode {
	t.Helper()
	h, err := hub.New(hub.Config{Store: local, Remotes: []push.Store{remote}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return startNodeWithHub(t, local, h, func(c *server.Config) {
		c.Node.Name, c.Node.Region, c.Remotes = name, local.Origin(), []push.Store{remote}
		c.Node.ReplicaWait = 300 * time.Millisecond
		c.Node.Interval = 100 * time.Millisecond
		if mutate != nil {
			mutate(c)
		}
	})
}

func startTwoRegions(t *testing.T) *twoRegions {
	t.Helper()
	r := &twoRegions{}
	r.primaryA = redistest.StartServer(t)
	r.primaryB = redistest.StartServer(t)
	r.pxA = redistest.StartProxy(t, "a-link", r.primaryA.Addr())
	r.replicaBofA = redistest.StartServer(t, redistest.WithReplicaOf(r.pxA.Listen))
	replicaAofB := redistest.StartServer(t, redistest.WithReplicaOf(r.primaryB.Addr()))
	r.storeBofA = regionStore(t, r.replicaBofA.URL(), "a", true)
	r.a = startRegionNode(t, "a1", regionStore(t, r.primaryA.URL(), "a", false), regionStore(t, replicaAofB.URL(), "b", true), nil)
	r.b = startRegionNode(t, "b1", regionStore(t, r.primaryB.URL(), "b", false), r.storeBofA, nil)
	return r
}

// collect reads data events (skipping control events) until n arrived.
func collect(t testing.TB, s *stream, n int, timeout time.Duration) ([]string, string) {
	t.Helper()
	var got []string
	last := ""
	deadline := time.Now().Add(timeout)
	for len(got) < n {
		ev := s.next(time.Until(deadline))
		if ev.ID != "" {
			last = ev.ID
		}
		if strings.HasPrefix(ev.Type, push.ControlPrefix) {
			continue
		}
		got = append(got, ev.Data)
	}
	return got, last
}

// TestRegionsCrossDelivery: a subscriber in region a receives events
// published in both regions (b's through a's replica of b), and its
// cursor resumes in region b exactly: every event once, none twice.
func TestRegionsCrossDelivery(t *testing.T) { forTransports(t, testRegionsCrossDelivery) }

func testRegionsCrossDelivery(t *testing.T) {
	r := startTwoRegions(t)
	s := r.a.openStream(t, []string{"news"}, "", nil)
	hello := s.next(5 * time.Second)
	if hello.Type != push.EventHello {
		t.Fatalf("first event %q", hello.Type)
	}
	for i := 1; i <= 5; i++ {
		r.a.publish("news", "m", fmt.Sprintf("a%d", i))
		r.b.publish("news", "m", fmt.Sprintf("b%d", i))
	}
	got, last := collect(t, s, 10, 10*time.Second)
	assertPerOriginOrder(t, got, map[string]int{"a": 5, "b": 5})
	s.Close()

	for i := 6; i <= 8; i++ {
		r.a.publish("news", "m", fmt.Sprintf("a%d", i))
		r.b.publish("news", "m", fmt.Sprintf("b%d", i))
	}
	// b's replica of a must hold a8 before the resume is exact.
	r.awaitReplicaHead(t, 8, 5*time.Second, "a's events on b's replica")
	s2 := r.b.openStream(t, []string{"news"}, last, nil)
	got2, _ := collect(t, s2, 6, 10*time.Second)
	want := map[string]bool{"a6": true, "a7": true, "a8": true, "b6": true, "b7": true, "b8": true}
	for _, g := range got2 {
		if !want[g] {
			t.Fatalf("resume in b delivered %q (duplicate or foreign); got %v", g, got2)
		}
		delete(want, g)
	}
	s2.noEvent(300 * time.Millisecond)
}

// assertPerOriginOrder checks every origin's events arrived once, in order.
func assertPerOriginOrder(t testing.TB, got []string, want map[string]int) {
	t.Helper()
	next := map[string]int{}
	for _, g := range got {
		o := g[:1]
		next[o]++
		if g != fmt.Sprintf("%s%d", o, next[o]) {
			t.Fatalf("origin %s out of order or duplicated at %q: %v", o, g, got)
		}
	}
	for o, n := range want {
		if next[o] != n {
			t.Fatalf("origin %s: got %d events, want %d: %v", o, next[o], n, got)
		}
	}
}

// TestReplicaBehindCursor: the link from a to b's replica is cut, so a
// client that read a's newest events in a and resumes in b is ahead of b's
// copy. b waits briefly, then says so with a replica_behind reset, keeps the
// client's position, and once the link is back delivers only what is new:
// nothing repeated, nothing skipped.
func TestReplicaBehindCursor(t *testing.T) { forTransports(t, testReplicaBehindCursor) }

func testReplicaBehindCursor(t *testing.T) {
	r := startTwoRegions(t)
	s := r.a.openStream(t, []string{"news"}, "", nil)
	s.next(5 * time.Second) // hello
	for i := 1; i <= 3; i++ {
		r.a.publish("news", "m", fmt.Sprintf("a%d", i))
	}
	r.awaitReplicaHead(t, 3, 5*time.Second, "a3 on b's replica")
	if err := r.pxA.Disable(); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 6; i++ {
		r.a.publish("news", "m", fmt.Sprintf("a%d", i))
	}
	got, last := collect(t, s, 6, 10*time.Second)
	assertPerOriginOrder(t, got, map[string]int{"a": 6})
	s.Close()

	start := time.Now()
	s2 := r.b.openStream(t, []string{"news"}, last, nil)
	hello := s2.next(5 * time.Second)
	if hello.Type != push.EventHello || hello.ID != "" {
		t.Fatalf("want a hello without id before the reset, got %+v", hello)
	}
	reset := s2.next(5 * time.Second)
	waited := time.Since(start)
	if reset.Type != push.EventReset || reset.ID == "" {
		t.Fatalf("want a reset carrying the cursor, got %+v", reset)
	}
	var rs resetEvent
	decodeJSON(t, reset.Data, &rs)
	if len(rs.Streams) != 1 {
		t.Fatalf("reset %+v", rs)
	}
	st := rs.Streams[0]
	if st.Reason != push.ResetReplicaBehind || st.Origin != "a" || st.LostFrom != 4 || st.LostTo != 6 || st.ContinueFrom != 7 {
		t.Fatalf("reset stream %+v", st)
	}
	if waited < 300*time.Millisecond {
		t.Fatalf("reset after %s: the node did not wait for the replica (ReplicaWait 300ms)", waited)
	}
	t.Logf("replica_behind reset after %s", waited.Round(time.Millisecond))

	if err := r.pxA.Enable(); err != nil {
		t.Fatal(err)
	}
	r.awaitReplicaHead(t, 6, 20*time.Second, "b's replica to catch up")
	r.a.publish("news", "m", "a7")
	ev := nextData(t, s2, 20*time.Second)
	if ev.Data != "a7" {
		t.Fatalf("after catch-up got %q, want a7 (a4..a6 were already delivered in a)", ev.Data)
	}
	// The cursor now carries a7 in the old epoch: a resume in a continues.
	r.a.publish("news", "m", "a8")
	ev8 := nextData(t, s2, 20*time.Second)
	s2.Close()
	if ev8.Data != "a8" {
		t.Fatalf("got %q want a8", ev8.Data)
	}
	s3 := r.a.openStream(t, []string{"news"}, ev8.ID, nil)
	s3.next(5 * time.Second) // hello
	r.a.publish("news", "m", "a9")
	if ev := nextData(t, s3, 10*time.Second); ev.Data != "a9" {
		t.Fatalf("failback resume got %q, want a9", ev.Data)
	}
}

func nextData(t testing.TB, s *stream, timeout time.Duration) sse.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev := s.next(time.Until(deadline))
		if !strings.HasPrefix(ev.Type, push.ControlPrefix) {
			return ev
		}
		t.Logf("control event %s %s", ev.Type, ev.Data)
	}
}

// regionView is a Federation over in-process nodes: region b serving at
// its URL, its replica progress read from b's own node (what the WAN pool
// carries between processes; cluster tests cover the pool itself).
type regionView struct {
	mu     sync.Mutex
	b      *testNode
	states []string
}

func (f *regionView) Alternates() []string { return []string{f.b.URL} }
func (f *regionView) Regions() []node.RegionStatus {
	seen := map[string]int64{}
	for _, o := range f.b.Srv.Node().Origins() {
		seen[o.Origin] = o.Seq
	}
	return []node.RegionStatus{{Name: "b", State: "alive", Serving: 1, URLs: []string{f.b.URL}, Seen: seen}}
}
func (f *regionView) SetState(s string) {
	f.mu.Lock()
	f.states = append(f.states, s)
	f.mu.Unlock()
}
func (f *regionView) SetSeen(map[string]int64) {}

// TestEvacuationMovesStreams: an evacuation order makes the region refuse
// publishes (503 evacuating, with the alternates), waits until the other
// region's replica holds every event of this origin, then closes streams
// with herald.moved naming the other region; the client resumes there with
// nothing lost and nothing repeated.
func TestEvacuationMovesStreams(t *testing.T) { forTransports(t, testEvacuationMovesStreams) }

func testEvacuationMovesStreams(t *testing.T) {
	primaryA := redistest.StartServer(t)
	primaryB := redistest.StartServer(t)
	px := redistest.StartProxy(t, "a-link", primaryA.Addr())
	replicaBofA := redistest.StartServer(t, redistest.WithReplicaOf(px.Listen))
	replicaAofB := redistest.StartServer(t, redistest.WithReplicaOf(primaryB.Addr()))
	b := startRegionNode(t, "b1", regionStore(t, primaryB.URL(), "b", false), regionStore(t, replicaBofA.URL(), "a", true), nil)
	fed := &regionView{b: b}
	a := startRegionNode(t, "a1", regionStore(t, primaryA.URL(), "a", false), regionStore(t, replicaAofB.URL(), "b", true), func(c *server.Config) {
		c.Federation = fed
		c.Node.EvacuationWindow = 200 * time.Millisecond
		c.Node.EvacuationCatchUp = 20 * time.Second
	})
	admin := httptest.NewServer(a.Srv.AdminHandler(server.AdminExtras{}))
	t.Cleanup(admin.Close)

	s := a.openStream(t, []string{"news"}, "", nil)
	hello := s.next(5 * time.Second)
	var h push.Hello
	decodeJSON(t, hello.Data, &h)
	if len(h.Alternates) != 1 || h.Alternates[0] != b.URL {
		t.Fatalf("hello alternates %v, want [%s]", h.Alternates, b.URL)
	}
	for i := 1; i <= 3; i++ {
		a.publish("news", "m", fmt.Sprintf("a%d", i))
	}
	// Slow the link so the evacuation has to wait for the replica.
	if _, err := px.AddToxic("slow", "latency", "downstream", 1, toxiclient.Attributes{"latency": 500}); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 6; i++ {
		a.publish("news", "m", fmt.Sprintf("a%d", i))
	}
	_, last := collect(t, s, 6, 10*time.Second)

	resp, err := http.Post(admin.URL+"/v1/region/evacuate", "application/json", strings.NewReader(`{"active":true,"by":"test"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("evacuate: %d", resp.StatusCode)
	}
	// Publishing in a is refused with the alternates.
	pr, err := http.Post(a.URL+"/v1/topics/news/events", "application/json", strings.NewReader(`{"event":"m","data":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(pr.Body)
	pr.Body.Close()
	if pr.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"evacuating"`) || !strings.Contains(string(body), b.URL) {
		t.Fatalf("publish while evacuating: %d %s", pr.StatusCode, body)
	}
	// The stream ends with herald.moved, after b's replica holds a6.
	var moved sse.Event
	for moved.Type != push.EventMoved {
		moved = s.next(30 * time.Second)
	}
	if held, err := regionStoreInfo(t, replicaBofA.URL()); err != nil || held != 6 {
		t.Fatalf("herald.moved sent while b's replica of a held offset %d (err %v), want 6", held, err)
	}
	var mv push.Moved
	decodeJSON(t, moved.Data, &mv)
	if len(mv.Alternates) != 1 || mv.Alternates[0] != b.URL {
		t.Fatalf("moved %+v", mv)
	}
	// Resume in b: nothing again, and what b publishes arrives.
	s2 := b.openStream(t, []string{"news"}, last, nil)
	if hb := s2.next(5 * time.Second); hb.Type != push.EventHello || hb.ID == "" {
		t.Fatalf("resume in b: want hello with id (exact resume), got %+v", hb)
	}
	b.publish("news", "m", "b1")
	if ev := nextData(t, s2, 10*time.Second); ev.Data != "b1" {
		t.Fatalf("after evacuation got %q, want b1", ev.Data)
	}
	// Readiness fails while evacuating; calling it off restores service.
	rr, err := http.Get(admin.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	rr.Body.Close()
	if rr.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while evacuating: %d", rr.StatusCode)
	}
	resp, err = http.Post(admin.URL+"/v1/region/evacuate", "application/json", strings.NewReader(`{"active":false}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	a.publish("news", "m", "a7")
	fed.mu.Lock()
	states := strings.Join(fed.states, ",")
	fed.mu.Unlock()
	if states != "evacuating,alive" {
		t.Fatalf("federation states %q", states)
	}
}

// regionStoreInfo reads the last offset of news@a on a replica.
func regionStoreInfo(t testing.TB, url string) (uint64, error) {
	st := regionStore(t, url, "a", true)
	in, err := st.Info(t.Context(), []string{"news"})
	if err != nil {
		return 0, err
	}
	return in[0].Last, nil
}

// TestReplicationLagFollowsTheLink: the lag of origin a measured in region
// b (age of a's newest heartbeat on b's replica, the gauge
// herald_replication_lag_seconds) rises when the cross-region link is
// slowed and falls back when it recovers.
func TestReplicationLagFollowsTheLink(t *testing.T) {
	r := startTwoRegions(t)
	lag := func() time.Duration { return r.b.Srv.Node().ReplicationLag()["a"] }
	waitFor(t, 10*time.Second, "a measured lag in b", func() bool {
		l, ok := r.b.Srv.Node().ReplicationLag()["a"]
		return ok && l < 500*time.Millisecond
	})
	base := lag()
	if _, err := r.pxA.AddToxic("slow", "latency", "downstream", 1, toxiclient.Attributes{"latency": 2000}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "lag above 1.5s on a slowed link", func() bool { return lag() > 1500*time.Millisecond })
	high := lag()
	if err := r.pxA.RemoveToxic("slow"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "lag back under 500ms", func() bool { return lag() < 500*time.Millisecond })
	t.Logf("lag of a in b: %s at rest, %s with 2s link latency, %s after", base, high, lag())
	if _, ok := r.a.Srv.Node().ReplicationLag()["a"]; ok {
		t.Fatal("a node reports a lag for its own region")
	}
}

// A client whose cursor is in a lineage its origin began after a restart
// (here: a's primary restarted without persistence) resumes in a region
// whose replica of that origin still holds the old lineage, and whose
// offsets reach past the client's. The node waits for the replica to get
// the client's lineage instead of resetting the client back to the old one
// (from which the next new-lineage event would reset it forward again and
// replay the new lineage from its start: duplicates).
func TestResumeWaitsForTheReplicaToReachTheClientsLineage(t *testing.T) {
	forTransports(t, testResumeWaitsForTheReplicaToReachTheClientsLineage)
}

func testResumeWaitsForTheReplicaToReachTheClientsLineage(t *testing.T) {
	r := startTwoRegions(t)
	b2 := startRegionNode(t, "b2", regionStore(t, r.primaryB.URL(), "b", false), r.storeBofA,
		func(c *server.Config) { c.Node.ReplicaWait = 10 * time.Second })
	for i := 1; i <= 3; i++ {
		r.a.publish("news", "m", fmt.Sprintf("old%d", i))
	}
	r.awaitReplicaHead(t, 3, 10*time.Second, "old3 on b's replica")
	if err := r.pxA.Disable(); err != nil {
		t.Fatal(err)
	}
	r.primaryA.Restart(t) // no persistence: a's stream begins a new lineage at offset 1
	waitFor(t, 10*time.Second, "a publish after a's restart", func() bool {
		resp, err := http.Post(r.a.URL+"/v1/topics/news/events", "application/json", strings.NewReader(`{"event":"m","data":"new1"}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusCreated
	})
	sa := r.a.openStream(t, []string{"news"}, "", map[string][]string{"from": {"earliest"}})
	first := nextData(t, sa, 10*time.Second)
	if first.Data != "new1" {
		t.Fatalf("a replays %q first, want new1", first.Data)
	}
	sa.Close()
	in, err := r.storeBofA.Info(t.Context(), []string{"news"})
	if err != nil || in[0].Last != 3 {
		t.Fatalf("b's replica: %+v %v, want the old lineage up to 3", in, err)
	}

	// Resume in b2 with the new-lineage cursor; the replica link comes back
	// meanwhile (a replica reconnects on its 1 Hz cron, then resyncs).
	type opened struct {
		s      *stream
		status int
		body   string
	}
	done := make(chan opened, 1)
	go func() {
		s, status, body := b2.tryStream([]string{"news"}, first.ID, nil)
		done <- opened{s, status, body}
	}()
	if err := r.pxA.Enable(); err != nil {
		t.Fatal(err)
	}
	var o opened
	select {
	case o = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("no answer from b2 within 30s")
	}
	if o.status != http.StatusOK {
		t.Fatalf("b2: %d %s", o.status, o.body)
	}
	t.Cleanup(o.s.Close)
	hello := o.s.next(10 * time.Second)
	if hello.Type != push.EventHello || hello.ID == "" {
		// A hello without id comes before a reset.
		reset := o.s.next(5 * time.Second)
		t.Fatalf("got %s %q then %s %s: the client was reset instead of resumed", hello.Type, hello.ID, reset.Type, reset.Data)
	}
	r.a.publish("news", "m", "new2")
	ev := o.s.next(20 * time.Second)
	if ev.Type != "m" || ev.Data != "new2" {
		t.Fatalf("after the resume got %s %q, want new2 and nothing replayed or reset", ev.Type, ev.Data)
	}
}

// A resume in a region whose replica of the origin restarted empty and is
// re-syncing is deferred (a 200 carrying only retry:, so the client comes
// back with its cursor unchanged) instead of being reset to the replica's
// empty stream and replayed everything; once the replica is back the
// client resumes exactly: nothing it already had, nothing lost.
func TestResumeFromAReplicaThatRestartedEmptyRepeatsNothing(t *testing.T) {
	forTransports(t, testResumeFromAReplicaThatRestartedEmptyRepeatsNothing)
}

func testResumeFromAReplicaThatRestartedEmptyRepeatsNothing(t *testing.T) {
	r := startTwoRegions(t)
	s := r.b.openStream(t, []string{"news"}, "", nil)
	s.next(5 * time.Second) // hello
	for i := 1; i <= 3; i++ {
		r.a.publish("news", "m", fmt.Sprintf("a%d", i))
	}
	got, last := collect(t, s, 3, 20*time.Second)
	assertPerOriginOrder(t, got, map[string]int{"a": 3})
	s.Close()

	if err := r.pxA.Disable(); err != nil {
		t.Fatal(err)
	}
	r.replicaBofA.Restart(t) // no persistence: empty until the link is back
	in, err := r.storeBofA.Info(t.Context(), []string{"news"})
	if err != nil || in[0].Last != 0 {
		t.Fatalf("restarted replica: %+v %v, want it empty", in, err)
	}
	shed := r.b.openStream(t, []string{"news"}, last, nil)
	select {
	case ev, ok := <-shed.events:
		if ok {
			t.Fatalf("while the replica re-syncs got %s %q (id %q), want the stream deferred", ev.Type, ev.Data, ev.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the deferred stream did not end")
	}
	if d, ok := shed.finalRetry(); !ok || d <= 0 {
		t.Fatalf("deferred stream: retry %v %v, want a retry: field", d, ok)
	}

	if err := r.pxA.Enable(); err != nil {
		t.Fatal(err)
	}
	r.awaitReplicaHead(t, 3, 20*time.Second, "b's replica re-synced")
	s2 := r.b.openStream(t, []string{"news"}, last, nil)
	if hello := s2.next(5 * time.Second); hello.Type != push.EventHello || hello.ID == "" {
		t.Fatalf("after the re-sync got %s %q, want an exact resume (hello with id, no reset)", hello.Type, hello.ID)
	}
	r.a.publish("news", "m", "a4")
	var after []string
	for {
		ev := nextData(t, s2, 20*time.Second)
		after = append(after, ev.Data)
		if ev.Data == "a4" {
			break
		}
	}
	if len(after) != 1 {
		t.Fatalf("after the resume the client got %v, want only a4", after)
	}
}
