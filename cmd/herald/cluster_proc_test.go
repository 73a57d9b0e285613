package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/redistest"
)

// Cluster fault tests on real processes: three herald nodes sharing one
// real redis-server, joined by real memberlist gossip on loopback, and a
// fleet of resuming SDK clients that count every event.

// noRebalance keeps streams where the test put them (the fleet connects
// right after the joins, which would otherwise trigger a rebalance).
var noRebalance = []string{"HERALD_CLUSTER__REBALANCE_WINDOW=0s"}

type trio struct {
	redis     *redistest.Server
	a, b, c   *proc
	all       []*proc
	topics    []string
	endpoints func(i int) []string
}

// startTrio starts nodes a, b, c; victimShare of the fleet prefers a.
func startTrio(t *testing.T, env []string, extra ...string) *trio {
	t.Helper()
	rd := redistest.StartServer(t)
	args := append([]string{"--redis", rd.URL(), "--gossip-listen", "127.0.0.1:0"}, extra...)
	tr := &trio{redis: rd}
	tr.a = startProc(t, "a", env, args...)
	tr.b = startProc(t, "b", env, append(args, "--join", tr.a.Gossip)...)
	tr.c = startProc(t, "c", env, append(args, "--join", tr.a.Gossip)...)
	tr.all = []*proc{tr.a, tr.b, tr.c}
	waitMembers(t, tr.all, "a", "b", "c")
	for i := range 20 {
		tr.topics = append(tr.topics, fmt.Sprintf("ct-%d", i))
	}
	return tr
}

// fleetOn starts onA clients preferring a (then b, c) and onEach clients
// preferring b and c each.
func (tr *trio) fleetOn(t *testing.T, onA, onEach int, idle time.Duration) *fleet {
	a, b, c := tr.a.URL, tr.b.URL, tr.c.URL
	f := newFleet(t, onA+2*onEach, tr.topics, func(i int) []string {
		switch {
		case i < onA && i%2 == 0:
			return []string{a, b, c}
		case i < onA:
			return []string{a, c, b}
		case (i-onA)%2 == 0:
			return []string{b, c, a}
		default:
			return []string{c, b, a}
		}
	}, idle)
	eventually(t, 90*time.Second, "every client's hello", func() bool { return f.ready() == len(f.clients) })
	return f
}

// finish stops publishing, waits for every client to reach the heads and
// asserts zero lost, zero duplicated, zero reset.
func finish(t *testing.T, f *fleet, pub *publisher) fleetReport {
	t.Helper()
	heads := pub.stop()
	eventually(t, 90*time.Second, "every client caught up", func() bool { return f.caughtUp(heads) == 0 })
	r := f.report(heads)
	var total uint64
	for _, h := range heads {
		total += h
	}
	t.Logf("published %d acked (%d failed), %d events over %d topics; %d clients received %d; lost %d, duplicated %d, resets %d",
		pub.acked.Load(), pub.failed.Load(), total, len(heads), r.clients, r.received, r.lost, r.dups, r.resets)
	if r.lost != 0 || r.dups != 0 || r.resets != 0 {
		t.Fatalf("lost %d, duplicated %d, resets %d; want 0, 0, 0", r.lost, r.dups, r.resets)
	}
	if r.sessionChanges != 0 {
		t.Fatalf("%d clients changed session id across reconnects", r.sessionChanges)
	}
	return r
}

func waitAcked(t *testing.T, pub *publisher, n int64) {
	t.Helper()
	target := pub.acked.Load() + n
	eventually(t, 60*time.Second, fmt.Sprintf("%d more acked publishes", n), func() bool { return pub.acked.Load() >= target })
}

