package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/sse"
)

// Load-shaped protection tests: a reconnect storm paced by the admission
// layer, and slow consumers cut off by the fan-out queues.

// healthSampler GETs health endpoints every interval, one request at a
// time per endpoint, and records each latency.
type healthSampler struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	lat   map[string][]time.Duration
	errs  map[string]int
}

func startHealthSampler(interval time.Duration, urls ...string) *healthSampler {
	hs := &healthSampler{stopc: make(chan struct{}), lat: map[string][]time.Duration{}, errs: map[string]int{}}
	for _, u := range urls {
		hs.wg.Go(func() {
			hc := &http.Client{Timeout: 10 * time.Second}
			defer hc.CloseIdleConnections()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-hs.stopc:
					return
				case <-tick.C:
				}
				start := time.Now()
				resp, err := hc.Get(u)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				took := time.Since(start)
				hs.mu.Lock()
				if err != nil {
					hs.errs[u]++
				} else {
					hs.lat[u] = append(hs.lat[u], took)
				}
				hs.mu.Unlock()
			}
		})
	}
	return hs
}

func (hs *healthSampler) stop() (map[string][]time.Duration, map[string]int) {
	close(hs.stopc)
	hs.wg.Wait()
	for _, l := range hs.lat {
		slices.Sort(l)
	}
	return hs.lat, hs.errs
}

// perSecond buckets times into whole seconds after t0.
func perSecond(t0 time.Time, ts []time.Time) []int {
	var out []int
	for _, at := range ts {
		i := int(at.Sub(t0) / time.Second)
		if i < 0 {
			continue
		}
		for len(out) <= i {
			out = append(out, 0)
		}
		out[i]++
	}
	return out
}

