package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/sse"
)

// A Sentinel failover that lost nothing, and the failback after it, cost
// no subscriber a reset (ADR 0024): each promotion begins a new epoch that
// forks at the head it found, which every subscriber's position is at or
// before. Publishing pauses around each kill until the replica has
// acknowledged everything (WAIT), so the failover keeps all data.
func TestSentinelFailoverAndFailbackNoReset(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel topology and kills its primary twice")
	}
	set := redistest.StartSentinel(t)
	st := newRedisStoreAt(t, set.URL())
	n := startNode(t, st, nil)
	topics := []string{"fb0", "fb1"}
	hc := streamClient()
	defer hc.CloseIdleConnections()
	subs := []*liveSub{
		newLiveSub(t, "single-0", n.URL, hc, "fb0"),
		newLiveSub(t, "multi", n.URL, hc, "fb0", "fb1"),
		newLiveSub(t, "resumer", n.URL, hc, "fb0", "fb1"),
	}
	stopSubs := startSubs(t, subs)
	defer stopSubs()
	led := newLedger()
	pc := streamClient()
	seq := 0
	publish := func(k int) {
		for range k {
			seq++
			led.publishRecorded(context.Background(), pc, n.URL, topics[seq%2], seq)
		}
	}
	rc := set.Client(t)
	failover := func(phase string) {
		t.Helper()
		// Every acknowledged write is on the replica before the kill.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if got, err := rc.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || got != 1 {
			t.Fatalf("%s: WAIT: %d %v", phase, got, err)
		}
		set.KillPrimary(t)
		if _, err := set.WaitFailover(ctx); err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
		subs[2].cut() // one subscriber resumes with its cursor, the others stay live
	}
	publish(40)
	failover("failover")
	publish(40)
	// The old primary comes back; Sentinel makes it a replica of the new
	// one. Then fail back to it.
	for _, d := range set.Servers() {
		if !d.Running() {
			d.Restart(t)
			took, err := set.WaitRejoined(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("the old primary was back as an in-sync replica %v after its restart", took.Round(time.Millisecond))
		}
	}
	failover("failback")
	publish(40)
	ok := awaitDelivery(subs, led, 15*time.Second)
	acked, n503, transport, unexpected := led.counts()
	for _, u := range unexpected {
		t.Errorf("publisher: %s", u)
	}
	if !ok {
		t.Errorf("subscribers did not converge")
	}
	lost := lostFromStore(t, st, led.snapshot())
	if len(lost) != 0 {
		t.Errorf("a failover with full data lost %d acknowledged events", len(lost))
	}
	delivered, covered, resets := assertDelivery(t, subs, led, lost)
	if resets != 0 {
		t.Errorf("failover and failback that lost nothing reset subscribers %d times", resets)
	}
	epochs := map[string]bool{}
	for _, a := range led.snapshot() {
		epochs[a.Epoch] = true
	}
	if len(epochs) < 6 {
		t.Errorf("acks in %d epochs, want 3 per topic (before, after the failover, after the failback)", len(epochs))
	}
	t.Logf("failover + failback: acked %d (failed 503 %d, transport %d) in %d epochs; delivered %d, covered %d, resets %d",
		acked, n503, transport, len(epochs), delivered, covered, resets)
}

