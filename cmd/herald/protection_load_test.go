package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/sse"
	"github.com/heraldpush/herald/push/wire"
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

// perSecond counts times per wall-clock second from t0's second on. Whole
// wall-clock seconds line up with sentinel's statistics buckets (500ms
// slices of Unix time), in which the connect-rate rule admits at most its
// rate.
func perSecond(t0 time.Time, ts []time.Time) []int {
	var out []int
	base := t0.Unix()
	for _, at := range ts {
		i := int(at.Unix() - base)
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

// curlSampler measures requests to a node from outside this
// race-instrumented test process, whose own scheduling would otherwise be
// part of every sample: one curl process making sequential keep-alive
// requests (args, e.g. -X POST …) at rate/s, n at most, until stopped.
type curlSampler struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	errb *lockedBuffer
	done chan struct{}
	once sync.Once
}

// curlResult is one request curl made.
type curlResult struct {
	took       time.Duration
	status     int
	retryAfter string
	body       string
}

// startCurl starts curl sampling url at rate per second, n requests. A
// missing curl fails the test: .ci/deps.sh (make deps) installs it.
func startCurl(t *testing.T, rate, n int, url string, args ...string) *curlSampler {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl not found on PATH: run `make deps` (installs it with apt as root)")
	}
	cs := &curlSampler{out: &lockedBuffer{}, errb: &lockedBuffer{}, done: make(chan struct{})}
	args = append([]string{"-sS", "--rate", fmt.Sprintf("%d/s", rate), "--max-time", "10",
		"-w", `\nT %{time_total} %{http_code} %header{retry-after}\n`}, args...)
	cs.cmd = exec.Command(path, append(args, fmt.Sprintf("%s?sample=[1-%d]", url, n))...)
	cs.cmd.Stdout, cs.cmd.Stderr = cs.out, cs.errb
	if err := cs.cmd.Start(); err != nil {
		t.Fatalf("curl: %v", err)
	}
	go func() { _ = cs.cmd.Wait(); close(cs.done) }()
	t.Cleanup(func() { cs.stop() })
	return cs
}

// stop ends the sampler (idempotent) and returns every completed request
// and curl's stderr.
func (cs *curlSampler) stop() (res []curlResult, stderr string) {
	if cs == nil {
		return nil, ""
	}
	cs.once.Do(func() { _ = cs.cmd.Process.Kill() }) // our own child, by its pid
	<-cs.done
	body := ""
	for _, line := range strings.Split(cs.out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "T" {
			body = line
			continue
		}
		secs, err1 := strconv.ParseFloat(f[1], 64)
		code, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			continue
		}
		r := curlResult{took: time.Duration(secs * float64(time.Second)), status: code, body: body}
		if len(f) > 3 {
			r.retryAfter = f[3]
		}
		res = append(res, r)
		body = ""
	}
	return res, cs.errb.String()
}

// okLatencies returns the sorted times of the requests answered with
// status, and how many were answered otherwise.
func okLatencies(res []curlResult, status int) (lat []time.Duration, other int) {
	for _, r := range res {
		if r.status != status {
			other++
			continue
		}
		lat = append(lat, r.took)
	}
	slices.Sort(lat)
	return lat, other
}

// TestProtectionReconnectStormPacedByConnectRate: 8,000 SDK clients connect
// to one node at once (a node failure elsewhere sending its clients here).
// The connect-rate rule (400/s, 2s warm-up from 133/s) admits them at
// most at about that rate and refuses the rest with 503 + Retry-After; the
// node stays responsive; every client ends up streaming with nothing lost.
//
// The storm is generated by this test process; under -race on two shared
// cores it opens connections slower than the configured rate (see the
// logged series) at times, so the rate is set where the generator's bursts
// exceed it and the ceiling is exercised.
func TestProtectionReconnectStormPacedByConnectRate(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process protection test")
	}
	forTransports(t, protectionReconnectStormPacedByConnectRate)
}