func TestClusterPublishOnEachNodeReachesAll(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	tr := startTrio(t, noRebalance)
	f := tr.fleetOn(t, 30, 30, 0)
	// One publisher per node: every event is published on one node and
	// must reach the subscribers on all three exactly once.
	pubs := []*publisher{
		startPublisher([]string{tr.a.URL}, tr.topics, 30),
		startPublisher([]string{tr.b.URL}, tr.topics, 30),
		startPublisher([]string{tr.c.URL}, tr.topics, 30),
	}
	for _, p := range pubs {
		waitAcked(t, p, 60)
	}
	heads := map[string]uint64{}
	for _, p := range pubs {
		for k, v := range p.stop() {
			heads[k] = max(heads[k], v)
		}
	}
	eventually(t, 60*time.Second, "every client caught up", func() bool { return f.caughtUp(heads) == 0 })
	r := f.report(heads)
	t.Logf("%d clients on 3 nodes received %d events; lost %d, duplicated %d", r.clients, r.received, r.lost, r.dups)
	if r.lost != 0 || r.dups != 0 || r.resets != 0 || r.received == 0 {
		t.Fatalf("lost %d, duplicated %d, resets %d, received %d", r.lost, r.dups, r.resets, r.received)
	}
}

func TestClusterKill9NodeClientsResumeOnSurvivors(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	tr := startTrio(t, noRebalance)
	const onVictim = 3000
	f := tr.fleetOn(t, onVictim, 150, 0)
	if n := tr.a.node(t).Streams; n < onVictim {
		t.Fatalf("victim holds %d streams, want ≥ %d", n, onVictim)
	}
	pub := startPublisher([]string{tr.b.URL, tr.c.URL}, tr.topics, 40)
	waitAcked(t, pub, 80)

	t0 := time.Now()
	tr.a.signal(syscall.SIGKILL)
	waitAcked(t, pub, 120)
	finish(t, f, pub)

	resume, _ := f.reconnectsAfter(t0, tr.a.URL)
	t.Logf("kill -9 of a node holding %d streams: %d clients resumed on survivors; time to resume p50 %v, p99 %v, max %v",
		onVictim, len(resume), percentile(resume, 0.5), percentile(resume, 0.99), percentile(resume, 1))
	if len(resume) < onVictim {
		t.Fatalf("only %d of %d clients resumed on a survivor", len(resume), onVictim)
	}
	waitMembers(t, []*proc{tr.b, tr.c}, "b", "c")
}

func TestClusterSIGTERMDrainSpreadsReconnects(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	const window = 4 * time.Second
	tr := startTrio(t, noRebalance, "--drain-window", window.String())
	const onVictim = 1500
	f := tr.fleetOn(t, onVictim, 100, 0)
	pub := startPublisher([]string{tr.a.URL, tr.b.URL, tr.c.URL}, tr.topics, 40)
	waitAcked(t, pub, 80)

	t0 := time.Now()
	tr.a.signal(syscall.SIGTERM)
	took, err := tr.a.waitExit(20 * time.Second)
	if err != nil {
		t.Fatalf("drained node: %v (after %v)", err, took)
	}
	waitAcked(t, pub, 80)
	finish(t, f, pub)

	resume, connects := f.reconnectsAfter(t0, tr.a.URL)
	peak := peakRate(connects)
	t.Logf("SIGTERM drain (window %v) of a node holding %d streams: exited after %v; %d clients moved, resume p50 %v p99 %v; peak reconnect rate on survivors %.0f/s (all-at-once would be ~%d in 100ms)",
		window, onVictim, took, len(resume), percentile(resume, 0.5), percentile(resume, 0.99), peak, onVictim)
	if len(resume) < onVictim {
		t.Fatalf("only %d of %d clients moved", len(resume), onVictim)
	}
	// Spread: the middle 80% of reconnects span at least half the window.
	if spread := percentile(resume, 0.9) - percentile(resume, 0.1); spread < window/2 {
		t.Fatalf("reconnects p10..p90 span %v, want ≥ %v (spread over the drain window)", spread, window/2)
	}
	if took > window+10*time.Second {
		t.Fatalf("exit took %v", took)
	}
	waitMembers(t, []*proc{tr.b, tr.c}, "b", "c")
}
