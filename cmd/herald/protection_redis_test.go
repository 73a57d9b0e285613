package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/heraldpush/herald/internal/bench"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
)

// Layer 4 on real processes: node → toxiproxy (in this test process) →
// redis-server. The fault is injected on the node's only path to Redis
// (store calls and the Pub/Sub listener alike).

// breakerEnv makes the breaker decide within seconds: a 3s window, 5
// calls, probing 3s after opening.
var breakerEnv = []string{
	"HERALD_PROTECTION__BREAKER__WINDOW=3s",
	"HERALD_PROTECTION__BREAKER__MIN_REQUESTS=5",
	"HERALD_PROTECTION__BREAKER__RETRY_TIMEOUT=3s",
	"HERALD_STREAM__HEARTBEAT=1s",
}

const breakerTarget = "redis:local"

// nodeResources reads a node's RSS (/proc) and goroutine count (pprof on
// the admin listener, --admin-pprof).
func nodeResources(p *proc) (rssMiB float64, goroutines int) {
	rssMiB = bench.ProcRSS(p.cmd.Process.Pid) / (1 << 20)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.Admin+"/debug/pprof/goroutine?debug=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rssMiB, -1
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	_, _ = io.Copy(io.Discard, resp.Body)
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "goroutine profile: total ")))
	if err != nil {
		return rssMiB, -1
	}
	return rssMiB, n
}

// heartbeatWatch counts the ": heartbeat" comment lines of one raw stream
// (the SSE decoder skips comments, so it reads lines itself).
type heartbeatWatch struct {
	mu     sync.Mutex
	beats  []time.Time
	closed bool
	cancel context.CancelFunc
	done   chan struct{}
}

func watchHeartbeats(t *testing.T, base, topic string) *heartbeatWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/stream?topic="+topic, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("heartbeat stream: %v %v", resp, err)
	}
	w := &heartbeatWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				w.mu.Lock()
				w.closed = true
				w.mu.Unlock()
				return
			}
			if strings.HasPrefix(line, ":") {
				w.mu.Lock()
				w.beats = append(w.beats, time.Now())
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// between returns the beats in [from, to] and the longest silence there.
func (w *heartbeatWatch) between(from, to time.Time) (n int, maxGap time.Duration, closed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := from
	for _, b := range w.beats {
		if b.Before(from) || b.After(to) {
			continue
		}
		n++
		maxGap = max(maxGap, b.Sub(prev))
		prev = b
	}
	return n, max(maxGap, to.Sub(prev)), w.closed
}

// probeResult is one raw publish made while Redis was away.
type probeResult struct {
	start      time.Time
	took       time.Duration
	status     int
	retryAfter string
	code       string
}

// prober publishes raw events to its own topic every interval, each in its
// own goroutine (at most 64 in flight), recording every outcome.
type prober struct {
	mu      sync.Mutex
	results []probeResult
	stopc   chan struct{}
	wg      sync.WaitGroup
}

func startProber(base, topic string, interval time.Duration) *prober {
	pr := &prober{stopc: make(chan struct{})}
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	sem := make(chan struct{}, 64)
	pr.wg.Go(func() {
		defer hc.CloseIdleConnections()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for i := 0; ; i++ {
			select {
			case <-pr.stopc:
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				continue // 64 in flight: skip this tick
			}
			inflight.Go(func() {
				defer func() { <-sem }()
				start := time.Now()
				st, ra, code, err := publishRaw(context.Background(), hc, base, "", topic, "probe-"+strconv.Itoa(i))
				r := probeResult{start: start, took: time.Since(start), status: st, retryAfter: ra, code: code}
				if err != nil {
					r.code = err.Error()
				}
				pr.mu.Lock()
				pr.results = append(pr.results, r)
				pr.mu.Unlock()
			})
		}
	})
	return pr
}

func (pr *prober) stop() []probeResult {
	close(pr.stopc)
	pr.wg.Wait()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return slices.Clone(pr.results)
}

// sample is one observation of the node during the outage.
type sample struct {
	at         time.Time
	state      string
	rssMiB     float64
	goroutines int
}

// TestProtectionRedisOutageBreaker: 30 s of Redis unreachable (every byte
// between node and Redis dropped, connections left hanging, as in a network
// partition). The breaker opens within its window, publishes fail fast with
// 503 + Retry-After (only the breaker's single half-open probes wait for
// Redis), heartbeats continue on open streams, goroutines and RSS stay
// bounded; after the heal the breaker closes through a probe and every
// subscriber has every acknowledged event exactly once; once per stream
// transport (SSE, WebSocket: its heartbeats are pings).
func TestProtectionRedisOutageBreaker(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process protection test")
	}
	forTransports(t, redisOutageBreaker)
}