func protectionReconnectStormPacedByConnectRate(t *testing.T) {
	const clients, rate = 8000, 400
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

	hs := startHealthSampler(50*time.Millisecond, p.Admin+"/healthz")
	cs := startCurl(t, 20, 20*120, p.URL+"/healthz")
	t0 := time.Now()
	hello := make([]atomic.Int64, clients) // first hello per client, unix ns
	f := newObservedFleet(t, clients, topics, p.URL, func(i int, ev client.Event, at time.Time) error {
		if ev.Type == push.EventHello {
			hello[i].CompareAndSwap(0, at.UnixNano())
		}
		return nil
	})
	eventually(t, 120*time.Second, fmt.Sprintf("all %d clients streaming", clients), func() bool {
		time.Sleep(100 * time.Millisecond)
		return f.ready() == clients
	})
	tAll := time.Since(t0)
	inLat, inErrs := hs.stop()
	exRes, exStderr := cs.stop()
	exLat, exFailed := okLatencies(exRes, http.StatusOK)
	if n := p.node(t).Streams; n != clients {
		t.Fatalf("node holds %d streams, want %d", n, clients)
	}
	if n := p.metricSum(t, "herald_stream_connects_total", `transport="`+transportOf(t)+`"`, `result="accepted"`); n < clients {
		t.Fatalf("%v streams accepted on transport %s, want the %d clients'", n, transportOf(t), clients)
	}

	var connects, hellos []time.Time
	for i, c := range f.clients {
		c.mu.Lock()
		for _, cr := range c.connects {
			connects = append(connects, cr.at)
		}
		c.mu.Unlock()
		hellos = append(hellos, time.Unix(0, hello[i].Load()))
	}
	c := p.protection(t).Counters
	t.Logf("storm: %d SDK clients at once; all streaming after %v; connect_rate %d/s (warm-up 2s from %d/s); refused by the rate rule: %d",
		clients, tAll.Round(time.Millisecond), rate, rate/3, c["admission/connect/rate/block"])
	t.Logf("streams admitted (first hello) per second: %v; peak sliding 1s window %d", perSecond(t0, hellos), slidingPeak(hellos, time.Second))
	t.Logf("200 answers (OnConnect: admitted, including streams shed after admission) per second: %v; total %d; peak sliding 1s window %d",
		perSecond(t0, connects), len(connects), slidingPeak(connects, time.Second))
	l := inLat[p.Admin+"/healthz"]
	t.Logf("GET /healthz (admin) from the test process: %d samples, p50 %v p99 %v max %v, %d errors",
		len(l), percentile(l, 0.5).Round(time.Microsecond), percentile(l, 0.99).Round(time.Microsecond), percentile(l, 1).Round(time.Microsecond), inErrs[p.Admin+"/healthz"])
	if cs != nil {
		t.Logf("GET /healthz (public) from curl: %d samples, p50 %v p99 %v max %v, %d failed %s",
			len(exLat), percentile(exLat, 0.5).Round(time.Microsecond), percentile(exLat, 0.99).Round(time.Microsecond), percentile(exLat, 1).Round(time.Microsecond), exFailed, strings.TrimSpace(exStderr))
	}
	t.Logf("counters: %v", c)

	// Every 200 answer is one stream the rules admitted (then live, or shed
	// if Redis failed its handshake), seen a handshake later.
	// The admitted rate follows the configured one: over the whole storm
	// the mean is at most the rate (plus 10%), and where the storm presses
	// (its best 3 s) the rule lets the rate through, not far less: the
	// warm-up ended and the rule does not over-refuse. Not the mean for
	// that: the generator is this race-instrumented process on two cores
	// shared with the rest of the CI's tests, and its stalls (seconds with
	// a handful of attempts) pull the whole storm's mean down. Windows are
	// measured where the client sees its 200s: a starved generator handles
	// them in bunches, so a 3 s window may hold up to 2× the rate
	// (sentinel's 1 s statistic window is itself two 500 ms buckets).
	first, last := slices.MinFunc(connects, time.Time.Compare), slices.MaxFunc(connects, time.Time.Compare)
	mean := float64(len(connects)) / last.Sub(first).Seconds()
	peak := slidingPeak(connects, 3*time.Second)
	t.Logf("mean admitted rate %.0f/s; peak 3 s window %d", mean, peak)
	if mean > rate*1.1 {
		t.Fatalf("mean admitted rate %.0f/s, configured %d/s", mean, rate)
	}
	if peak > rate*3*2 {
		t.Fatalf("%d streams admitted in 3 s, configured rate %d/s (allowed up to 2× as seen by this client)", peak, rate)
	}
	if peak < rate*3*3/4 {
		t.Fatalf("at most %d streams admitted in any 3 s of the storm, configured rate %d/s: the rule held the storm under three quarters of it", peak, rate)
	}
	// The generator tried faster than the rate: the rule engaged.
	if c["admission/connect/rate/block"] == 0 {
		t.Fatal("no connect was refused by the rate rule: the storm never exceeded the configured rate")
	}
	// One sample per second, except for ticks the sampler's ticker dropped
	// while a request was still out (a starved, race-instrumented test
	// process may wait seconds for an answer; the curl samples below are
	// the responsiveness measure): a stall of the sampler or any error fails.
	var blocked time.Duration
	for _, d := range l {
		blocked += max(d-time.Second, 0)
	}
	if want := int((tAll-blocked)/time.Second) - 1; inErrs[p.Admin+"/healthz"] > 0 || len(l) < want {
		t.Fatalf("admin /healthz: %d errors, %d samples in %v (want ≥ %d: %v of it spent waiting on slow answers)",
			inErrs[p.Admin+"/healthz"], len(l), tAll, want, blocked.Round(time.Millisecond))
	}
	if cs != nil && (exFailed > 0 || len(exLat) < int(tAll/time.Second)) {
		t.Fatalf("public /healthz from curl: %d failed, %d samples in %v: %s", exFailed, len(exLat), tAll, exStderr)
	}
	// Responsive: measured from outside this process (whose own scheduling
	// under -race dominates the in-process samples).
	if p99 := percentile(exLat, 0.99); cs != nil && p99 > time.Second {
		t.Fatalf("public /healthz p99 %v during the storm, want < 1s", p99)
	}
	waitAcked(t, pub, 40)
	finish(t, f, pub)
}

