package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/store/redisstore"
)

// Two regions on loopback, each: two herald nodes, its own Redis primary
// (AOF, fsync always) and a replica of the other region's primary. Region
// a is killed whole (kill -9 of its nodes and Redis processes) under load,
// then brought back with its data.

type region struct {
	name           string
	primary        *redistest.Server
	replicaOfOther *redistest.Server
	nodes          []*proc
	args           func(i int) []string
	wanSeeds       []string
}

var regionEnv = []string{
	"HERALD_FEDERATION__INTERVAL=200ms",
	"HERALD_FEDERATION__REPLICA_WAIT=1s",
	"HERALD_FEDERATION__EVACUATION_WINDOW=2s",
	"HERALD_FEDERATION__EVACUATION_CATCH_UP=20s",
	"HERALD_STREAM__HEARTBEAT=1s",
	"HERALD_STREAM__RETRY_MIN=200ms",
	"HERALD_STREAM__RETRY_MAX=1s",
	"HERALD_PROTECTION__ADMISSION__CONNECT_RATE=5000",
	"HERALD_PROTECTION__ADMISSION__WARM_UP=0s",
}

// startRegions starts both regions; a's nodes seed the WAN pool.
func startRegions(t *testing.T) (a, b *region) {
	t.Helper()
	durable := []redistest.Option{redistest.WithAppendOnly(true), redistest.WithArgs("--appendfsync", "always")}
	a = &region{name: "a", primary: redistest.StartServer(t, durable...)}
	b = &region{name: "b", primary: redistest.StartServer(t, durable...)}
	a.replicaOfOther = redistest.StartServer(t, redistest.WithReplicaOf(b.primary.Addr()))
	b.replicaOfOther = redistest.StartServer(t, redistest.WithReplicaOf(a.primary.Addr()))
	for _, r := range []*region{a, b} {
		other := b
		if r == b {
			other = a
		}
		r.args = func(i int) []string {
			args := []string{"--region", r.name, "--redis", r.primary.URL(),
				"--remote-redis", other.name + "=" + r.replicaOfOther.URL(),
				"--gossip-listen", "127.0.0.1:0", "--wan-listen", "127.0.0.1:0"}
			if i > 0 {
				args = append(args, "--join", r.nodes[0].Gossip)
			}
			for _, w := range r.wanSeeds {
				args = append(args, "--wan-join", w)
			}
			return args
		}
		for i := range 2 {
			n := startProc(t, fmt.Sprintf("%s%d", r.name, i+1), regionEnv, r.args(i)...)
			r.nodes = append(r.nodes, n)
			if len(a.wanSeeds) == 0 {
				a.wanSeeds, b.wanSeeds = []string{n.WAN}, []string{n.WAN}
			}
		}
	}
	// Every node sees the other region serving (alternates known).
	for _, n := range append(slices.Clone(a.nodes), b.nodes...) {
		eventually(t, 20*time.Second, n.name+" sees both regions serving", func() bool {
			var st struct {
				Regions []struct {
					Name    string `json:"name"`
					Serving int    `json:"serving"`
				} `json:"regions"`
			}
			if getJSON(context.Background(), n.Admin+"/v1/region", &st) != nil {
				return false
			}
			serving := 0
			for _, r := range st.Regions {
				if r.Serving == 2 {
					serving++
				}
			}
			return serving == 2
		})
	}
	return a, b
}

func (r *region) urls() []string {
	var out []string
	for _, n := range r.nodes {
		out = append(out, n.URL)
	}
	return out
}

// ledger records what publishers had acknowledged and what the test
// excuses or expects lost.
type ledger struct {
	mu    sync.Mutex
	acked map[string]ack // payload → acknowledgement
	// inFlight: payloads whose publish was in flight while their
	// publisher's home region was killed. The first attempt may be stored
	// there (its answer was lost, its AOF kept it) while the retry is
	// stored in another region: one event per origin with the same
	// payload, which idempotency keys (per origin) cannot merge. Only
	// these may arrive twice, and only once from each origin.
	inFlight map[string]bool
	// lostAtFault: acknowledged payloads the surviving region's replica of
	// their origin did not hold when the origin died (above its head). Only
	// these may a reset name as lost.
	lostAtFault map[string]bool
}