// slidingPeak returns the most times within any window of length w.
func slidingPeak(ts []time.Time, w time.Duration) int {
	s := slices.Clone(ts)
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	best, lo := 0, 0
	for hi := range s {
		for s[hi].Sub(s[lo]) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// TestProtectionReconnectStormPacedByConnectRate: 8,000 SDK clients connect
// to one node at once (a node failure elsewhere sending its clients here).
// The connect-rate rule (1000/s, 2s warm-up) admits them at about that
// rate and refuses the rest with 503 + Retry-After; the node stays
// responsive; every client ends up streaming with nothing lost.
func TestProtectionReconnectStormPacedByConnectRate(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process protection test")
	}
	const clients, rate = 8000, 1000
	rd := redistest.StartServer(t)
	p := startProc(t, "storm", []string{
		"HERALD_PROTECTION__INGRESS__PUBLISH_QPS=0",
		"HERALD_PROTECTION__INGRESS__TOPIC_QPS=0",
		"HERALD_PROTECTION__ADMISSION__CONNECT_RATE=" + strconv.Itoa(rate),
		"HERALD_PROTECTION__ADMISSION__WARM_UP=2s",
	}, "--redis", rd.URL())
	topics := make([]string, 20)
	for i := range topics {
		topics[i] = fmt.Sprintf("storm-%d", i)
	}
	pub := startPublisher([]string{p.URL}, topics, 20)
	waitAcked(t, pub, 10)

	hs := startHealthSampler(50*time.Millisecond, p.URL+"/healthz", p.Admin+"/healthz")
	t0 := time.Now()
	f := newFleet(t, clients, topics, func(int) []string { return []string{p.URL} }, 0)
	eventually(t, 120*time.Second, fmt.Sprintf("all %d clients streaming", clients), func() bool {
		time.Sleep(100 * time.Millisecond)
		return f.ready() == clients
	})
	tAll := time.Since(t0)
	lat, herrs := hs.stop()
	if n := p.node(t).Streams; n != clients {
		t.Fatalf("node holds %d streams, want %d", n, clients)
	}

	var connects, firsts []time.Time
	for _, c := range f.clients {
		c.mu.Lock()
		for i, cr := range c.connects {
			connects = append(connects, cr.at)
			if i == 0 {
				firsts = append(firsts, cr.at)
			}
		}
		c.mu.Unlock()
	}
	series := perSecond(t0, connects)
	peak := slices.Max(series)
	slide := slidingPeak(connects, time.Second)
	c := p.protection(t).Counters
	t.Logf("storm: %d clients at once; all streaming after %v (%d connects in total); admitted per second: %v; peak second %d, peak sliding 1s window %d (connect_rate %d/s, warm-up 2s from %d/s)",
		clients, tAll.Round(time.Millisecond), len(connects), series, peak, slide, rate, rate/3)
	for _, u := range []string{p.URL + "/healthz", p.Admin + "/healthz"} {
		l := lat[u]
		t.Logf("GET %s during the storm: %d samples, p50 %v p99 %v max %v, %d errors", strings.TrimPrefix(u, "http://"), len(l),
			percentile(l, 0.5).Round(time.Microsecond), percentile(l, 0.99).Round(time.Microsecond), percentile(l, 1).Round(time.Microsecond), herrs[u])
	}
	t.Logf("counters: %v", c)

	if peak > rate*3/2 {
		t.Fatalf("%d streams admitted in one second, configured rate %d/s (allowed up to 1.5×)", peak, rate)
	}
	if least := time.Duration(float64(clients) / rate * 0.6 * float64(time.Second)); tAll < least {
		t.Fatalf("all %d clients streaming after only %v: the connect rate (%d/s) did not pace them (want ≥ %v)", clients, tAll, rate, least)
	}
	if c["admission/connect/rate/block"] == 0 {
		t.Fatalf("no connect-rate refusals counted: %v", c)
	}
	for _, u := range []string{p.URL + "/healthz", p.Admin + "/healthz"} {
		if herrs[u] > 0 || len(lat[u]) < int(tAll/time.Second) {
			t.Fatalf("health %s: %d errors, %d samples in %v", u, herrs[u], len(lat[u]), tAll)
		}
		if p99 := percentile(lat[u], 0.99); p99 > time.Second {
			t.Fatalf("health %s p99 %v during the storm: the node was not responsive", u, p99)
		}
	}
	waitAcked(t, pub, 40)
	finish(t, f, pub)
}

// throttle sits under a slow subscriber's SSE decoder: it reads normally
// until slow() is called, then nothing at all (stalled) or 32 bytes every
// 100ms (trickle), until drain() lets it read at full speed again.
type throttle struct {
	r       io.Reader
	trickle bool
	slowed  atomic.Bool
	drainc  chan struct{}
	once    sync.Once
}

func (th *throttle) slow()  { th.slowed.Store(true) }
func (th *throttle) drain() { th.once.Do(func() { close(th.drainc) }) }

func (th *throttle) Read(p []byte) (int, error) {
	if !th.slowed.Load() {
		return th.r.Read(p)
	}
	select {
	case <-th.drainc:
		return th.r.Read(p)
	default:
	}
	if !th.trickle {
		<-th.drainc
		return th.r.Read(p)
	}
	timer := time.NewTimer(100 * time.Millisecond)
	select {
	case <-timer.C:
	case <-th.drainc:
	}
	timer.Stop()
	return th.r.Read(p[:min(len(p), 32)])
}

// slowReader is a raw subscriber on a constrained link.
type slowReader struct {
	topic string
	th    *throttle
	body  io.ReadCloser

	mu       sync.Mutex
	lastID   string
	last     uint64
	received int
	gaps     uint64
	dups     int
	done     chan struct{}
	err      error // what ended the stream
}

// slowTransport dials like a client on a slow mobile link: a 1 KiB receive
// buffer and a 1200-byte MSS. (Over loopback's 64 KiB segments the
// server's socket send buffer autotunes to megabytes, which a slow reader
// would take minutes to fill; with a real-network MSS it stays at tens of
// KiB.)
func slowTransport() *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024); serr == nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1200)
			}
		})
		return errors.Join(err, serr)
	}}
	return &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true, ReadBufferSize: 512, DisableCompression: true}
}