// throttle sits under a slow subscriber's connection: it reads normally
// until slow() is called, then nothing at all (stalled) or 8 bytes every
// 250ms (trickle: 32 B/s), until drain() lets it read at full speed again.
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
	timer := time.NewTimer(250 * time.Millisecond)
	select {
	case <-timer.C:
	case <-th.drainc:
	}
	timer.Stop()
	return th.r.Read(p[:min(len(p), 8)])
}

// throttledConn reads its connection through a throttle: under the HTTP
// client's and the WebSocket library's buffers, so that both transports
// are slowed alike.
type throttledConn struct {
	net.Conn
	th *throttle
}

func (c *throttledConn) Read(p []byte) (int, error) { return c.th.Read(p) }

// slowReader is a raw subscriber on a constrained link.
type slowReader struct {
	topic string
	th    *throttle
	tr    *http.Transport

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
// buffer and a 1200-byte MSS, its one connection read through th. (Over
// loopback's 64 KiB segments the server's socket send buffer autotunes to
// megabytes, which a slow reader would take minutes to fill; with a
// real-network MSS it stays at tens of KiB.)
func slowTransport(th *throttle) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024); serr == nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1200)
			}
		})
		return errors.Join(err, serr)
	}}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		th.r = c
		return &throttledConn{Conn: c, th: th}, nil
	}
	return &http.Transport{DialContext: dial, DisableKeepAlives: true, ReadBufferSize: 512, DisableCompression: true}
}

// openSlow connects on the test's transport (transportOf), waits for the
// hello, then turns slow.
func openSlow(t *testing.T, base, topic string, trickle bool) *slowReader {
	t.Helper()
	sr := &slowReader{topic: topic, done: make(chan struct{}),
		th: &throttle{trickle: trickle, drainc: make(chan struct{})}}
	sr.tr = slowTransport(sr.th)
	hc := &http.Client{Transport: sr.tr}
	// next reads the stream's next event; closeConn drops the connection.
	var next func() (sse.Event, error)
	var closeConn func()
	if transportOf(t) == client.TransportWS {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws?topic="+topic, &websocket.DialOptions{HTTPClient: hc})
		cancel()
		if err != nil {
			t.Fatalf("slow stream: %v", err)
		}
		conn.SetReadLimit(1 << 20)
		next = func() (sse.Event, error) {
			typ, b, err := conn.Read(context.Background())
			if err != nil {
				return sse.Event{}, err
			}
			var f wire.Frame
			if err := json.Unmarshal(b, &f); typ != websocket.MessageText || err != nil {
				// coder/websocket hands over a message cut short by the
				// connection's end as whole when the cut falls where one of
				// its reads ended (the Go client's cutShort): the end is
				// what follows.
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, _, rerr := conn.Read(ctx)
				cancel()
				if rerr != nil && websocket.CloseStatus(rerr) == -1 && !errors.Is(rerr, context.DeadlineExceeded) {
					return sse.Event{}, rerr
				}
				return sse.Event{}, fmt.Errorf("not a Herald frame (type %v, %d bytes, %v): %q", typ, len(b), err, b)
			}
			return sse.Event{ID: f.ID, Type: f.Event, Data: f.Data}, nil
		}
		closeConn = func() { _ = conn.CloseNow() }
	} else {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/stream?topic="+topic, nil)
		resp, err := hc.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("slow stream: %v %v", resp, err)
		}
		next = sse.NewDecoder(resp.Body).Next
		closeConn = func() { _ = resp.Body.Close() }
	}
	ev, err := next()
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
			ev, err := next()
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
		closeConn()
		<-sr.done
		sr.tr.CloseIdleConnections()
	})
	return sr
}