func newRegionLedger() *ledger {
	return &ledger{acked: map[string]ack{}, inFlight: map[string]bool{}, lostAtFault: map[string]bool{}}
}

type ack struct {
	topic, origin, epoch string
	offset               uint64
}

// regionPublisher publishes payloads "<name>-<i>" to topics in turn.
type regionPublisher struct {
	name   string
	pub    *client.Publisher
	led    *ledger
	topics []string
	stopc  chan struct{}
	done   chan struct{}
	failed atomic.Int64
	// began and ended are the index of the newest publish begun and
	// ended (-1: none): a publish in flight during [t0, t1] has an index
	// in (ended at t0, began at t1].
	began, ended atomic.Int64
}

func startRegionPublisher(name string, endpoints, topics []string, led *ledger, rate int) *regionPublisher {
	p := &regionPublisher{name: name, led: led, topics: topics, stopc: make(chan struct{}), done: make(chan struct{}),
		pub: client.NewPublisher(client.PublisherConfig{Endpoints: endpoints, MaxAttempts: 30,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})}
	p.began.Store(-1)
	p.ended.Store(-1)
	go func() {
		defer close(p.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.stopc:
				return
			case <-tick.C:
			}
			payload := fmt.Sprintf("%s-%d", name, i)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			p.began.Store(int64(i))
			r, err := p.pub.Publish(ctx, topics[i%len(topics)], client.Message{Event: "tick", Text: payload, IdempotencyKey: payload})
			p.ended.Store(int64(i))
			cancel()
			if err != nil {
				p.failed.Add(1)
				continue
			}
			led.mu.Lock()
			led.acked[payload] = ack{topic: r.Topic, origin: r.Origin, epoch: r.Epoch, offset: r.Offset}
			led.mu.Unlock()
		}
	}()
	return p
}

// inFlightDuring runs fault and returns the payloads whose publish was in
// flight at some moment while it ran.
func (p *regionPublisher) inFlightDuring(fault func()) []string {
	ended := p.ended.Load()
	fault()
	began := p.began.Load()
	var out []string
	for i := ended + 1; i <= began; i++ {
		out = append(out, fmt.Sprintf("%s-%d", p.name, i))
	}
	return out
}

func (p *regionPublisher) stop() {
	close(p.stopc)
	<-p.done
	p.pub.CloseIdleConnections()
}

// regionClient is one SDK subscriber homed in a region.
type regionClient struct {
	topic  string
	stream *client.Stream

	mu sync.Mutex
	// got: payload → origin of each copy received, as its event id says.
	got      map[string][]string
	resets   []push.StreamReset
	connects []connectRecord
	started  bool
	// pos: origin → offset, as the newest hello, reset or event id put
	// the cursor. Every event must advance exactly one origin by one.
	pos      map[string]uint64
	disorder int      // events that were not the next offset of one origin
	samples  []string // a few of them (diagnostics)
}

// regionOrigins are the origins a region test's cursors carry.
func regionOrigins() []string { return []string{"a", "b"} }

func newRegionFleet(t *testing.T, n int, topics []string, home []string, failback time.Duration) []*regionClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	hc := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 30 * time.Second, MaxIdleConnsPerHost: -1}}
	var wg sync.WaitGroup
	var out []*regionClient
	for i := range n {
		c := &regionClient{topic: topics[i%len(topics)], got: map[string][]string{}}
		c.stream = client.Subscribe(client.StreamConfig{
			Endpoints: []string{home[i%len(home)], home[(i+1)%len(home)]}, Topics: []string{c.topic}, HTTPClient: hc,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, IdleTimeout: 3 * time.Second, Failback: failback,
			Transport: transportOf(t),
			OnConnect: func(ep string) {
				c.mu.Lock()
				c.connects = append(c.connects, connectRecord{at: time.Now(), endpoint: ep})
				c.mu.Unlock()
			},
		})
		out = append(out, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.stream.Run(ctx, c.handle)
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		hc.CloseIdleConnections()
	})
	return out
}