// openSlow connects, waits for the hello, then turns slow.
func openSlow(t *testing.T, tr *http.Transport, base, topic string, trickle bool) *slowReader {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/stream?topic="+topic, nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("slow stream: %v %v", resp, err)
	}
	sr := &slowReader{topic: topic, body: resp.Body, done: make(chan struct{}),
		th: &throttle{r: resp.Body, trickle: trickle, drainc: make(chan struct{})}}
	dec := sse.NewDecoder(sr.th)
	ev, err := dec.Next()
	if err != nil || ev.Type != push.EventHello {
		t.Fatalf("slow stream: first event %+v %v", ev, err)
	}
	offs, err := push.DecodeOffsets(ev.ID, 1, nil)
	if err != nil {
		t.Fatalf("hello id %q: %v", ev.ID, err)
	}
	sr.lastID, sr.last = ev.ID, offs[0]
	sr.th.slow()
	go func() {
		defer close(sr.done)
		for {
			ev, err := dec.Next()
			if err != nil {
				sr.mu.Lock()
				sr.err = err
				sr.mu.Unlock()
				return
			}
			offs, err := push.DecodeOffsets(ev.ID, 1, nil)
			if err != nil || len(offs) != 1 {
				sr.mu.Lock()
				sr.err = fmt.Errorf("event id %q: %v", ev.ID, err)
				sr.mu.Unlock()
				return
			}
			sr.mu.Lock()
			switch off := offs[0]; {
			case off <= sr.last:
				sr.dups++
			case off > sr.last+1:
				sr.gaps += off - sr.last - 1
			}
			sr.last, sr.lastID = max(sr.last, offs[0]), ev.ID
			sr.received++
			sr.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		sr.th.drain()
		_ = resp.Body.Close()
		<-sr.done
	})
	return sr
}

// latencyFleet is a fleet whose clients also record, per phase, the time
// from publish (a timestamp in the payload) to receipt.
type latencyFleet struct {
	*fleet
	lat [][3][]time.Duration // per client, per phase
}

func newLatencyFleet(t *testing.T, n int, topics []string, base string) *latencyFleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lf := &latencyFleet{
		fleet: &fleet{cancel: cancel, hc: &http.Client{Transport: &http.Transport{
			DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, MaxIdleConnsPerHost: -1,
		}}},
		lat: make([][3][]time.Duration, n),
	}
	for i := range n {
		c := &fleetClient{topic: topics[i%len(topics)], endpoints: []string{base}, sessions: map[string]bool{}}
		c.stream = client.Subscribe(client.StreamConfig{
			Endpoints: c.endpoints, Topics: []string{c.topic}, HTTPClient: lf.hc,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second,
			OnConnect: func(ep string) {
				c.mu.Lock()
				c.connects = append(c.connects, connectRecord{at: time.Now(), endpoint: ep})
				c.mu.Unlock()
			},
		})
		lf.clients = append(lf.clients, c)
		handle := func(ev client.Event) error {
			now := time.Now()
			if err := c.handle(ev); err != nil {
				return err
			}
			ts, rest, ok := strings.Cut(string(ev.Data), " ")
			if ev.Type != "tick" || !ok || len(rest) < 1 {
				return nil
			}
			ns, err := strconv.ParseInt(ts, 10, 64)
			phase := int(rest[0] - '0')
			if err != nil || phase < 0 || phase > 2 {
				return fmt.Errorf("payload %.40q", ev.Data)
			}
			c.mu.Lock()
			lf.lat[i][phase] = append(lf.lat[i][phase], now.Sub(time.Unix(0, ns)))
			c.mu.Unlock()
			return nil
		}
		lf.wg.Go(func() { _ = c.stream.Run(ctx, handle) })
	}
	t.Cleanup(lf.stop)
	return lf
}

func (lf *latencyFleet) phase(p int) []time.Duration {
	var out []time.Duration
	for i, c := range lf.clients {
		c.mu.Lock()
		out = append(out, lf.lat[i][p]...)
		c.mu.Unlock()
	}
	slices.Sort(out)
	return out
}

// stampPublisher publishes "unixnano phase padding" events (~1 KiB) at a
// steady rate, round-robin over topics, retrying with idempotency keys.
type stampPublisher struct {
	pub    *client.Publisher
	phase  atomic.Int32
	acked  atomic.Int64
	failed atomic.Int64
	mu     sync.Mutex
	heads  map[string]uint64
	stopc  chan struct{}
	done   chan struct{}
}