// cutOff reports whether err is how a slow reader's stream ends when the
// server cuts it off: the connection closed (SSE; a WebSocket whose close
// frame did not fit into the full socket, possibly mid-message), a
// WebSocket close with 4004 (slow), or, for a WebSocket, a reset: its
// client answers the pings it finds in what it reads late, after the
// server closed, and the server's kernel answers those with a reset.
func cutOff(err error) bool {
	if websocket.CloseStatus(err) == 4004 {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// newObservedFleet is newFleet (one topic per client, the fleet's gap and
// duplicate checks, the test's transport) with a hook: observe runs after each event the client
// checked, on the client's goroutine, with the time the event was read.
func newObservedFleet(t *testing.T, n int, topics []string, base string, observe func(i int, ev client.Event, at time.Time) error) *fleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fleet{cancel: cancel, hc: &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   -1,
	}}}
	for i := range n {
		c := &fleetClient{topic: topics[i%len(topics)], endpoints: []string{base}, sessions: map[string]bool{}}
		c.stream = client.Subscribe(client.StreamConfig{
			Endpoints: c.endpoints, Topics: []string{c.topic}, HTTPClient: f.hc,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second, Transport: transportOf(t),
			OnConnect: func(ep string) {
				c.mu.Lock()
				c.connects = append(c.connects, connectRecord{at: time.Now(), endpoint: ep})
				c.mu.Unlock()
			},
		})
		f.clients = append(f.clients, c)
		handle := func(ev client.Event) error {
			at := time.Now()
			if err := c.handle(ev); err != nil {
				return err
			}
			return observe(i, ev, at)
		}
		f.wg.Go(func() { _ = c.stream.Run(ctx, handle) })
	}
	t.Cleanup(f.stop)
	return f
}

// latencyRecorder keeps, per client and phase, the time from publish (a
// timestamp in the payload "unixnano phase …") to receipt.
type latencyRecorder struct {
	mu  []sync.Mutex
	lat [][3][]time.Duration
}

func newLatencyRecorder(n int) *latencyRecorder {
	return &latencyRecorder{mu: make([]sync.Mutex, n), lat: make([][3][]time.Duration, n)}
}

func (lr *latencyRecorder) observe(i int, ev client.Event, at time.Time) error {
	if ev.Type != "tick" {
		return nil
	}
	ts, rest, ok := strings.Cut(string(ev.Data), " ")
	if !ok || rest == "" {
		return fmt.Errorf("payload %.40q", ev.Data)
	}
	ns, err := strconv.ParseInt(ts, 10, 64)
	phase := int(rest[0] - '0')
	if err != nil || phase < 0 || phase > 2 {
		return fmt.Errorf("payload %.40q", ev.Data)
	}
	lr.mu[i].Lock()
	lr.lat[i][phase] = append(lr.lat[i][phase], at.Sub(time.Unix(0, ns)))
	lr.mu[i].Unlock()
	return nil
}