func (c *regionClient) handle(ev client.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev.Type {
	case push.EventHello:
		c.started = true
		if ev.ID != "" {
			c.pos = c.offsets(ev)
		}
		return nil
	case push.EventReset:
		rs, err := client.ParseReset(ev)
		if err != nil {
			return err
		}
		c.resets = append(c.resets, rs...)
		c.pos = c.offsets(ev)
		return nil
	}
	if strings.HasPrefix(ev.Type, push.ControlPrefix) {
		return nil
	}
	cur := c.offsets(ev)
	var moved []string
	for o, off := range cur {
		if off != c.pos[o] {
			moved = append(moved, o)
		}
	}
	origin := "?"
	if len(moved) == 1 {
		origin = moved[0]
	}
	if len(moved) != 1 || cur[origin] != c.pos[origin]+1 {
		c.misordered(fmt.Sprintf("topic %s payload %s: cursor %v after %v", c.topic, ev.Data, cur, c.pos))
	}
	c.pos = cur
	c.got[ev.Data] = append(c.got[ev.Data], origin)
	return nil
}

// offsets decodes an event id: origin → offset on the client's topic.
func (c *regionClient) offsets(ev client.Event) map[string]uint64 {
	p, err := push.ParseCursor(ev.ID, []string{c.topic}, regionOrigins())
	if err != nil {
		c.misordered(fmt.Sprintf("topic %s %s id %q: %v", c.topic, ev.Type, ev.ID, err))
		return c.pos
	}
	out := make(map[string]uint64, p.Len())
	for i := range p.Len() {
		out[p.Key(i).Origin] = p.Offset(i)
	}
	return out
}

func (c *regionClient) misordered(what string) {
	c.disorder++
	if len(c.samples) < 3 {
		c.samples = append(c.samples, what)
	}
}

// regionOf maps an endpoint to its region name.
func regionOf(ep string, regions ...*region) string {
	for _, r := range regions {
		if slices.Contains(r.urls(), ep) {
			return r.name
		}
	}
	return "?"
}

// audit checks every client against the acknowledged events of its topic:
// each received at most once, each origin's offsets in order with no gap
// (across resets, which place the cursor), and each event either received
// or covered by a reset naming its stream and offset (replica_behind resets
// announce nothing lost: the client already had those events) — and then
// one the surviving replica had lost (ledger.lostAtFault).
type auditResult struct {
	received, dups, lost, coveredByReset int
	// overReported: events a reset named as lost although the surviving
	// replica held them at the fault.
	overReported int
	// disorder: events that were not the next offset of their origin.
	disorder int
	// retried: payloads received once from each origin whose publish was
	// in flight at the kill (see ledger.inFlight); counted apart from dups.
	retried map[string]bool
	// samples describes a few faults (diagnostics).
	samples  []string
	resets   map[string]int
	maxMoves int
}

func (r *auditResult) sample(format string, args ...any) {
	if len(r.samples) < 8 {
		r.samples = append(r.samples, fmt.Sprintf(format, args...))
	}
}

