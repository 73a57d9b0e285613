package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/sse"
)

// Cluster fault tests on real processes: three herald nodes sharing one
// real redis-server, joined by real memberlist gossip on loopback, and a
// fleet of resuming SDK clients that count every event.

// noRebalance keeps streams where the test put them (the fleet connects
// right after the joins, which would otherwise trigger a rebalance).
var noRebalance = []string{"HERALD_CLUSTER__REBALANCE_WINDOW=0s"}

type trio struct {
	redis   *redistest.Server
	a, b, c *proc
	all     []*proc
	topics  []string
}

// startTrio starts nodes a, b, c; victimShare of the fleet prefers a.
func startTrio(t *testing.T, env []string, extra ...string) *trio {
	t.Helper()
	// These tests are about the cluster: the connect-rate guard (tested
	// with the protection layers) would pace the fleet's connects, and
	// unpaced, thousands of simultaneous handshakes queue on the Redis
	// connection pool long enough to trip the slow-call breaker. Race-built
	// nodes taking thousands of handshakes at once on two shared cores
	// also exceed the scheduling-delay bound of admission (ADR 0027).
	env = append([]string{"HERALD_PROTECTION__ADMISSION__CONNECT_RATE=100000",
		"HERALD_PROTECTION__BREAKER__SLOW_RATIO=0", "HERALD_PROTECTION__ADMISSION__MAX_SCHED_DELAY=0"}, env...)
	return startTrioAsIs(t, env, extra...)
}