// phase returns every latency recorded in phase p, sorted.
func (lr *latencyRecorder) phase(p int) []time.Duration {
	var out []time.Duration
	for i := range lr.lat {
		lr.mu[i].Lock()
		out = append(out, lr.lat[i][p]...)
		lr.mu[i].Unlock()
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

// metricSum adds up the admin /metrics samples of name whose labels
// contain every one of labels (e.g. `reason="slow"`).
func (p *proc) metricSum(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(p.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if i := strings.LastIndexByte(line, ' '); ok && i > 0 {
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err == nil {
				sum += v
			}
		}
	}
	return sum
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
	forTransports(t, protectionSlowConsumersCutOffAndResume)
}

func protectionSlowConsumersCutOffAndResume(t *testing.T) {
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
	lr := newLatencyRecorder(fastCount)
	lf := newObservedFleet(t, fastCount, topics, p.URL, lr.observe)
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
	// Phase 1: no slow readers, measured for 8s after 2s of warm-up. (The
	// sleeps hold a measurement phase; they wait for no condition.)
	time.Sleep(2 * time.Second)
	sp.phase.Store(1)
	time.Sleep(8 * time.Second)
	sp.phase.Store(0)
	before := p.stats(t)
	onTransport := `transport="` + transportOf(t) + `"`
	slowBefore := p.metricSum(t, "herald_stream_disconnects_total", `reason="slow"`, onTransport)

	// Phase 2: 100 slow readers join, half stalled, half trickling.
	slow := make([]*slowReader, slowCount)
	for i := range slow {
		slow[i] = openSlow(t, p.URL, topics[i%len(topics)], i%2 == 1)
	}
	tSlow := time.Now()
	sp.phase.Store(2)
	var left []string // slow streams still open on the node, over time
	// The cut-off comes when a write to the slow reader's full socket
	// stalls past the queue's lag bound or misses its deadline; how long
	// the socket takes to fill depends on the kernel's buffer sizing (on
	// the loaded 2-core machine 17–32 s over SSE, 27–58 s over WebSocket:
	// the series below logs it). Since ADR 0034 a loaded node's own delay
	// no longer cuts streams early, so the socket's fill time is all there
	// is: one run at load 24 took over 90 s over WebSocket.
	eventually(t, 150*time.Second, "the node cutting off every slow reader", func() bool {
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
	slowCut := p.metricSum(t, "herald_stream_disconnects_total", `reason="slow"`, onTransport) - slowBefore
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
		if !cutOff(err) {
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
			LastEventID: sr.lastID, HTTPClient: resumers.hc, MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second,
			Transport: transportOf(t)})
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
	t.Logf("published %d acked (%d failed) at %d/s; slow readers cut off %v after joining (herald_stream_disconnects_total{reason=slow} +%.0f; /v1/node lag_cutoffs %d → %d); they had %d events before the cut-off and were %d behind; resumed: received %d, lost %d, duplicated %d, resets %d",
		sp.acked.Load(), sp.failed.Load(), rate, cutIn.Round(time.Millisecond), slowCut, before.Stats.LagCutoffs, after.Stats.LagCutoffs,
		slowReceived, behindAtCut, rr.received, rr.lost, rr.dups, rr.resets)
	t.Logf("fast subscribers: %d received %d, lost %d, duplicated %d, resets %d, reconnects %d", fr.clients, fr.received, fr.lost, fr.dups, fr.resets, fastReconnects)
	if slowCut != slowCount {
		t.Fatalf("herald_stream_disconnects_total{reason=slow} rose by %.0f, want %d (every slow reader, no fast one)", slowCut, slowCount)
	}
	if fr.lost != 0 || fr.dups != 0 || fr.resets != 0 || fastReconnects != 0 {
		t.Fatalf("fast subscribers: lost %d, duplicated %d, resets %d, reconnects %d; want all 0", fr.lost, fr.dups, fr.resets, fastReconnects)
	}
	if rr.lost != 0 || rr.dups != 0 || rr.resets != 0 || (sp.failed.Load() == 0 && uint64(rr.received) != behindAtCut) {
		t.Fatalf("resumed slow subscribers: lost %d, duplicated %d, resets %d, received %d of %d", rr.lost, rr.dups, rr.resets, rr.received, behindAtCut)
	}

	base, with := lr.phase(1), lr.phase(2)
	p99a, p99b := percentile(base, 0.99), percentile(with, 0.99)
	t.Logf("fast subscribers' publish→receipt latency: without slow readers %d samples p50 %v p99 %v max %v; with 5%% slow readers %d samples p50 %v p99 %v max %v; p99 ratio %.2f",
		len(base), percentile(base, 0.5).Round(time.Microsecond), p99a.Round(time.Microsecond), percentile(base, 1).Round(time.Microsecond),
		len(with), percentile(with, 0.5).Round(time.Microsecond), p99b.Round(time.Microsecond), percentile(with, 1).Round(time.Microsecond),
		float64(p99b)/float64(max(p99a, 1)))
	if len(base) == 0 || len(with) == 0 {
		t.Fatalf("no latency samples (%d, %d)", len(base), len(with))
	}
}