func audit(clients []*regionClient, led *ledger, regions ...*region) auditResult {
	led.mu.Lock()
	acked := maps.Clone(led.acked)
	inFlight := maps.Clone(led.inFlight)
	lostAtFault := maps.Clone(led.lostAtFault)
	led.mu.Unlock()
	res := auditResult{resets: map[string]int{}, retried: map[string]bool{}}
	for _, c := range clients {
		c.mu.Lock()
		res.disorder += c.disorder
		for _, d := range c.samples {
			res.sample("order: %s", d)
		}
		for payload, origins := range c.got {
			n := len(origins)
			res.received += n
			switch {
			case n == 2 && inFlight[payload] && slices.Contains(origins, "a") && slices.Contains(origins, "b"):
				res.retried[payload] = true
			case n > 1:
				res.dups += n - 1
				res.sample("duplicate: topic %s payload %s from origins %v ack %+v resets %+v connects %d",
					c.topic, payload, origins, acked[payload], c.resets, len(c.connects))
			}
		}
		for _, rs := range c.resets {
			res.resets[rs.Reason]++
		}
		for payload, ack := range acked {
			if ack.topic != c.topic || len(c.got[payload]) > 0 {
				continue
			}
			covered := false
			for _, rs := range c.resets {
				if rs.Reason != push.ResetReplicaBehind && rs.Origin == ack.origin && rs.Epoch != ack.epoch && ack.offset >= rs.LostFrom && (rs.LostTo == 0 || ack.offset <= rs.LostTo) {
					covered = true
				}
			}
			switch {
			case covered && lostAtFault[payload]:
				res.coveredByReset++
			case covered:
				res.overReported++
				res.sample("reset names %s (ack %+v) as lost, but the surviving replica held it; resets %+v", payload, ack, c.resets)
			default:
				res.lost++
			}
		}
		moves, last := 0, ""
		for _, cr := range c.connects {
			r := regionOf(cr.endpoint, regions...)
			if last != "" && r != last {
				moves++
			}
			last = r
		}
		res.maxMoves = max(res.maxMoves, moves)
		c.mu.Unlock()
	}
	return res
}

// settledAudit audits once every acknowledged event has arrived (or the
// wait ends), and logs a few duplicates for diagnosis.
func settledAudit(t *testing.T, what string, clients []*regionClient, led *ledger, regions ...*region) auditResult {
	t.Helper()
	eventually(t, 60*time.Second, what, func() bool { return audit(clients, led, regions...).lost == 0 })
	res := audit(clients, led, regions...)
	for _, d := range res.samples {
		t.Logf("%s", d)
	}
	return res
}