func startStampPublisher(base string, topics []string, rate int) *stampPublisher {
	sp := &stampPublisher{
		pub: client.NewPublisher(client.PublisherConfig{Endpoints: []string{base}, MaxAttempts: 20,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}),
		heads: map[string]uint64{}, stopc: make(chan struct{}), done: make(chan struct{}),
	}
	pad := strings.Repeat("x", 1000)
	go func() {
		defer close(sp.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-sp.stopc:
				return
			case <-tick.C:
			}
			topic := topics[i%len(topics)]
			text := fmt.Sprintf("%d %d %s", time.Now().UnixNano(), sp.phase.Load(), pad)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			r, err := sp.pub.Publish(ctx, topic, client.Message{Event: "tick", Text: text})
			cancel()
			if err != nil {
				sp.failed.Add(1)
				continue
			}
			sp.acked.Add(1)
			sp.mu.Lock()
			sp.heads[topic] = max(sp.heads[topic], r.Offset)
			sp.mu.Unlock()
		}
	}()
	return sp
}

func (sp *stampPublisher) stop() map[string]uint64 {
	close(sp.stopc)
	<-sp.done
	sp.pub.CloseIdleConnections()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return maps.Clone(sp.heads)
}

// TestProtectionSlowConsumersCutOffAndResume: 2,000 subscribers, 5% of
// them on a slow link reading nothing or a trickle, while ~1 KiB events
// flow at 80/s over 20 topics (4/s per subscriber). The slow ones fill
// their socket and queue and are cut off (the node stops counting them and
// closes their connections); resuming from their last event id they get
// everything; the fast ones are never cut off and lose nothing. The fast
// subscribers' publish→receipt latency is measured before and while the
// slow ones are connected.
func TestProtectionSlowConsumersCutOffAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process protection test")
	}
	const total, slowCount, rate = 2000, 100, 80
	const fastCount = total - slowCount
	rd := redistest.StartServer(t)
	p := startProc(t, "slowsubs", append(slices.Clone(unguarded),
		"HERALD_PROTECTION__BREAKER__SLOW_RATIO=0", // 1,900 unpaced handshakes queue on the Redis pool
		"HERALD_LIMITS__QUEUE_MAX_EVENTS=64",
		"HERALD_LIMITS__QUEUE_MAX_LAG=500ms",
		"HERALD_STREAM__WRITE_TIMEOUT=2s",
	), "--redis", rd.URL())
	topics := make([]string, 20)
	for i := range topics {
		topics[i] = fmt.Sprintf("sc-%d", i)
	}
	lf := newLatencyFleet(t, fastCount, topics, p.URL)
	eventually(t, 60*time.Second, "every fast client's hello", func() bool {
		time.Sleep(50 * time.Millisecond)
		return lf.ready() == fastCount
	})
	sp := startStampPublisher(p.URL, topics, rate)
	defer func() {
		select {
		case <-sp.stopc:
		default:
			sp.stop()
		}
	}()
	// Phase 1: no slow readers, measured for 10s after 2s of warm-up. (The
	// sleeps hold a measurement phase; they wait for no condition.)
	time.Sleep(2 * time.Second)
	sp.phase.Store(1)
	time.Sleep(10 * time.Second)
	sp.phase.Store(0)
	before := p.stats(t)

	// Phase 2: 100 slow readers join, half stalled, half trickling.
	tr := slowTransport()
	defer tr.CloseIdleConnections()
	slow := make([]*slowReader, slowCount)
	for i := range slow {
		slow[i] = openSlow(t, tr, p.URL, topics[i%len(topics)], i%2 == 1)
	}
	tSlow := time.Now()
	sp.phase.Store(2)
	var left []string // slow streams still open on the node, over time
	eventually(t, 45*time.Second, "the node cutting off every slow reader", func() bool {
		time.Sleep(500 * time.Millisecond)
		n := p.node(t).Streams
		left = append(left, fmt.Sprintf("%.1fs:%d", time.Since(tSlow).Seconds(), n-fastCount))
		return n <= fastCount
	})
	t.Logf("slow streams still open on the node after they joined: %v", left)
	cutIn := time.Since(tSlow)
	time.Sleep(2 * time.Second) // measurement: the fast ones keep receiving after the cut-offs
	heads := sp.stop()
	after := p.stats(t)
	if after.Streams != fastCount {
		t.Fatalf("node holds %d streams after the cut-offs, want the %d fast ones", after.Streams, fastCount)
	}

	// The slow ones: read what the node sent before closing, to its end.
	for _, sr := range slow {
		sr.th.drain()
	}
	for i, sr := range slow {
		select {
		case <-sr.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("slow reader %d: connection still open 20s after draining (not cut off)", i)
		}
		sr.mu.Lock()
		err, gaps, dups := sr.err, sr.gaps, sr.dups
		sr.mu.Unlock()
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("slow reader %d ended with %v, want the server closing the stream", i, err)
		}
		if gaps != 0 || dups != 0 {
			t.Fatalf("slow reader %d: %d missing, %d duplicated before the cut-off", i, gaps, dups)
		}
	}
	// …and resume from their last event id.
	ctx, cancel := context.WithCancel(context.Background())
	resumers := &fleet{cancel: cancel, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}}
	behindAtCut := uint64(0)
	for _, sr := range slow {
		c := &fleetClient{topic: sr.topic, last: sr.last, started: true, sessions: map[string]bool{}}
		behindAtCut += heads[sr.topic] - sr.last
		c.stream = client.Subscribe(client.StreamConfig{Endpoints: []string{p.URL}, Topics: []string{sr.topic},
			LastEventID: sr.lastID, HTTPClient: resumers.hc, MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second})
		resumers.clients = append(resumers.clients, c)
		resumers.wg.Go(func() { _ = c.stream.Run(ctx, c.handle) })
	}
	t.Cleanup(resumers.stop)
	eventually(t, 60*time.Second, "every client caught up", func() bool {
		time.Sleep(50 * time.Millisecond)
		return lf.caughtUp(heads) == 0 && resumers.caughtUp(heads) == 0
	})
	fr, rr := lf.report(heads), resumers.report(heads)
	fastReconnects := 0
	for _, c := range lf.clients {
		c.mu.Lock()
		fastReconnects += len(c.connects) - 1
		c.mu.Unlock()
	}
	slowReceived := 0
	for _, sr := range slow {
		slowReceived += sr.received
	}
	t.Logf("published %d acked (%d failed) at %d/s; slow readers cut off %v after joining (node lag_cutoffs %d → %d); they had %d events before the cut-off and were %d behind; resumed: received %d, lost %d, duplicated %d, resets %d",
		sp.acked.Load(), sp.failed.Load(), rate, cutIn.Round(time.Millisecond), before.Stats.LagCutoffs, after.Stats.LagCutoffs,
		slowReceived, behindAtCut, rr.received, rr.lost, rr.dups, rr.resets)
	t.Logf("fast subscribers: %d received %d, lost %d, duplicated %d, resets %d, reconnects %d", fr.clients, fr.received, fr.lost, fr.dups, fr.resets, fastReconnects)
	if fr.lost != 0 || fr.dups != 0 || fr.resets != 0 || fastReconnects != 0 {
		t.Fatalf("fast subscribers: lost %d, duplicated %d, resets %d, reconnects %d; want all 0", fr.lost, fr.dups, fr.resets, fastReconnects)
	}
	if rr.lost != 0 || rr.dups != 0 || rr.resets != 0 || (sp.failed.Load() == 0 && uint64(rr.received) != behindAtCut) {
		t.Fatalf("resumed slow subscribers: lost %d, duplicated %d, resets %d, received %d of %d", rr.lost, rr.dups, rr.resets, rr.received, behindAtCut)
	}

	base, with := lf.phase(1), lf.phase(2)
	p99a, p99b := percentile(base, 0.99), percentile(with, 0.99)
	t.Logf("fast subscribers' publish→receipt latency: without slow readers %d samples p50 %v p99 %v max %v; with 5%% slow readers %d samples p50 %v p99 %v max %v; p99 ratio %.2f",
		len(base), percentile(base, 0.5).Round(time.Microsecond), p99a.Round(time.Microsecond), percentile(base, 1).Round(time.Microsecond),
		len(with), percentile(with, 0.5).Round(time.Microsecond), p99b.Round(time.Microsecond), percentile(with, 1).Round(time.Microsecond),
		float64(p99b)/float64(max(p99a, 1)))
	if len(base) == 0 || len(with) == 0 {
		t.Fatalf("no latency samples (%d, %d)", len(base), len(with))
	}
}