// The double reset of issue 19, reproduced: region a's primary restarts
// (a new epoch that forks at the head it had), a client reads the new
// epoch in a and fails back to region b, whose replica of a lags behind
// (a slow cross-region link: a latency toxic here, CPU starvation in the
// run that found it). The old code reset the client "back" to the
// replica's older lineage and replayed it from its start, then reset it
// forward again when the replica caught up and replayed the new lineage:
// two resets and every event of both lineages twice. Now the resume is
// deferred (a 200 with only retry:) until the replica has received its
// origin's heartbeats up to the resume, and then continues exactly.
func TestLaggingReplicaAfterEpochChangeNoDoubleReset(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts redis-server and slows a replication link")
	}
	r := startTwoRegions(t)
	for i := 1; i <= 3; i++ {
		r.a.publish("news", "m", fmt.Sprintf("old%d", i))
	}
	r.awaitReplicaHead(t, 3, 10*time.Second, "old3 on b's replica")
	if err := r.primaryA.Client(t).Save(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	r.primaryA.Kill()
	r.primaryA.Restart(t) // loads the snapshot: 1..3, a new run
	waitFor(t, 20*time.Second, "b's replica of a back in sync after a's restart", func() bool {
		info, err := r.replicaBofA.Client(t).Info(t.Context(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	r.awaitReplicaHead(t, 3, 10*time.Second, "b's replica holds 1..3 again")
	// The cross-region link slows down: the replica stays connected and
	// 2.5 s behind.
	if _, err := r.pxA.AddToxic("lag", "latency", "downstream", 1, toxiclient.Attributes{"latency": 2500}); err != nil {
		t.Fatal(err)
	}
	sa := r.a.openStream(t, []string{"news"}, "", map[string][]string{"from": {"earliest"}})
	got, _ := collect(t, sa, 3, 10*time.Second)
	if strings.Join(got, ",") != "old1,old2,old3" {
		t.Fatalf("a replays %v", got)
	}
	r.a.publish("news", "m", "new1") // the new epoch's first event, offset 4
	got, cursor := collect(t, sa, 1, 10*time.Second)
	if got[0] != "new1" {
		t.Fatalf("a delivers %v, want new1", got)
	}
	sa.Close()

	// Fail back to b with the new epoch's cursor while its replica lags.
	var s *stream
	deferred := 0
	deadline := time.Now().Add(30 * time.Second)
	for s == nil {
		if time.Now().After(deadline) {
			t.Fatalf("b deferred the resume %d times and never accepted it", deferred)
		}
		c, status, body := r.b.tryStream([]string{"news"}, cursor, nil)
		if status != http.StatusOK {
			t.Fatalf("b: %d %s", status, body)
		}
		select {
		case ev, ok := <-c.events:
			if ok && ev.Type == push.EventHello {
				s = c
				t.Cleanup(s.Close)
				if ev.ID == "" {
					reset := s.next(5 * time.Second)
					t.Fatalf("b reset the client (%s %s): the double reset's first half", reset.Type, reset.Data)
				}
				continue
			}
			c.Close()
			deferred++ // a shed: retry: and close, cursor unchanged
		case <-time.After(10 * time.Second):
			t.Fatal("b answered nothing within 10s")
		}
	}
	r.a.publish("news", "m", "new2")
	for {
		ev := s.next(20 * time.Second)
		if ev.Type == push.EventReset {
			t.Fatalf("reset %s after the resume", ev.Data)
		}
		if strings.HasPrefix(ev.Type, push.ControlPrefix) {
			continue
		}
		if ev.Data != "new2" {
			t.Fatalf("after the resume got %q, want new2 and nothing replayed", ev.Data)
		}
		break
	}
	s.noEvent(300 * time.Millisecond)
	t.Logf("resume in b deferred %d times while the replica lagged, then exact: no reset, nothing replayed", deferred)
}

// The first report, as a new user would try it: Redis with AOF
// `appendfsync always`, three events, a clean SHUTDOWN and restart, one more
// event. A client resuming from event 3 and a client that stayed connected
// both get event 4 and no reset (before ADR 0024: herald.reset
// epoch_changed, lost_to 0, before event 4).
func TestCleanRedisRestartNoReset(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts redis-server")
	}
	rs := redistest.StartServer(t, redistest.WithAppendOnly(true), redistest.WithArgs("--appendfsync", "always"))
	n := startNode(t, newRedisStoreAt(t, rs.URL()), nil)
	topics := []string{"clean"}
	live := n.openStream(t, topics, "", nil)
	live.next(wait) // hello
	var cursor string
	for i := 1; i <= 3; i++ {
		n.publish("clean", "", fmt.Sprintf("e%d", i))
		ev := live.next(wait)
		if ev.Data != fmt.Sprintf("e%d", i) {
			t.Fatalf("live got %+v, want e%d", ev, i)
		}
		cursor = ev.ID
	}
	rs.Restart(t) // SHUTDOWN (fsynced AOF), start again: a new run
	waitFor(t, 10*time.Second, "node ready after the restart", func() bool { return nodeReady(n) })
	n.publish("clean", "", "e4")
	r := n.openStream(t, topics, cursor, nil)
	for name, s := range map[string]*stream{"resumed": r, "connected": live} {
		last := cursor
		for {
			var ev sse.Event
			select {
			case e, ok := <-s.events:
				if !ok {
					// The node ended the stream while Redis was away; the
					// client comes back with its cursor, as any would.
					s = n.openStream(t, topics, last, nil)
					continue
				}
				ev = e
			case <-time.After(wait):
				t.Fatalf("%s: no event within %s", name, wait)
			}
			if ev.ID != "" {
				last = ev.ID
			}
			if ev.Type == push.EventReset {
				t.Fatalf("%s client reset after a restart that lost nothing: %s", name, ev.Data)
			}
			if ev.Type == push.EventHello {
				if ev.ID == "" {
					t.Fatalf("%s: hello without id: a reset follows", name)
				}
				continue
			}
			if strings.HasPrefix(ev.Type, push.ControlPrefix) {
				continue
			}
			if ev.Data != "e4" {
				t.Fatalf("%s client got %q, want e4 and nothing replayed", name, ev.Data)
			}
			break
		}
		s.noEvent(200 * time.Millisecond)
	}
}