// replicaHeads reads, per topic, the last offset of origin a on b's replica.
func replicaHeads(t *testing.T, r *redistest.Server, origin string, topics []string) map[string]uint64 {
	t.Helper()
	opts, err := redisstore.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	st, err := redisstore.New(redisstore.Config{Options: opts, Origin: origin, KeyPrefix: "herald", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	infos, err := st.Info(ctx, topics)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, in := range infos {
		out[in.Topic] = in.Last
	}
	return out
}

func (r *region) kill() {
	for _, n := range r.nodes {
		n.kill()
	}
	r.primary.Kill()
	r.replicaOfOther.Kill()
}

// restart brings the region back on its old public ports, with the Redis
// data it had (AOF), joining the WAN pool through seeds.
func (r *region) restart(t *testing.T, seeds []string) {
	t.Helper()
	r.primary.Restart(t)
	r.replicaOfOther.Restart(t)
	r.wanSeeds = seeds
	old := r.nodes
	r.nodes = nil
	for i, n := range old {
		listen := strings.TrimPrefix(n.URL, "http://")
		r.nodes = append(r.nodes, startProc(t, n.name+"-again", regionEnv, append(r.args(i), "--listen", listen)...))
	}
}

func allClients(clients []*regionClient, cond func(c *regionClient) bool) bool {
	for _, c := range clients {
		c.mu.Lock()
		ok := cond(c)
		c.mu.Unlock()
		if !ok {
			return false
		}
	}
	return true
}

// lastRegion is the region of the client's newest connection.
func (c *regionClient) lastRegion(regions ...*region) string {
	if len(c.connects) == 0 {
		return ""
	}
	return regionOf(c.connects[len(c.connects)-1].endpoint, regions...)
}

func ackedBy(led *ledger, origin string) int {
	led.mu.Lock()
	defer led.mu.Unlock()
	n := 0
	for _, a := range led.acked {
		if a.origin == origin {
			n++
		}
	}
	return n
}

// TestRegionLossFailover: 200 SDK subscribers homed in region a, events
// published in both regions; region a dies whole (kill -9 of both nodes,
// its primary and its replica of b). Subscribers fail over to b with their
// cursors; a comes back with its data and they fail back. Every event
// acknowledged in either region is delivered once, in its origin's offset
// order, or named by a reset — and a reset may name only events b's replica
// lacked at the kill. Only a publish in flight during the kill may exist
// twice, once per origin. No client moves more than twice.
func TestRegionLossFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process region test; run without -short")
	}
	a, b := startRegions(t)
	topics := []string{"r0", "r1", "r2", "r3"}
	led := newRegionLedger()
	clients := newRegionFleet(t, 200, topics, a.urls(), 3*time.Second)
	eventually(t, 30*time.Second, "subscribers connected", func() bool {
		return allClients(clients, func(c *regionClient) bool { return c.started })
	})
	pubA := startRegionPublisher("A", append(a.urls(), b.urls()...), topics, led, 40)
	pubB := startRegionPublisher("B", b.urls(), topics, led, 40)
	eventually(t, 20*time.Second, "events from both regions", func() bool { return ackedBy(led, "a") >= 80 && ackedBy(led, "b") >= 80 })

	t0 := time.Now()
	inFlight := pubA.inFlightDuring(a.kill)
	killed := time.Since(t0)
	// RPO: events acknowledged in a that b's replica of a does not have.
	heads := replicaHeads(t, b.replicaOfOther, "a", topics)
	ackedA := 0
	led.mu.Lock()
	for _, p := range inFlight {
		led.inFlight[p] = true
	}
	for payload, k := range led.acked {
		if k.origin == "a" {
			ackedA++
			if k.offset > heads[k.topic] {
				led.lostAtFault[payload] = true
			}
		}
	}
	rpo := len(led.lostAtFault)
	led.mu.Unlock()

	eventually(t, 60*time.Second, "every subscriber streaming in region b", func() bool {
		return allClients(clients, func(c *regionClient) bool { return c.lastRegion(a, b) == "b" })
	})
	var rto []time.Duration
	for _, c := range clients {
		c.mu.Lock()
		for _, cr := range c.connects {
			if cr.at.After(t0) && regionOf(cr.endpoint, a, b) == "b" {
				rto = append(rto, cr.at.Sub(t0))
				break
			}
		}
		c.mu.Unlock()
	}
	slices.Sort(rto)
	bBefore := ackedBy(led, "b")
	eventually(t, 20*time.Second, "publishing continues in b", func() bool { return ackedBy(led, "b") >= bBefore+100 })

	t1 := time.Now()
	a.restart(t, []string{b.nodes[0].WAN})
	eventually(t, 90*time.Second, "every subscriber back in region a", func() bool {
		return allClients(clients, func(c *regionClient) bool { return c.lastRegion(a, b) == "a" })
	})
	failback := time.Since(t1)
	pubA.stop()
	pubB.stop()
	res := settledAudit(t, "every acknowledged event delivered or reset", clients, led, a, b)
	t.Logf("region loss: %d subscribers; kill took %s; RTO p50 %s p99 %s max %s; RPO %d of %d a-origin events acknowledged before the kill",
		len(clients), killed.Round(time.Millisecond), percentile(rto, 0.5).Round(time.Millisecond), percentile(rto, 0.99).Round(time.Millisecond),
		rto[len(rto)-1].Round(time.Millisecond), rpo, ackedA)
	t.Logf("failback: all home %s after region a restarted; received %d, duplicates %d, out of order %d; silent loss %d, reported by resets %d (bound: the %d events b's replica lacked at the kill, per subscriber), reported beyond it %d; resets %v, max moves per client %d; publish failures a=%d b=%d",
		failback.Round(time.Millisecond), res.received, res.dups, res.disorder, res.lost, res.coveredByReset, rpo, res.overReported, res.resets, res.maxMoves, pubA.failed.Load(), pubB.failed.Load())
	// Only a payload publisher A had in flight while its region was killed
	// may exist twice, once per origin (its first attempt kept by a's AOF,
	// its retry in b), and each copy is delivered once.
	t.Logf("publishes in flight during the kill %v; received once from each origin: %v", inFlight, slices.Sorted(maps.Keys(res.retried)))
	if res.dups != 0 || res.disorder != 0 || res.lost != 0 || res.overReported != 0 {
		t.Fatalf("duplicates %d, out of order %d, silent loss %d, resets naming events the surviving replica held %d",
			res.dups, res.disorder, res.lost, res.overReported)
	}
	if res.maxMoves > 2 {
		t.Fatalf("a client moved %d times between regions (ping-pong)", res.maxMoves)
	}
	if len(rto) != len(clients) {
		t.Fatalf("%d of %d clients resumed in b", len(rto), len(clients))
	}
}