// startTrioAsIs is startTrio without turning protection down: the nodes
// run the default configuration plus env.
func startTrioAsIs(t *testing.T, env []string, extra ...string) *trio {
	t.Helper()
	rd := redistest.StartServer(t)
	args := append([]string{"--redis", rd.URL(), "--gossip-listen", "127.0.0.1:0"}, extra...)
	tr := &trio{redis: rd}
	// Race-built nodes: these are the tests that kill, stop, drain and
	// take over, where a data race in a node would matter most.
	tr.a = startRaceProc(t, "a", env, args...)
	tr.b = startRaceProc(t, "b", env, append(args, "--join", tr.a.Gossip)...)
	tr.c = startRaceProc(t, "c", env, append(args, "--join", tr.a.Gossip)...)
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
	deadline := time.Now().Add(90 * time.Second)
	for f.ready() < len(f.clients) {
		if time.Now().After(deadline) {
			t.Fatalf("after 90s, %d of %d clients (%s) had their hello", f.ready(), len(f.clients), f.transport)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	forTransports(t, func(t *testing.T) {
		kill9NodeClientsResumeOnSurvivors(t, startTrio(t, noRebalance), 3000)
	})
}

// The same kill -9 with every protection layer at its default: the
// survivors' connect rate, warm-up and breaker must let 3,000 clients back
// in with nothing lost or duplicated.
func TestClusterKill9OnDefaultConfiguration(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	// The default connect rate admits the fleet over seconds and clients
	// shed by a go to b or c: a holds what it admitted when it is killed.
	kill9NodeClientsResumeOnSurvivors(t, startTrioAsIs(t, noRebalance), 200)
}

// kill9NodeClientsResumeOnSurvivors connects 3,300 clients (3,000 preferring
// a), kills a once every client is connected and a holds at least minOnA of
// them, and checks that each of a's clients resumed on a survivor with
// nothing lost or duplicated.
func kill9NodeClientsResumeOnSurvivors(t *testing.T, tr *trio, minOnA int) {
	const preferA, onEach = 3000, 150
	f := tr.fleetOn(t, preferA, onEach, 0)
	eventually(t, 60*time.Second, "every client connected", func() bool {
		var n int64
		for _, p := range tr.all {
			n += p.node(t).Streams
		}
		return n >= preferA+2*onEach
	})
	onVictim := int(tr.a.node(t).Streams)
	if onVictim < minOnA {
		t.Fatalf("victim holds %d streams, want ≥ %d", onVictim, minOnA)
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

// rawStream is a plain SSE connection that stays open until the server
// closes it (it never times out on its own, like a half-open client).
type rawStream struct {
	hello  string     // herald.hello id
	info   push.Hello // herald.hello data
	events chan sse.Event
	done   chan struct{}
	closed time.Time // when the server closed it
	cancel context.CancelFunc
}

func openRaw(t *testing.T, base, topic, lastID string) *rawStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/stream?topic="+topic, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	rs := &rawStream{events: make(chan sse.Event, 1024), done: make(chan struct{}), cancel: cancel}
	dec := sse.NewDecoder(resp.Body)
	ev, err := dec.Next()
	if err != nil || ev.Type != push.EventHello {
		cancel()
		t.Fatalf("first event %+v, %v", ev, err)
	}
	rs.hello = ev.ID
	if err := json.Unmarshal([]byte(ev.Data), &rs.info); err != nil {
		cancel()
		t.Fatalf("hello %q: %v", ev.Data, err)
	}
	go func() {
		defer close(rs.done)
		defer resp.Body.Close()
		for {
			ev, err := dec.Next()
			if err != nil {
				rs.closed = time.Now()
				return
			}
			select {
			case rs.events <- ev:
			default:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-rs.done })
	return rs
}

func memberState(t *testing.T, p *proc, name string) string { return p.members(t)[name] }

func TestClusterSIGSTOPPausedNodeLearnsItWasDeadAndRevokes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	env := append([]string{"HERALD_STREAM__HEARTBEAT=1s"}, noRebalance...)
	// Debug logs carry memberlist's own messages (the refutation).
	tr := startTrio(t, env, "--log-level", "debug")
	// SDK clients on a notice the pause by their idle timeout and move.
	f := tr.fleetOn(t, 300, 30, 3*time.Second)
	// Half-open clients: connections to a that never give up on their own,
	// like a client behind a dead NAT.
	const sticky = 40
	var stuck []*rawStream
	for i := range sticky {
		stuck = append(stuck, openRaw(t, tr.a.URL, tr.topics[i%len(tr.topics)], ""))
	}
	pub := startPublisher([]string{tr.b.URL, tr.c.URL}, tr.topics, 40)
	waitAcked(t, pub, 40)

	const refutation = "memberlist: Refuting a" // "suspect" or "dead" message
	tr.a.log.watch(refutation)
	tStop := time.Now()
	tr.a.signal(syscall.SIGSTOP)
	eventually(t, 30*time.Second, "b and c declare a dead", func() bool {
		return memberState(t, tr.b, "a") == "dead" && memberState(t, tr.c, "a") == "dead"
	})
	t.Logf("a declared dead by both survivors %v after SIGSTOP", time.Since(tStop).Round(time.Millisecond))
	// The sticky clients' sessions resume on b while a still holds them.
	var moved []*rawStream
	for i, s := range stuck {
		moved = append(moved, openRaw(t, tr.b.URL, tr.topics[i%len(tr.topics)], s.hello))
	}
	// Keep a paused well past the SDK clients' idle timeout.
	eventually(t, 30*time.Second, "SDK clients off the paused node", func() bool {
		resume, _ := f.reconnectsAfter(tStop, tr.a.URL)
		return len(resume) >= 300
	})
	waitAcked(t, pub, 40)

	tCont := time.Now()
	tr.a.signal(syscall.SIGCONT)
	eventually(t, 30*time.Second, "a alive again on b", func() bool { return memberState(t, tr.b, "a") == "alive" })
	tAlive := time.Now()
	for i, s := range stuck {
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("sticky stream %d still served by the resumed node 30s after SIGCONT", i)
		}
	}
	var last time.Time
	for _, s := range stuck {
		if s.closed.After(last) {
			last = s.closed
		}
	}
	t.Logf("after SIGCONT: a seen alive by b in %v; all %d sessions taken over meanwhile were closed on a %v after SIGCONT (%v after b saw a alive)",
		tAlive.Sub(tCont).Round(time.Millisecond), sticky, last.Sub(tCont).Round(time.Millisecond), last.Sub(tAlive).Round(time.Millisecond))
	if d := last.Sub(tAlive); d > 2*time.Second {
		t.Fatalf("sessions served by two nodes for %v after the paused node rejoined", d)
	}
	// The paused node learned that it had been declared dead. Proof that
	// does not depend on a log line: both survivors list it alive again,
	// and memberlist revives a member it declared dead only on a higher
	// incarnation, which only that member can issue (its refutation); and
	// it closed the sessions claimed while it was gone (above), which it
	// could only learn from the survivors' state. Its debug log usually
	// also shows the refutation (not asserted: in some CI runs the line
	// was not found although the node came back alive).
	eventually(t, 10*time.Second, "a alive again on b and c", func() bool {
		return memberState(t, tr.b, "a") == "alive" && memberState(t, tr.c, "a") == "alive"
	})
	t.Logf("refutation in a's log: %v", tr.a.log.saw(refutation))
	// The new owners keep their streams.
	for i, s := range moved {
		select {
		case <-s.done:
			t.Fatalf("moved stream %d on b was closed", i)
		default:
		}
	}
	finish(t, f, pub)
	resume, _ := f.reconnectsAfter(tStop, tr.a.URL)
	t.Logf("%d SDK clients moved off the paused node; resume p50 %v p99 %v", len(resume), percentile(resume, 0.5), percentile(resume, 0.99))
	if len(resume) < 300 {
		t.Fatalf("only %d of 300 clients moved off the paused node", len(resume))
	}
}

func TestClusterTakeoverAdminAndPresenceAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	tr := startTrio(t, noRebalance)
	old := openRaw(t, tr.a.URL, "tk", "")
	p, err := push.ParseCursor(old.hello, []string{"tk"}, []string{"local"})
	if err != nil {
		t.Fatal(err)
	}
	session := node.FormatSessionID(p.Session())

	// Presence and the session record are visible from every node.
	for _, n := range tr.all {
		eventually(t, 10*time.Second, "presence on "+n.name, func() bool {
			var r struct {
				Count    int
				Sessions []struct{ Session, Node string }
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := getJSON(ctx, n.Admin+"/v1/topics/tk/presence", &r); err != nil {
				t.Fatal(err)
			}
			return r.Count == 1 && r.Sessions[0].Session == session && r.Sessions[0].Node == "a"
		})
	}

	// Takeover: the same session resuming on b closes the stream on a.
	start := time.Now()
	moved := openRaw(t, tr.b.URL, "tk", old.hello)
	select {
	case <-old.done:
		t.Logf("takeover: old stream on a closed %v after the session resumed on b", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("old stream on a still open 10s after the session resumed on b")
	}
	eventually(t, 10*time.Second, "record owned by b on c", func() bool {
		var r struct{ Node string }
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return getJSON(ctx, tr.c.Admin+"/v1/sessions/"+session, &r) == nil && r.Node == "b"
	})

	// Admin disconnect from c closes the stream on b.
	req, _ := http.NewRequest(http.MethodDelete, tr.c.Admin+"/v1/sessions/"+session, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE session on c: %d", resp.StatusCode)
	}
	select {
	case <-moved.done:
	case <-time.After(10 * time.Second):
		t.Fatal("admin disconnect from c did not close the stream on b")
	}
}

func TestClusterWrongGossipKeyCannotJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	key, other := cluster.GenerateKey(), cluster.GenerateKey()
	tr := startTrio(t, noRebalance, "--gossip-key", key)
	for _, tc := range []struct{ name, key string }{{"wrongkey", other}, {"nokey", ""}} {
		args := []string{"--redis", tr.redis.URL(), "--gossip-listen", "127.0.0.1:0", "--join", tr.a.Gossip}
		if tc.key != "" {
			args = append(args, "--gossip-key", tc.key)
		}
		d := startProc(t, tc.name, noRebalance, args...)
		// Give it several gossip rounds and rejoin attempts, then check
		// nothing changed on either side.
		eventually(t, 20*time.Second, tc.name+" logs its failed join", func() bool {
			l := d.log.String()
			return strings.Contains(l, "no installed keys could decrypt") || strings.Contains(l, "encryption is not configured") ||
				strings.Contains(l, "join") && strings.Contains(l, "fail")
		})
		for _, l := range strings.Split(d.log.String(), "\n") {
			if strings.Contains(l, "join") {
				t.Logf("%s: %s", tc.name, l)
			}
		}
		waitMembers(t, tr.all, "a", "b", "c")
		if got := d.members(t); len(got) != 1 {
			t.Fatalf("%s sees members %v, want only itself", tc.name, got)
		}
		d.kill()
	}
}

func TestClusterRebalanceOntoJoiningNode(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	const window = 3 * time.Second
	env := []string{"HERALD_CLUSTER__CONNECTION_TARGET=100", "HERALD_CLUSTER__REDIRECT=true",
		"HERALD_CLUSTER__REBALANCE_WINDOW=" + window.String()}
	tr := startTrio(t, env)
	f := tr.fleetOn(t, 150, 150, 0) // 450 streams over three nodes with target 100: overloaded
	pub := startPublisher([]string{tr.a.URL, tr.b.URL, tr.c.URL}, tr.topics, 40)
	waitAcked(t, pub, 40)
	counts := func(ps ...*proc) (out []int64, total int64) {
		for _, p := range ps {
			n := p.node(t).Streams
			out = append(out, n)
			total += n
		}
		return out, total
	}
	before, _ := counts(tr.all...)

	d := startRaceProc(t, "d", env, "--redis", tr.redis.URL(), "--gossip-listen", "127.0.0.1:0", "--join", tr.a.Gossip)
	joined := time.Now()
	waitMembers(t, append(tr.all, d), "a", "b", "c", "d")
	// Bound: the window plus load-gossip delay and the clients' retry.
	var after []int64
	var avg float64
	eventually(t, window+15*time.Second, "window over, every stream back, joining node within 20% of the average", func() bool {
		var total int64
		after, total = counts(append(tr.all, d)...)
		avg = float64(total) / 4
		dn := float64(after[3])
		return time.Since(joined) > window && total == int64(len(f.clients)) && dn >= 0.8*avg && dn <= 1.2*avg
	})
	t.Logf("streams before join %v; %v (a, b, c, d) %v after d joined, average %.1f",
		before, after, time.Since(joined).Round(100*time.Millisecond), avg)
	waitAcked(t, pub, 40)
	finish(t, f, pub)
}