func redisOutageBreaker(t *testing.T) {
	const outage = 30 * time.Second
	rd := redistest.StartServer(t)
	px := redistest.StartProxy(t, "redis", rd.Addr())
	p := startProc(t, "outage", append(slices.Clone(unguarded), breakerEnv...),
		"--redis", "redis://"+px.Listen, "--admin-pprof")
	topics := make([]string, 20)
	for i := range topics {
		topics[i] = fmt.Sprintf("out-%d", i)
	}
	const subscribers = 200
	// Idle timeout 5s with 1s heartbeats: a stream whose heartbeats stopped
	// during the outage would reconnect (and show up in connects).
	f := newFleet(t, subscribers, topics, func(int) []string { return []string{p.URL} }, 5*time.Second)
	eventually(t, 60*time.Second, "every client's hello", func() bool { return f.ready() == subscribers })
	hb := watchHeartbeats(t, p.URL, topics[0])
	pub := startPublisher([]string{p.URL}, topics, 20)
	// A cursor on topics[1] that the node's recent-events cache will still
	// cover when Redis goes away (its stream is closed: its own session).
	rs := openRaw(t, p.URL, topics[1], "")
	var cached string
	select {
	case ev := <-rs.events:
		cached = ev.ID
	case <-time.After(10 * time.Second):
		t.Fatal("no event on the raw stream")
	}
	rs.cancel()
	cachedOff, err := push.DecodeOffsets(cached, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAcked(t, pub, 40)

	var samples []sample
	observe := func() sample {
		rss, g := nodeResources(p)
		s := sample{at: time.Now(), state: p.protection(t).Breakers[breakerTarget], rssMiB: rss, goroutines: g}
		samples = append(samples, s)
		return s
	}
	before := observe()
	if before.state != "closed" {
		t.Fatalf("breaker %s before the outage", before.state)
	}
	pr := startProber(p.URL, "probe", 50*time.Millisecond)

	// Cut: drop every byte both ways, on open and new connections.
	tCut := time.Now()
	for _, dir := range []string{"upstream", "downstream"} {
		if _, err := px.AddToxic("blackhole-"+dir, "timeout", dir, 1, toxiclient.Attributes{"timeout": 0}); err != nil {
			t.Fatal(err)
		}
	}
	var tOpen time.Time
	var ext *curlSampler // publishes from outside this process while open
	for time.Since(tCut) < outage {
		s := observe()
		if tOpen.IsZero() && s.state == "open" {
			tOpen = s.at
			ext = startCurl(t, 20, 20*int(outage/time.Second), p.URL+"/v1/topics/probe-ext/events",
				"-X", "POST", "-H", "Content-Type: application/json", "--data", `{"data":"probe"}`)
			// New streams while Redis is away: a resume the recent-events
			// cache covers is served from it; one it cannot place is shed.
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
			a := tryStream(t, hc, p.URL, topics[1], cached, false)
			if !a.hello {
				t.Fatalf("resume covered by the recent-events cache, Redis away: status %d, shed %v; want it served", a.status, a.shed())
			}
			if err := a.readUntil(cachedOff[0], cachedOff[0]+1, 5*time.Second); err != nil {
				t.Fatalf("resume served from the recent-events cache: %v", err)
			}
			a.close()
			if b := tryStream(t, hc, p.URL, topics[1], "", false); !b.shed() {
				t.Fatalf("new stream without a cursor, Redis away: status %d hello %v; want a browser-safe shed", b.status, b.hello)
			}
			hc.CloseIdleConnections()
		}
		time.Sleep(250 * time.Millisecond) // sampling period while the fault is held
	}
	extRes, extStderr := ext.stop()
	tHeal := time.Now()
	for _, dir := range []string{"upstream", "downstream"} {
		if err := px.RemoveToxic("blackhole-" + dir); err != nil {
			t.Fatal(err)
		}
	}
	if tOpen.IsZero() {
		t.Fatalf("breaker never opened during %v of Redis unreachable; states seen: %v", outage, states(samples))
	}
	var tClosed time.Time
	eventually(t, 20*time.Second, "breaker closed after the heal", func() bool {
		s := observe()
		if s.state == "closed" {
			tClosed = s.at
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
	probes := pr.stop()
	waitAcked(t, pub, 40)
	finish(t, f, pub)
	after := observe()

	// The breaker: opened within its window (+ the 2s per-call timeout of
	// the calls that detect the outage), closed through probes after heal.
	openIn, closeIn := tOpen.Sub(tCut), tClosed.Sub(tHeal)
	t.Logf("breaker: open %v after the cut (window 3s + Redis op timeout 2s), closed %v after the heal (retry timeout 3s)", openIn.Round(time.Millisecond), closeIn.Round(time.Millisecond))
	if openIn > 3*time.Second+2*time.Second+time.Second {
		t.Fatalf("breaker opened %v after the cut, want within window + op timeout (6s)", openIn)
	}
	if closeIn > 3*time.Second+2*time.Second+3*time.Second {
		t.Fatalf("breaker closed %v after the heal, want within two probe rounds", closeIn)
	}

	// Publishes while open: 503 unavailable with Retry-After, fast; the
	// only slow ones are the breaker's half-open probes (one per half-open).
	c := p.protection(t).Counters
	t.Logf("counters: %v", c)
	// A call passes a half-open breaker only as the probe of every rule in
	// half-open, so probes ≤ the half-opens of either rule.
	halfOpens := max(c["dependency/"+breakerTarget+"/error_ratio/half_open"], c["dependency/"+breakerTarget+"/slow_ratio/half_open"])
	var fast, all []time.Duration
	slow := 0
	for _, r := range probes {
		if r.start.Before(tOpen) || r.start.After(tHeal) {
			continue
		}
		all = append(all, r.took)
		if r.took > time.Second {
			slow++
			continue
		}
		if r.status != http.StatusServiceUnavailable || r.code != "unavailable" {
			t.Fatalf("publish while the breaker was open: %d %q after %v, want 503 unavailable", r.status, r.code, r.took)
		}
		if ra, err := strconv.Atoi(r.retryAfter); err != nil || ra < 1 {
			t.Fatalf("503 with Retry-After %q, want ≥ 1", r.retryAfter)
		}
		fast = append(fast, r.took)
	}
	slices.Sort(fast)
	slices.Sort(all)
	t.Logf("publishes while open: %d; 503s p50 %v p99 %v max %v; all p99 %v; %d slower than 1s (half-open probes: %d)",
		len(all), percentile(fast, 0.5), percentile(fast, 0.99), percentile(fast, 1), percentile(all, 0.99), slow, halfOpens)
	if len(fast) < 100 {
		t.Fatalf("only %d fast-failed publishes measured while open", len(fast))
	}
	if uint64(slow) > halfOpens {
		t.Fatalf("%d publishes waited > 1s while open, but only %d half-open probes were let through", slow, halfOpens)
	}
	// The same from curl, outside this race-instrumented process (whose
	// scheduling inflates the tail above): the node's own answer time.
	if ext != nil {
		var lat []time.Duration
		extSlow := 0
		for _, r := range extRes {
			if r.took > time.Second {
				extSlow++
				continue
			}
			if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, `"unavailable"`) || r.retryAfter == "" {
				t.Fatalf("publish (curl) while open: %d Retry-After %q %s", r.status, r.retryAfter, r.body)
			}
			lat = append(lat, r.took)
		}
		slices.Sort(lat)
		t.Logf("publishes while open, from curl: %d; 503s p50 %v p99 %v max %v; %d slower than 1s %s",
			len(extRes), percentile(lat, 0.5), percentile(lat, 0.99), percentile(lat, 1), extSlow, strings.TrimSpace(extStderr))
		if len(lat) < 100 || uint64(extSlow) > halfOpens {
			t.Fatalf("curl: %d fast 503s, %d slow (half-opens %d)", len(lat), extSlow, halfOpens)
		}
		if p99 := percentile(lat, 0.99); p99 > 100*time.Millisecond {
			t.Fatalf("503 p99 %v while open, want < 100ms", p99)
		}
	} else if p99 := percentile(fast, 0.99); p99 > 100*time.Millisecond {
		t.Fatalf("503 p99 %v while open, want < 100ms", p99)
	}
	if c["dependency/"+breakerTarget+"/breaker_open/block"] == 0 || c["dependency/"+breakerTarget+"/error_ratio/trip"] == 0 {
		t.Fatalf("counters miss the trip or the blocks: %v", c)
	}

	// Heartbeats kept every stream alive.
	n, gap, closed := hb.between(tCut, tHeal)
	t.Logf("heartbeats on a raw stream during the outage: %d, longest silence %v, stream closed: %v", n, gap.Round(time.Millisecond), closed)
	if closed || n < int(outage/time.Second)-3 || gap > 2500*time.Millisecond {
		t.Fatalf("heartbeats during the outage: %d, longest silence %v, closed %v; want one per second", n, gap, closed)
	}
	reconnected := 0
	for _, cl := range f.clients {
		cl.mu.Lock()
		for _, cr := range cl.connects {
			if cr.at.After(tCut) && cr.at.Before(tHeal) {
				reconnected++
				break
			}
		}
		cl.mu.Unlock()
	}
	t.Logf("fleet clients that reconnected during the outage: %d of %d", reconnected, subscribers)
	if reconnected != 0 {
		t.Fatalf("%d streams dropped during the outage (heartbeats should keep them open)", reconnected)
	}

	// Resources: bounded, and not growing with the outage's length.
	var during []sample
	for _, s := range samples {
		if s.at.After(tCut) && s.at.Before(tHeal) {
			during = append(during, s)
		}
	}
	half := len(during) / 2
	peak := func(ss []sample) (rss float64, g int) {
		for _, s := range ss {
			rss, g = max(rss, s.rssMiB), max(g, s.goroutines)
		}
		return rss, g
	}
	r1, g1 := peak(during[:half])
	r2, g2 := peak(during[half:])
	t.Logf("node RSS before %.1f MiB, peak first half %.1f, second half %.1f, after %.1f; goroutines before %d, peak first half %d, second half %d, after %d",
		before.rssMiB, r1, r2, after.rssMiB, before.goroutines, g1, g2, after.goroutines)
	if before.goroutines < 0 || g1 < 0 {
		t.Fatalf("goroutine count unavailable (pprof)")
	}
	// A leak raises the floor: compare each half's lowest count (a
	// WebSocket stream's keep-alive ping holds a goroutine until its pong,
	// so 200 sockets pinging on the same tick spike the peak, not the floor).
	if half == 0 {
		t.Fatalf("only %d resource samples during the outage", len(during))
	}
	low := func(ss []sample) int {
		g := ss[0].goroutines
		for _, s := range ss {
			g = min(g, s.goroutines)
		}
		return g
	}
	l1, l2 := low(during[:half]), low(during[half:])
	if l2 > l1+50 || max(g1, g2) > before.goroutines+300 {
		t.Fatalf("goroutines grew during the outage: before %d; lowest %d then %d; peak %d then %d", before.goroutines, l1, l2, g1, g2)
	}
	if r2 > r1+32 || max(r1, r2) > before.rssMiB+64 {
		t.Fatalf("RSS grew during the outage: before %.1f MiB, %.1f then %.1f", before.rssMiB, r1, r2)
	}
}

func states(ss []sample) []string {
	var out []string
	for _, s := range ss {
		if len(out) == 0 || out[len(out)-1] != s.state {
			out = append(out, s.state)
		}
	}
	return out
}

// TestProtectionSlowRedisTripsSlowRatioBreaker: 200 ms of added latency on
// every Redis reply trips the slow-call rule (threshold 100ms); publishes
// then fail fast with 503; once the latency is gone a probe closes the
// breaker and subscribers have every acknowledged event; once per stream
// transport (SSE, WebSocket).
func TestProtectionSlowRedisTripsSlowRatioBreaker(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process protection test")
	}
	forTransports(t, slowRedisTripsSlowRatioBreaker)
}

func slowRedisTripsSlowRatioBreaker(t *testing.T) {
	rd := redistest.StartServer(t)
	px := redistest.StartProxy(t, "redis", rd.Addr())
	p := startProc(t, "slowredis", append(slices.Clone(unguarded), append(breakerEnv,
		"HERALD_PROTECTION__BREAKER__SLOW_THRESHOLD=100ms")...), "--redis", "redis://"+px.Listen)
	topics := []string{"slow-0", "slow-1", "slow-2", "slow-3"}
	f := newFleet(t, 40, topics, func(int) []string { return []string{p.URL} }, 0)
	eventually(t, 30*time.Second, "every client's hello", func() bool { return f.ready() == 40 })
	pub := startPublisher([]string{p.URL}, topics, 20)
	waitAcked(t, pub, 20)
	pr := startProber(p.URL, "probe", 100*time.Millisecond)

	tSlow := time.Now()
	if _, err := px.AddToxic("latency", "latency", "downstream", 1, toxiclient.Attributes{"latency": 200}); err != nil {
		t.Fatal(err)
	}
	var tOpen time.Time
	eventually(t, 15*time.Second, "breaker open under 200ms latency", func() bool {
		if p.protection(t).Breakers[breakerTarget] == "open" {
			tOpen = time.Now()
			return true
		}
		time.Sleep(50 * time.Millisecond)
		return false
	})
	// While open: publishes fail fast with 503.
	var tooks []time.Duration
	for i := range 5 {
		start := time.Now()
		st, ra, code, err := publishRaw(context.Background(), http.DefaultClient, p.URL, "", "probe", "while-open-"+strconv.Itoa(i))
		tooks = append(tooks, time.Since(start))
		if err != nil || st != http.StatusServiceUnavailable || code != "unavailable" || ra == "" {
			t.Fatalf("publish with the breaker open: %d %q Retry-After %q %v, want 503 unavailable", st, code, ra, err)
		}
	}
	slices.Sort(tooks)
	took := tooks[len(tooks)/2]
	tHeal := time.Now()
	if err := px.RemoveToxic("latency"); err != nil {
		t.Fatal(err)
	}
	var tClosed time.Time
	eventually(t, 15*time.Second, "breaker closed after the latency is gone", func() bool {
		if p.protection(t).Breakers[breakerTarget] == "closed" {
			tClosed = time.Now()
			return true
		}
		time.Sleep(50 * time.Millisecond)
		return false
	})
	_ = pr.stop()
	waitAcked(t, pub, 20)
	finish(t, f, pub)
	c := p.protection(t).Counters
	t.Logf("slow-call breaker: open %v after 200ms latency was injected, 503 in %v (median of 5) while open, closed %v after it was removed",
		tOpen.Sub(tSlow).Round(time.Millisecond), took.Round(time.Microsecond), tClosed.Sub(tHeal).Round(time.Millisecond))
	t.Logf("counters: %v", c)
	if c["dependency/"+breakerTarget+"/slow_ratio/trip"] == 0 || c["dependency/"+breakerTarget+"/slow_ratio/recover"] == 0 {
		t.Fatalf("want slow_ratio trip and recover counted: %v", c)
	}
	if c["dependency/"+breakerTarget+"/error_ratio/trip"] != 0 {
		t.Fatalf("the error-ratio rule tripped under latency alone: %v", c)
	}
	if took > 100*time.Millisecond {
		t.Fatalf("publishes with the breaker open took %v (median), want a fast 503", took)
	}
}
