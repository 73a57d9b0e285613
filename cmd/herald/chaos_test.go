package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/sse"
	"github.com/heraldpush/herald/push/store/redisstore"
)

// The nemesis (issue 19, ADR 0024): a randomized schedule of faults against
// a real three-node cluster on a Redis primary with a replica, three
// Sentinels and AOF everysec, every Redis path through a fault proxy.
// Publishers retry with idempotency keys; SDK and raw SSE subscribers
// record everything; a checker compares every acknowledged event with
// what each subscriber got and with the history Redis holds at the end.
//
// CHAOS_SEED (default: random, printed) makes a run replayable as
// far as the schedule goes; CHAOS_DURATION (default 60s) is how
// long faults are injected. `make chaos SEED= DURATION=` sets both.

const (
	chaosTopics      = 4
	chaosPublishers  = 3
	chaosSDKSubs     = 4
	chaosRawSubs     = 3
	chaosPublishGap  = 40 * time.Millisecond
	chaosConvergeMax = 90 * time.Second
)

// Fault kinds. Only the lossy ones may lose acknowledged events.
const (
	faultNodeKill    = "node-kill9"
	faultNodeStop    = "node-sigstop"
	faultDrain       = "node-drain"
	faultPrimaryKill = "redis-primary-kill9"
	faultRestart     = "redis-clean-restart"
	faultRollback    = "redis-rdb-rollback"
	faultLinkSlow    = "redis-link-slow"
	faultLinkCut     = "redis-link-cut"
	// faultSpontaneous is not injected: a failover no injected fault
	// explains (Sentinel on a starved machine).
	faultSpontaneous = "redis-failover-spontaneous"
)

var faultKinds = []string{faultNodeKill, faultNodeStop, faultDrain, faultPrimaryKill, faultRestart, faultRollback, faultLinkSlow, faultLinkCut}

// lossyFault reports whether a fault may lose acknowledged writes: a
// failover (kill -9 of the primary, or a cut long enough for Sentinel to
// promote the replica, which may lag by the replication delay) or a
// rollback.
func lossyFault(kind string) bool {
	return kind == faultPrimaryKill || kind == faultRollback || kind == faultLinkCut || kind == faultSpontaneous
}

type faultRecord struct {
	Kind   string
	At     time.Time // the destructive moment
	End    time.Time
	Detail string
}

// chaosNode is a herald process with fixed addresses, restartable.
type chaosNode struct {
	name                  string
	listen, admin, gossip string
	p                     *proc
	up                    atomic.Bool
}

func (n *chaosNode) url() string { return "http://" + n.listen }

type chaosCluster struct {
	t     *testing.T
	set   *redistest.SentinelSet
	nodes []*chaosNode
	env   []string
}