// TestRegionEvacuation: region a is evacuated under load by an admin
// order: publishes there are refused with the alternates (publishers move
// to b), every stream is closed with herald.moved after b's replica holds
// a's events, and subscribers continue in b with nothing lost or repeated;
// once per stream transport (SSE, WebSocket).
func TestRegionEvacuation(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process region test; run without -short")
	}
	forTransports(t, regionEvacuation)
}

func regionEvacuation(t *testing.T) {
	a, b := startRegions(t)
	topics := []string{"e0", "e1", "e2", "e3"}
	led := newRegionLedger()
	clients := newRegionFleet(t, 200, topics, a.urls(), 0)
	eventually(t, 30*time.Second, "subscribers connected", func() bool {
		return allClients(clients, func(c *regionClient) bool { return c.started })
	})
	pubA := startRegionPublisher("A", a.urls(), topics, led, 40)
	pubB := startRegionPublisher("B", b.urls(), topics, led, 40)
	eventually(t, 20*time.Second, "events from both regions", func() bool { return ackedBy(led, "a") >= 80 && ackedBy(led, "b") >= 80 })

	t0 := time.Now()
	resp, err := http.Post(a.nodes[0].Admin+"/v1/region/evacuate", "application/json", strings.NewReader(`{"active":true,"by":"test"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("evacuate: %d", resp.StatusCode)
	}
	eventually(t, 60*time.Second, "every subscriber moved to b", func() bool {
		return allClients(clients, func(c *regionClient) bool { return c.lastRegion(a, b) == "b" })
	})
	moved := time.Since(t0)
	bBefore := ackedBy(led, "b")
	eventually(t, 20*time.Second, "publisher A now publishes in b", func() bool { return ackedBy(led, "b") >= bBefore+80 })
	pubA.stop()
	pubB.stop()
	res := settledAudit(t, "every acknowledged event delivered", clients, led, a, b)
	t.Logf("evacuation: %d subscribers moved in %s; received %d, duplicates %d, out of order %d, lost %d, resets %v, max moves %d; publish failures a=%d b=%d",
		len(clients), moved.Round(time.Millisecond), res.received, res.dups, res.disorder, res.lost, res.resets, res.maxMoves, pubA.failed.Load(), pubB.failed.Load())
	// Evacuation refuses publishes with a definite 503 (never an unknown
	// outcome), so no payload may exist twice, and it loses nothing, so no
	// reset may name anything lost (the ledger's in-flight and lost sets
	// are empty).
	if res.dups != 0 || res.disorder != 0 || res.lost != 0 || res.coveredByReset != 0 || res.overReported != 0 || len(res.retried) != 0 {
		t.Fatalf("duplicates %d, out of order %d, lost %d, reset %d (+%d), repeated payloads %v",
			res.dups, res.disorder, res.lost, res.coveredByReset, res.overReported, res.retried)
	}
	if res.maxMoves != 1 {
		t.Fatalf("max moves %d, want 1", res.maxMoves)
	}
}