// fixedAddr picks a loopback port a node keeps across its restarts, below
// the kernel's ephemeral range (32768 on Linux) and below redistest's
// cluster ports, so that the busy machine's outgoing connections cannot
// take it while the node is down; free for TCP and UDP (gossip uses both).
func fixedAddr(t *testing.T) string {
	t.Helper()
	// Concurrent runs (two `make chaos` at once) draw from different
	// thousands most of the time.
	low := 7000 + os.Getpid()%5*1000
	high := low + 1000
	start := rand.IntN(high - low)
	for i := range high - low {
		port := strconv.Itoa(low + (start+i)%(high-low))
		l, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", "127.0.0.1:"+port)
		_ = l.Close()
		if err != nil {
			continue
		}
		_ = u.Close()
		return "127.0.0.1:" + port
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

func (cc *chaosCluster) start(n *chaosNode) {
	cc.t.Helper()
	args := []string{"--redis", cc.set.URL(), "--listen", n.listen, "--admin-listen", n.admin, "--gossip-listen", n.gossip}
	for _, o := range cc.nodes {
		if o != n {
			args = append(args, "--join", o.gossip)
		}
	}
	n.p = startProcBin(cc.t, heraldBinary(cc.t), n.name, cc.env, args...)
	n.up.Store(true)
}

func (cc *chaosCluster) endpoints(first int) []string {
	out := make([]string, 0, len(cc.nodes))
	for i := range cc.nodes {
		out = append(out, cc.nodes[(first+i)%len(cc.nodes)].url())
	}
	return out
}

// ready waits until every node answers /readyz and the Sentinels name a
// primary that answers.
func (cc *chaosCluster) ready(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	for {
		ok := true
		for _, n := range cc.nodes {
			resp, err := hc.Get("http://" + n.admin + "/readyz")
			if err != nil {
				ok = false
				break
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				ok = false
				break
			}
		}
		if ok {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			p, err := cc.set.Primary(ctx)
			cancel()
			ok = err == nil && p.Running()
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ready within %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Publishers.

type ackRec struct {
	Topic   string
	Payload string
	Epoch   string
	Offset  uint64
	At      time.Time
}

type chaosLedger struct {
	mu        sync.Mutex
	acks      map[string]ackRec // by payload
	abandoned int
	attempts  int
}

func chaosPayload(topic string, pub, seq int) string {
	return fmt.Sprintf("%s/%d/%d", topic, pub, seq)
}

func parsePayload(s string) (topic string, pub, seq int, ok bool) {
	f := strings.Split(s, "/")
	if len(f) != 3 {
		return "", 0, 0, false
	}
	p, err1 := strconv.Atoi(f[1])
	q, err2 := strconv.Atoi(f[2])
	return f[0], p, q, err1 == nil && err2 == nil
}

func runPublisher(ctx context.Context, id int, eps []string, topics []string, led *chaosLedger, rng *rand.Rand) {
	pub := client.NewPublisher(client.PublisherConfig{
		Endpoints: eps, MaxAttempts: 6, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
		HTTPClient: &http.Client{Timeout: 4 * time.Second},
	})
	defer pub.CloseIdleConnections()
	for seq := 1; ctx.Err() == nil; seq++ {
		topic := topics[rng.IntN(len(topics))]
		payload := chaosPayload(topic, id, seq)
		key := fmt.Sprintf("chaos-%d-%d", id, seq)
		// One event is retried (same key) until acknowledged or 30s passed.
		deadline := time.Now().Add(30 * time.Second)
		acked := false
		for !acked && time.Now().Before(deadline) && ctx.Err() == nil {
			pctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
			res, err := pub.Publish(pctx, topic, client.Message{Text: payload, IdempotencyKey: key})
			cancel()
			led.mu.Lock()
			led.attempts++
			if err == nil {
				led.acks[payload] = ackRec{Topic: topic, Payload: payload, Epoch: res.Epoch, Offset: res.Offset, At: time.Now()}
				acked = true
			}
			led.mu.Unlock()
			if !acked {
				time.Sleep(200 * time.Millisecond)
			}
		}
		if !acked {
			led.mu.Lock()
			led.abandoned++
			led.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(chaosPublishGap):
		}
	}
}

// ---------------------------------------------------------------------------
// Subscribers.

type recvRec struct {
	Payload string
	Topic   string
	Offset  uint64
	Reset   *push.StreamReset
}

type chaosSub struct {
	name   string
	topics []string
	mu     sync.Mutex
	log    []recvRec
	heads  map[string]uint64 // last offset per topic delivered
	errs   []string
	conns  int
}

func (s *chaosSub) record(ev client.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.Type {
	case push.EventHello:
		s.conns++
		return nil
	case push.EventReset:
		rs, err := client.ParseReset(ev)
		if err != nil {
			return err
		}
		for i := range rs {
			r := rs[i]
			s.log = append(s.log, recvRec{Topic: r.Topic, Reset: &r})
			s.heads[r.Topic] = r.ContinueFrom - 1
		}
		return nil
	}
	if ev.IsControl() {
		return nil
	}
	topic, _, _, ok := parsePayload(ev.Data)
	ti := slices.Index(s.topics, topic)
	if !ok || ti < 0 {
		s.errs = append(s.errs, fmt.Sprintf("unexpected event %q", ev.Data))
		return nil
	}
	offs, err := push.DecodeOffsets(ev.ID, len(s.topics), nil)
	if err != nil || len(offs) != len(s.topics) {
		s.errs = append(s.errs, fmt.Sprintf("event id %q: %v", ev.ID, err))
		return nil
	}
	s.log = append(s.log, recvRec{Payload: ev.Data, Topic: topic, Offset: offs[ti]})
	s.heads[topic] = offs[ti]
	return nil
}

func newChaosSub(name string, topics []string) *chaosSub {
	t := slices.Clone(topics)
	slices.Sort(t)
	return &chaosSub{name: name, topics: t, heads: map[string]uint64{}}
}

func runSDKSub(ctx context.Context, s *chaosSub, eps []string, ready chan<- struct{}) {
	var once sync.Once
	st := client.Subscribe(client.StreamConfig{
		Endpoints: eps, Topics: s.topics, MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second,
		IdleTimeout: 6 * time.Second,
	})
	_ = st.Run(ctx, func(ev client.Event) error {
		if ev.Type == push.EventHello {
			once.Do(func() { close(ready) })
		}
		return s.record(ev)
	})
}

// runRawSub is a bare SSE client: it reconnects to the next endpoint with
// Last-Event-ID after every end, as a browser would (fixed short delay).
func runRawSub(ctx context.Context, s *chaosSub, eps []string, ready chan<- struct{}) {
	var once sync.Once
	hc := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 5 * time.Second}}
	last := ""
	for i := 0; ctx.Err() == nil; i++ {
		q := url.Values{"topic": s.topics}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, eps[i%len(eps)]+"/v1/stream?"+q.Encode(), nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		func() {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			req = req.WithContext(cctx)
			resp, err := hc.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return
			}
			// A stalled node: no byte for 6s ends the connection.
			idle := time.AfterFunc(6*time.Second, cancel)
			defer idle.Stop()
			dec := sse.NewDecoder(bufio.NewReader(resp.Body))
			for {
				ev, err := dec.Next()
				if err != nil {
					return
				}
				idle.Reset(6 * time.Second)
				if ev.Type == "" && ev.Data == "" {
					continue
				}
				typ := ev.Type
				if typ == "" {
					typ = "message"
				}
				if typ == push.EventHello {
					once.Do(func() { close(ready) })
				}
				if err := s.record(client.Event{ID: ev.ID, Type: typ, Data: ev.Data}); err != nil {
					return
				}
				if ev.ID != "" {
					last = ev.ID
				}
			}
		}()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ---------------------------------------------------------------------------
// Checker.

type chaosCounts struct {
	Acked, Abandoned, Delivered       int
	SilentLoss, Duplicates, Reorders  int
	LostByRedis                       int // acked, absent from the final history
	LostNamed, LostUnseen             int // subscriber × lost event: named by a reset / never read
	RetractedNamed, RetractedSilently int // subscriber × delivered-then-lost event
	FalseLoss                         int // subscriber × event named lost yet present and never delivered
	Resets                            int
	FalseResets                       int // resets before any rollback or failover
	Failovers                         int
	LossOutsideLossyFaults            int
	PerFault                          map[string]*faultCounts
	Problems                          []string
	problemsBy                        map[string]int
}

// problem records a finding, at most 5 per category.
func (c *chaosCounts) problem(cat, format string, args ...any) {
	if c.problemsBy == nil {
		c.problemsBy = map[string]int{}
	}
	c.problemsBy[cat]++
	if c.problemsBy[cat] <= 5 {
		c.Problems = append(c.Problems, cat+": "+fmt.Sprintf(format, args...))
	}
}

type faultCounts struct {
	Injected, LostAcked, Resets int
}

func covers(r *push.StreamReset, off uint64) bool {
	if off >= r.LostFrom && (r.LostTo == 0 || off <= r.LostTo) && r.LostFrom > 0 {
		return true
	}
	// continue_from below an offset the client holds: its events from
	// there on are superseded by the new lineage.
	return r.ContinueFrom > 0 && off >= r.ContinueFrom
}

func checkChaos(acks map[string]ackRec, abandoned int, history map[string]map[string]uint64, subs []*chaosSub, faults []faultRecord, failovers []time.Time) chaosCounts {
	c := chaosCounts{Acked: len(acks), Abandoned: abandoned, PerFault: map[string]*faultCounts{}, Failovers: len(failovers)}
	for _, k := range append(slices.Clone(faultKinds), faultSpontaneous) {
		c.PerFault[k] = &faultCounts{}
	}
	for _, f := range faults {
		c.PerFault[f.Kind].Injected++
	}
	// Where acknowledged writes can be lost: a rollback, or a promotion of
	// the replica (observed by watching the Sentinels, since a failover
	// started by a long cut can complete after the next fault began).
	type lossPoint struct {
		at   time.Time
		kind string
	}
	inForce := func(t time.Time) string { return failoverCause(faults, t) }
	var points []lossPoint
	for _, f := range faults {
		if f.Kind == faultRollback {
			points = append(points, lossPoint{f.At, f.Kind})
		}
	}
	for _, fo := range failovers {
		// The old primary may take writes until Sentinel demotes it.
		points = append(points, lossPoint{fo.Add(10 * time.Second), inForce(fo)})
	}
	sort.Slice(points, func(i, j int) bool { return points[i].at.Before(points[j].at) })
	lost := map[string]bool{}
	for p, a := range acks {
		if _, ok := history[a.Topic][p]; !ok {
			lost[p] = true
			c.LostByRedis++
			i := sort.Search(len(points), func(i int) bool { return !points[i].at.Before(a.At) })
			switch {
			case i == len(points):
				c.LossOutsideLossyFaults++
				c.problem("loss outside lossy faults", "acked %s (%s@%d at %s) lost after the last failover or rollback", p, a.Epoch, a.Offset, a.At.Format("15:04:05.000"))
			case !lossyFault(points[i].kind):
				c.LossOutsideLossyFaults++
				c.problem("loss outside lossy faults", "acked %s (%s@%d) lost in a failover during %s", p, a.Epoch, a.Offset, points[i].kind)
			default:
				c.PerFault[points[i].kind].LostAcked++
			}
		}
	}
	for _, s := range subs {
		s.mu.Lock()
		log := slices.Clone(s.log)
		s.mu.Unlock()
		for _, e := range s.errs {
			c.problem("subscriber error", "%s: %s", s.name, e)
		}
		type seen struct {
			off uint64
			idx int
		}
		delivered := map[string][]seen{}
		last := map[string]uint64{}
		lastSeq := map[string]map[int]int{} // topic -> publisher -> seq, within a segment
		var resets []int
		for i, r := range log {
			if r.Reset != nil {
				c.Resets++
				resets = append(resets, i)
				last[r.Topic] = r.Reset.ContinueFrom - 1
				lastSeq[r.Topic] = nil
				continue
			}
			c.Delivered++
			_, pub, seq, _ := parsePayload(r.Payload)
			if prev := delivered[r.Payload]; len(prev) > 0 {
				// A redelivery is legitimate only after a reset of the
				// topic that covers the earlier delivery's offset.
				retracted := false
				for _, ri := range resets {
					if ri > prev[len(prev)-1].idx && log[ri].Topic == r.Topic && covers(log[ri].Reset, prev[len(prev)-1].off) {
						retracted = true
					}
				}
				if !retracted {
					c.Duplicates++
					c.problem("duplicate", "%s: %s delivered again at offset %d (first at %d)", s.name, r.Payload, r.Offset, prev[len(prev)-1].off)
				}
			}
			delivered[r.Payload] = append(delivered[r.Payload], seen{r.Offset, i})
			if l, ok := last[r.Topic]; ok && r.Offset <= l {
				c.Reorders++
				c.problem("reorder", "%s: %s at offset %d after offset %d", s.name, r.Payload, r.Offset, l)
			}
			last[r.Topic] = r.Offset
			if lastSeq[r.Topic] == nil {
				lastSeq[r.Topic] = map[int]int{}
			}
			if q, ok := lastSeq[r.Topic][pub]; ok && seq <= q {
				c.Reorders++
				c.problem("reorder", "%s: publisher %d's seq %d after %d", s.name, pub, seq, q)
			}
			lastSeq[r.Topic][pub] = seq
		}
		coveredAt := func(topic string, off uint64, after int) bool {
			for _, ri := range resets {
				if ri > after && log[ri].Topic == topic && covers(log[ri].Reset, off) {
					return true
				}
			}
			return false
		}
		for p, a := range acks {
			if !slices.Contains(s.topics, a.Topic) {
				continue
			}
			d := delivered[p]
			switch {
			case lost[p] && len(d) > 0:
				// It reached the subscriber, then Redis lost it: a reset
				// after the delivery must name it.
				if coveredAt(a.Topic, d[len(d)-1].off, d[len(d)-1].idx) {
					c.RetractedNamed++
				} else {
					c.RetractedSilently++
					c.problem("silently retracted", "%s: %s (acked %s@%d) delivered at %d, then lost by Redis, never named by a reset; log: %s", s.name, p, a.Epoch, a.Offset, d[len(d)-1].off, window(log, d[len(d)-1].idx))
				}
			case lost[p]:
				if coveredAt(a.Topic, a.Offset, -1) {
					c.LostNamed++
				} else {
					c.LostUnseen++
				}
			case len(d) == 0:
				if coveredAt(a.Topic, a.Offset, -1) {
					c.FalseLoss++
					c.problem("named lost while present", "%s: %s (acked %s@%d, final offset %d) never delivered, named by a reset", s.name, p, a.Epoch, a.Offset, history[a.Topic][p])
				} else {
					c.SilentLoss++
					c.problem("silent loss", "%s: %s (%s@%d) acked, in Redis, never delivered, no reset", s.name, p, a.Epoch, a.Offset)
				}
			}
		}
	}
	return c
}

// window renders a subscriber's log around index i, for the report.
func window(log []recvRec, i int) string {
	var b strings.Builder
	for j := max(0, i-3); j < min(len(log), i+8); j++ {
		r := log[j]
		if r.Reset != nil {
			fmt.Fprintf(&b, "[reset %s %d..%d cont %d] ", r.Topic, r.Reset.LostFrom, r.Reset.LostTo, r.Reset.ContinueFrom)
		} else {
			fmt.Fprintf(&b, "[%s@%d] ", r.Payload, r.Offset)
		}
	}
	return b.String()
}

// failoverCause names the fault behind a promotion seen at t: the latest
// lossy fault (primary kill, rollback, cut) at most 30s before it — a
// failover completes seconds after its cause, and a restarted old primary
// can be taken over again while Sentinel settles — else a spontaneous
// failover (Sentinel promoted the replica on its own: a primary starved
// of CPU missed its pings). Every failover may lose the replication lag.
func failoverCause(faults []faultRecord, t time.Time) string {
	for i := len(faults) - 1; i >= 0; i-- {
		f := faults[i]
		if !f.At.After(t) && t.Sub(f.At) <= 30*time.Second && lossyFault(f.Kind) {
			return f.Kind
		}
	}
	return faultSpontaneous
}

// attributeResets counts each reset subscribers got under the fault
// that lost data last before it: the latest rollback or promotion of the
// replica. A reset with no such fault before it would be a false reset.
func attributeResets(c *chaosCounts, resetTimes []time.Time, faults []faultRecord, failovers []time.Time) {
	for _, rt := range resetTimes {
		kind, at := "", time.Time{}
		for _, f := range faults {
			if f.Kind == faultRollback && !f.At.After(rt) && f.At.After(at) {
				kind, at = f.Kind, f.At
			}
		}
		for _, fo := range failovers {
			if !fo.After(rt) && fo.After(at) {
				kind, at = failoverCause(faults, fo), fo
			}
		}
		if kind == "" {
			c.FalseResets++
			continue
		}
		c.PerFault[kind].Resets++
	}
}

func (c chaosCounts) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "acked %d (abandoned after 30s of retries: %d), delivered %d (subscriber × event), resets %d\n", c.Acked, c.Abandoned, c.Delivered, c.Resets)
	fmt.Fprintf(&b, "silent loss %d, duplicates %d, reorders %d\n", c.SilentLoss, c.Duplicates, c.Reorders)
	fmt.Fprintf(&b, "acked events Redis lost %d (outside rollback/failover faults: %d); per subscriber: named by a reset %d, before the subscriber read them %d; delivered then lost: named %d, silently %d; named lost while present %d\n",
		c.LostByRedis, c.LossOutsideLossyFaults, c.LostNamed, c.LostUnseen, c.RetractedNamed, c.RetractedSilently, c.FalseLoss)
	fmt.Fprintf(&b, "resets before any rollback or failover: %d; failovers (promotions seen by the Sentinels): %d\n", c.FalseResets, c.Failovers)
	fmt.Fprintf(&b, "%-22s %8s %10s %7s\n", "fault", "injected", "lost acks", "resets")
	for _, k := range append(slices.Clone(faultKinds), faultSpontaneous) {
		f := c.PerFault[k]
		fmt.Fprintf(&b, "%-22s %8d %10d %7d\n", k, f.Injected, f.LostAcked, f.Resets)
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// The schedule.

func chaosSettings(t *testing.T) (seed uint64, dur time.Duration) {
	seed = rand.Uint64() % 1_000_000
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: %v", v, err)
		}
		seed = n
	}
	dur = 60 * time.Second
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CHAOS_DURATION=%q: %v", v, err)
		}
		dur = d
	}
	return seed, dur
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the nemesis runs a cluster under faults for minutes")
	}
	seed, dur := chaosSettings(t)
	t.Logf("chaos seed %d, faults for %s (replay: make chaos SEED=%d DURATION=%s)", seed, dur, seed, dur)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	set := redistest.StartSentinelProxied(t, redistest.WithAppendOnly(true), redistest.WithArgs("--appendfsync", "everysec"))
	cc := &chaosCluster{t: t, set: set, env: []string{
		"HERALD_PROTECTION__ADMISSION__CONNECT_RATE=100000",
		"HERALD_PROTECTION__BREAKER__SLOW_RATIO=0",
		"HERALD_CLUSTER__DRAIN_WINDOW=2s",
	}}
	for _, name := range []string{"a", "b", "c"} {
		cc.nodes = append(cc.nodes, &chaosNode{name: name, listen: fixedAddr(t), admin: fixedAddr(t), gossip: fixedAddr(t)})
	}
	for _, n := range cc.nodes {
		cc.start(n)
	}
	if err := cc.ready(60 * time.Second); err != nil {
		t.Fatal(err)
	}

	topics := make([]string, chaosTopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("cx-%d", i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var subs []*chaosSub
	var readies []chan struct{}
	for i := range chaosSDKSubs + chaosRawSubs {
		// Every subscriber follows two or three topics.
		ts := []string{topics[i%chaosTopics], topics[(i+1)%chaosTopics]}
		if i%2 == 0 {
			ts = append(ts, topics[(i+2)%chaosTopics])
		}
		kind := "sdk"
		if i >= chaosSDKSubs {
			kind = "raw"
		}
		s := newChaosSub(fmt.Sprintf("%s-%d", kind, i), ts)
		subs = append(subs, s)
		ready := make(chan struct{})
		readies = append(readies, ready)
		eps := cc.endpoints(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if kind == "sdk" {
				runSDKSub(ctx, s, eps, ready)
			} else {
				runRawSub(ctx, s, eps, ready)
			}
		}()
	}
	for _, r := range readies {
		select {
		case <-r:
		case <-time.After(30 * time.Second):
			t.Fatal("a subscriber got no hello within 30s")
		}
	}
	led := &chaosLedger{acks: map[string]ackRec{}}
	pctx, stopPub := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	for i := range chaosPublishers {
		prng := rand.New(rand.NewPCG(seed+uint64(i)+1, 7))
		eps := cc.endpoints(i)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			runPublisher(pctx, i, eps, topics, led, prng)
		}()
	}

	// Faults, one at a time, each followed by a quiet period.
	var faults []faultRecord
	var resetTimes []time.Time
	var resetMu sync.Mutex
	stopWatch := make(chan struct{})
	var watchWG sync.WaitGroup
	watchWG.Add(1)
	go func() { // samples reset counts over time, to attribute them to faults
		defer watchWG.Done()
		seen := 0
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-tk.C:
			}
			n := 0
			for _, s := range subs {
				s.mu.Lock()
				for _, r := range s.log {
					if r.Reset != nil {
						n++
					}
				}
				s.mu.Unlock()
			}
			resetMu.Lock()
			for ; seen < n; seen++ {
				resetTimes = append(resetTimes, time.Now())
			}
			resetMu.Unlock()
		}
	}()
	var failovers []time.Time // promotions seen by the Sentinels
	watchWG.Add(1)
	go func() {
		defer watchWG.Done()
		prev := ""
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-tk.C:
			}
			wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
			addr, err := set.PrimaryAddr(wctx)
			wcancel()
			if err != nil || addr == prev {
				continue
			}
			if prev != "" {
				resetMu.Lock()
				failovers = append(failovers, time.Now())
				resetMu.Unlock()
			}
			prev = addr
		}
	}()
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		kind := faultKinds[rng.IntN(len(faultKinds))]
		f := cc.inject(kind, rng)
		faults = append(faults, f)
		t.Logf("%s fault %-20s %s", f.At.Format("15:04:05.000"), f.Kind, f.Detail)
		if err := cc.ready(45 * time.Second); err != nil {
			t.Fatalf("after %s: %v", kind, err)
		}
		time.Sleep(time.Duration(1500+rng.IntN(2500)) * time.Millisecond)
	}
	stopPub()
	pwg.Wait()

	// Converge: every subscriber reaches the final head of its topics.
	st, err := redisstore.New(redisstore.Config{URL: set.URL(), Origin: "local", KeyPrefix: "herald"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var infos []push.StreamInfo
	deadline := time.Now().Add(chaosConvergeMax)
	for {
		ictx, icancel := context.WithTimeout(context.Background(), 3*time.Second)
		infos, err = st.Info(ictx, topics)
		icancel()
		behind := 0
		if err == nil {
			for _, s := range subs {
				s.mu.Lock()
				for _, in := range infos {
					if slices.Contains(s.topics, in.Topic) && s.heads[in.Topic] < in.Last {
						behind++
					}
				}
				s.mu.Unlock()
			}
		}
		if err == nil && behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("subscribers did not converge within %s (%d streams behind, %v)", chaosConvergeMax, behind, err)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	close(stopWatch)
	watchWG.Wait()

	history := map[string]map[string]uint64{}
	for _, tp := range topics {
		history[tp] = map[string]uint64{}
		var after uint64
		for {
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			evs, _, err := st.Read(rctx, tp, after, 1000)
			rcancel()
			if err != nil {
				t.Fatalf("read final history of %s: %v", tp, err)
			}
			if len(evs) == 0 {
				break
			}
			for _, e := range evs {
				history[tp][string(e.Data)] = e.Offset
				after = e.Offset
			}
		}
	}
	led.mu.Lock()
	acks := led.acks
	abandoned := led.abandoned
	led.mu.Unlock()
	counts := checkChaos(acks, abandoned, history, subs, faults, failovers)
	if dir := os.Getenv("CHAOS_DUMP"); dir != "" {
		// Every subscriber's record, for a post-mortem.
		for _, s := range subs {
			var b strings.Builder
			for _, r := range s.log {
				if r.Reset != nil {
					fmt.Fprintf(&b, "reset %s %s lost %d..%d continue %d epoch %s\n", r.Topic, r.Reset.Reason, r.Reset.LostFrom, r.Reset.LostTo, r.Reset.ContinueFrom, r.Reset.Epoch)
				} else {
					fmt.Fprintf(&b, "%s %d %s\n", r.Topic, r.Offset, r.Payload)
				}
			}
			if err := os.WriteFile(fmt.Sprintf("%s/chaos-%d-%s.log", dir, seed, s.name), []byte(b.String()), 0o600); err != nil {
				t.Error(err)
			}
		}
	}
	attributeResets(&counts, resetTimes, faults, failovers)
	sort.Slice(faults, func(i, j int) bool { return faults[i].At.Before(faults[j].At) })
	t.Logf("chaos seed %d, %s of faults, %d faults:\n%s", seed, dur, len(faults), counts)
	for _, p := range head(counts.Problems, 20) {
		t.Errorf("%s", p)
	}
	if counts.SilentLoss != 0 || counts.Duplicates != 0 || counts.Reorders != 0 || counts.RetractedSilently != 0 ||
		counts.LossOutsideLossyFaults != 0 || counts.FalseResets != 0 || counts.FalseLoss != 0 {
		t.Errorf("seed %d: silent loss %d, duplicates %d, reorders %d, silently retracted %d, loss outside lossy faults %d, resets before any loss %d, named lost while present %d: want all 0",
			seed, counts.SilentLoss, counts.Duplicates, counts.Reorders, counts.RetractedSilently, counts.LossOutsideLossyFaults, counts.FalseResets, counts.FalseLoss)
	}
	if counts.Acked == 0 {
		t.Error("nothing was acknowledged")
	}
}

func head(s []string, n int) []string { return s[:min(len(s), n)] }

// inject runs one fault to its end (the cluster may still be recovering).
func (cc *chaosCluster) inject(kind string, rng *rand.Rand) faultRecord {
	t := cc.t
	t.Helper()
	f := faultRecord{Kind: kind}
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo)) * time.Millisecond }
	primary := func() *redistest.Server {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p, err := cc.set.Primary(ctx)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		return p
	}
	switch kind {
	case faultNodeKill:
		n := cc.nodes[rng.IntN(len(cc.nodes))]
		f.At = time.Now()
		n.p.kill()
		time.Sleep(ms(500, 2500))
		cc.start(n)
		f.Detail = n.name
	case faultNodeStop:
		n := cc.nodes[rng.IntN(len(cc.nodes))]
		d := ms(1000, 4000)
		f.At = time.Now()
		n.p.signal(syscall.SIGSTOP)
		time.Sleep(d)
		n.p.signal(syscall.SIGCONT)
		f.Detail = fmt.Sprintf("%s for %s", n.name, d)
	case faultDrain:
		n := cc.nodes[rng.IntN(len(cc.nodes))]
		f.At = time.Now()
		n.p.signal(syscall.SIGTERM)
		took, err := n.p.waitExit(60 * time.Second)
		if err != nil {
			n.p.kill()
		}
		cc.start(n)
		f.Detail = fmt.Sprintf("%s drained in %s", n.name, took.Round(time.Millisecond))
	case faultPrimaryKill:
		f.At = time.Now()
		old := cc.set.KillPrimary(t)
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		nw, err := cc.set.WaitFailover(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		for _, d := range cc.set.Servers() {
			if !d.Running() {
				d.Restart(t) // comes back as a primary; Sentinel demotes it
			}
		}
		f.Detail = fmt.Sprintf("%s -> %s", old, nw)
	case faultRestart:
		p := primary()
		f.At = time.Now()
		if err := p.Stop(); err != nil { // SHUTDOWN: AOF fsynced
			t.Fatalf("%s: %v", kind, err)
		}
		p.Restart(t)
		f.Detail = p.Addr()
	case faultRollback:
		p := primary()
		snap := p.Snapshot(t)
		time.Sleep(ms(1500, 4000)) // acknowledged writes the rollback will lose
		f.At = time.Now()
		p.Rollback(t, snap)
		f.Detail = p.Addr()
	case faultLinkSlow:
		p := primary()
		px := cc.set.Proxy(p)
		lat := 50 + rng.IntN(400)
		d := ms(2000, 6000)
		f.At = time.Now()
		if _, err := px.AddToxic("slow", "latency", "downstream", 1, toxiclient.Attributes{"latency": lat, "jitter": lat / 2}); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		time.Sleep(d)
		if err := px.RemoveToxic("slow"); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		f.Detail = fmt.Sprintf("%s +%dms for %s", p.Addr(), lat, d)
	case faultLinkCut:
		p := primary()
		px := cc.set.Proxy(p)
		d := ms(300, 2500)
		f.At = time.Now()
		if err := px.Disable(); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		time.Sleep(d)
		if err := px.Enable(); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		f.Detail = fmt.Sprintf("%s cut for %s", p.Addr(), d)
	default:
		t.Fatalf("unknown fault %q", kind)
	}
	f.End = time.Now()
	return f
}
