// Package bench is the load generator behind `herald bench`: it opens SSE
// streams, publishes at a pace, and reports throughput, publish→deliver
// latency, lost and duplicated events (from each event's cursor), and the
// server's CPU and memory from /proc.
package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/sse"
)

// Config is one `herald bench` run.
type Config struct {
	// CPUProfile, when set, is where the load generator writes its own CPU profile.
	CPUProfile string
	// MemProfile, when set, is where it writes its heap profile, taken
	// when publishing ends with every stream still open.
	MemProfile  string
	URL         string
	Subscribers int
	Topics      int
	Rate        float64
	Duration    time.Duration
	Publishers  int
	Batch       int
	Payload     int
	ConnectRate int
	ServerPID   int
	Token       string
	Drain       time.Duration
	Idle        bool
	JSON        bool
	// SlowFraction of the subscribers read at SlowBPS bytes/s through a
	// small socket receive buffer: clients that cannot keep up.
	SlowFraction float64
	SlowBPS      int
	AdminURL     string
	// ProbeRate, when > 0, is the pace of the floor probe (benchProbe):
	// bare round trips to the node and, with ProbeRedis, to Redis.
	ProbeRate  float64
	ProbeRedis string
	// Server is the kind of server at URL: ServerHerald (default) or
	// ServerFloor, the minimal SSE server ratio targets are measured
	// against, driven with the same load.
	Server string
	// RedisPID, when set, is the Redis process whose CPU is reported apart
	// from the server's.
	RedisPID int
}

// Report is what a run measured.
type Report struct {
	Subscribers   int     `json:"subscribers"`
	Topics        int     `json:"topics"`
	TargetRate    float64 `json:"target_rate"`
	DurationSec   float64 `json:"duration_s"`
	Published     int64   `json:"published"`
	PublishErrors int64   `json:"publish_errors"`
	// PublishErrorKinds counts failed publish requests by cause (status
	// and error code, or the transport error), at most maxErrorKinds
	// causes; the rest are counted under "other".
	PublishErrorKinds map[string]int64 `json:"publish_error_kinds,omitempty"`
	PublishRate       float64          `json:"publish_rate"`
	PublishP50Ms      float64          `json:"publish_p50_ms"`
	PublishP99Ms      float64          `json:"publish_p99_ms"`
	Deliveries        int64            `json:"deliveries"`
	DeliveriesPerSec  float64          `json:"deliveries_per_s"`
	LatP50Ms          float64          `json:"latency_p50_ms"`
	LatP90Ms          float64          `json:"latency_p90_ms"`
	LatP99Ms          float64          `json:"latency_p99_ms"`
	LatP999Ms         float64          `json:"latency_p999_ms"`
	LatMaxMs          float64          `json:"latency_max_ms"`
	Lost              int64            `json:"lost"`
	Duplicated        int64            `json:"duplicated"`
	Resets            int64            `json:"resets"`
	// Reconnects counts streams re-opened while publishing (slow
	// cut-offs, refusals); ConnectRetries the refused or failed attempts
	// before, while the streams were being opened.
	Reconnects     int64   `json:"reconnects"`
	ConnectRetries int64   `json:"connect_retries"`
	Server         string  `json:"server"`
	ServerCPUSec   float64 `json:"server_cpu_s,omitempty"`
	// ServerConnectCPUUs is the server's CPU per stream opened, in µs,
	// over the connect phase (from the first connect until every stream
	// is open).
	ServerConnectCPUUs float64 `json:"server_connect_cpu_us_per_stream,omitempty"`
	// ConnectPerSec is the streams opened per second over the connect
	// phase (the first connect to the last stream open).
	ConnectPerSec float64 `json:"connect_per_s,omitempty"`
	// CPUPerDeliveryUs is ServerCPUSec per delivery, in µs, over the
	// publishing window (the same figure as CPUPerMillion, in the unit of
	// the targets).
	CPUPerDeliveryUs float64 `json:"server_cpu_us_per_delivery,omitempty"`
	// ServerRSSEndMB is the server's RSS when the run ends (publishing
	// and drain done, streams still open); ServerRSSGrowthMB its growth
	// from before the first connect.
	ServerRSSEndMB    float64 `json:"server_rss_end_mib,omitempty"`
	ServerRSSGrowthMB float64 `json:"server_rss_growth_mib,omitempty"`
	// ServerRSSPublishGrowthMB is the growth while publishing: from every
	// stream open to the end of the run.
	ServerRSSPublishGrowthMB float64 `json:"server_rss_publish_growth_mib,omitempty"`
	// RedisCPUSec is Redis's own CPU over the publishing window
	// (--redis-pid), not part of the server's figures.
	RedisCPUSec float64 `json:"redis_cpu_s,omitempty"`
	// BenchCPUSec is the load generator's own CPU over the same window:
	// on a shared machine it is what the node did not get.
	BenchCPUSec     float64 `json:"bench_cpu_s,omitempty"`
	CPUPerMillion   float64 `json:"server_cpu_s_per_million_deliveries,omitempty"`
	ServerRSSBaseMB float64 `json:"server_rss_base_mib,omitempty"`
	ServerRSSPeakMB float64 `json:"server_rss_with_streams_mib,omitempty"`
	RSSPerStreamKiB float64 `json:"server_rss_per_stream_kib,omitempty"`
	// Slow subscribers (--slow-fraction): not part of the figures above.
	SlowSubscribers int   `json:"slow_subscribers,omitempty"`
	SlowCutoffs     int64 `json:"slow_cutoffs,omitempty"`
	SlowCutOffSubs  int   `json:"slow_subscribers_cut_off,omitempty"`
	SlowGaps        int64 `json:"slow_gaps,omitempty"`
	SlowDuplicated  int64 `json:"slow_duplicated,omitempty"`
	SlowReceived    int64 `json:"slow_received,omitempty"`
	// ServerSlowEnded is the node's count of streams it ended as slow
	// during the run (from --admin-url /v1/node).
	ServerSlowEnded int64 `json:"server_slow_ended,omitempty"`
	// ServerEventsPerWrite is how many events the node's stream writes
	// carried on average during the run, and ServerHolds how many writes
	// coalescing held back (from --admin-url /v1/node).
	ServerEventsPerWrite float64 `json:"server_events_per_write,omitempty"`
	ServerHolds          int64   `json:"server_holds,omitempty"`
	// Probe (--probe-rate): bare round trips under the same load, to the
	// node (GET /healthz) and to Redis (PING).
	ProbeHTTPP50Ms  float64 `json:"probe_http_p50_ms,omitempty"`
	ProbeHTTPP99Ms  float64 `json:"probe_http_p99_ms,omitempty"`
	ProbeRedisP50Ms float64 `json:"probe_redis_p50_ms,omitempty"`
	ProbeRedisP99Ms float64 `json:"probe_redis_p99_ms,omitempty"`
}

// Print writes the report for a terminal.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "server=%s subscribers=%d topics=%d target_rate=%.0f/s duration=%.1fs\n", r.Server, r.Subscribers, r.Topics, r.TargetRate, r.DurationSec)
	fmt.Fprintf(w, "published    %d (%.0f/s), errors %d, publish latency p50 %.2f ms p99 %.2f ms\n", r.Published, r.PublishRate, r.PublishErrors, r.PublishP50Ms, r.PublishP99Ms)
	for k, n := range r.PublishErrorKinds {
		fmt.Fprintf(w, "  publish errors %q: %d\n", k, n)
	}
	fmt.Fprintf(w, "delivered    %d (%.0f/s)\n", r.Deliveries, r.DeliveriesPerSec)
	fmt.Fprintf(w, "latency      p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p999 %.2f ms  max %.2f ms\n", r.LatP50Ms, r.LatP90Ms, r.LatP99Ms, r.LatP999Ms, r.LatMaxMs)
	fmt.Fprintf(w, "lost %d  duplicated %d  resets %d  reconnects while publishing %d (connect retries before %d)\n", r.Lost, r.Duplicated, r.Resets, r.Reconnects, r.ConnectRetries)
	if r.SlowSubscribers > 0 {
		fmt.Fprintf(w, "slow         %d subscribers (not in the figures above): %d reconnected after a cut-off (%d times), received %d, gaps %d, duplicated %d; node ended %d streams as slow\n",
			r.SlowSubscribers, r.SlowCutOffSubs, r.SlowCutoffs, r.SlowReceived, r.SlowGaps, r.SlowDuplicated, r.ServerSlowEnded)
	}
	if r.ServerRSSBaseMB > 0 {
		fmt.Fprintf(w, "server       cpu %.2f s (%.2f s per million deliveries)  rss %.1f MiB → %.1f MiB (%.1f KiB per stream)\n",
			r.ServerCPUSec, r.CPUPerMillion, r.ServerRSSBaseMB, r.ServerRSSPeakMB, r.RSSPerStreamKiB)
	}
	if r.ServerConnectCPUUs > 0 || r.ServerRSSEndMB > 0 {
		fmt.Fprintf(w, "server       connect cpu %.0f µs per stream, cpu %.1f µs per delivery, rss growth over the run %.1f MiB (to %.1f MiB)\n",
			r.ServerConnectCPUUs, r.CPUPerDeliveryUs, r.ServerRSSGrowthMB, r.ServerRSSEndMB)
	}
	if r.RedisCPUSec > 0 {
		fmt.Fprintf(w, "redis        cpu %.2f s while publishing (not in the server's figures)\n", r.RedisCPUSec)
	}
	if r.BenchCPUSec > 0 {
		fmt.Fprintf(w, "bench        cpu %.2f s (the load generator itself)\n", r.BenchCPUSec)
	}
	if r.ServerEventsPerWrite > 0 {
		fmt.Fprintf(w, "server       %.2f events per stream write, %d writes held by coalescing\n", r.ServerEventsPerWrite, r.ServerHolds)
	}
	if r.ProbeHTTPP50Ms > 0 || r.ProbeRedisP50Ms > 0 {
		fmt.Fprintf(w, "floor        bare round trips under this load: node GET /healthz p50 %.2f ms p99 %.2f ms, Redis PING p50 %.2f ms p99 %.2f ms\n",
			r.ProbeHTTPP50Ms, r.ProbeHTTPP99Ms, r.ProbeRedisP50Ms, r.ProbeRedisP99Ms)
	}
}

// histograms is a sharded latency recorder (one lock per shard).
type histograms struct {
	shards [64]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
}

func newHistograms() *histograms {
	hs := &histograms{}
	for i := range hs.shards {
		hs.shards[i].h = hdrhistogram.New(1, int64(5*time.Minute/time.Microsecond), 3)
	}
	return hs
}

func (hs *histograms) record(shard int, d time.Duration) {
	s := &hs.shards[shard%len(hs.shards)]
	us := max(int64(d/time.Microsecond), 1)
	s.mu.Lock()
	_ = s.h.RecordValue(min(us, s.h.HighestTrackableValue()))
	s.mu.Unlock()
}

func (hs *histograms) merged() *hdrhistogram.Histogram {
	out := hdrhistogram.New(1, int64(5*time.Minute/time.Microsecond), 3)
	for i := range hs.shards {
		hs.shards[i].mu.Lock()
		out.Merge(hs.shards[i].h)
		hs.shards[i].mu.Unlock()
	}
	return out
}

// sinceSnapshot returns the values recorded in cur but not in prev (nil:
// none), two exports of one growing histogram: the latency of the last
// progress interval, where a stall shows that the run's cumulative
// percentiles would average away.
func sinceSnapshot(cur, prev *hdrhistogram.Snapshot) *hdrhistogram.Histogram {
	d := *cur
	d.Counts = slices.Clone(cur.Counts)
	if prev != nil {
		for i := range min(len(d.Counts), len(prev.Counts)) {
			d.Counts[i] -= prev.Counts[i]
		}
	}
	return hdrhistogram.Import(&d)
}

func ms(h *hdrhistogram.Histogram, q float64) float64 {
	return float64(h.ValueAtQuantile(q)) / 1000
}

// benchSub is one simulated subscriber.
type benchSub struct {
	id, topic string
	next      atomic.Uint64 // next expected offset (0: not connected yet)
	connected atomic.Bool
	// connectedAt is when the stream first opened (Unix ns).
	connectedAt atomic.Int64
	received    atomic.Int64
	dups, gaps  atomic.Int64
	resets      atomic.Int64
	reconnects  atomic.Int64
	// reconnects0 is reconnects when publishing began.
	reconnects0 int64
	lastID      string
	slow        bool
}

// Run runs one bounded load and reports what it measured; progress lines
// go to progress.
func Run(ctx context.Context, c Config, progress io.Writer) (*Report, error) {
	if c.Subscribers < 0 || c.Topics < 1 || c.Publishers < 1 || c.Batch < 1 || c.Payload < 24 {
		return nil, errors.New("bench: need subscribers ≥ 0, topics ≥ 1, publishers ≥ 1, batch ≥ 1, payload ≥ 24")
	}
	if c.Duration <= 0 || c.Duration > 10*time.Minute {
		return nil, errors.New("bench: duration must be in (0, 10m]")
	}
	if c.SlowFraction < 0 || c.SlowFraction > 0.5 || (c.SlowFraction > 0 && c.SlowBPS < 1) {
		return nil, errors.New("bench: slow-fraction must be in [0, 0.5] and slow-bps ≥ 1")
	}
	base := strings.TrimRight(c.URL, "/")
	tgt, err := newTarget(c.Server, base, c.Token)
	if err != nil {
		return nil, err
	}
	if tgt.floor && c.Batch > 1 {
		return nil, errors.New("bench: the floor server takes one event per request (batch 1)")
	}
	prefix := fmt.Sprintf("bench-%x-", rand.Uint32())
	topics := make([]string, c.Topics)
	for i := range topics {
		topics[i] = prefix + strconv.Itoa(i)
	}
	rep := &Report{Subscribers: c.Subscribers, Topics: c.Topics, TargetRate: c.Rate, Server: cmp.Or(c.Server, ServerHerald)}
	var probe *benchProbe
	if c.ProbeRate > 0 || c.ProbeRedis != "" {
		if probe, err = newBenchProbe(base, c.ProbeRedis, c.ProbeRate); err != nil {
			return nil, err
		}
	}

	ctx, cancel := context.WithTimeout(ctx, c.Duration+c.Drain+5*time.Minute)
	defer cancel()
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()

	type nodeStats struct {
		SlowEnded int64 `json:"slow_ended"`
		Delivered int64 `json:"delivered"`
		Writes    int64 `json:"writes"`
		Holds     int64 `json:"holds"`
	}
	serverStats := func() nodeStats {
		var n struct {
			Stats nodeStats `json:"stats"`
		}
		if c.AdminURL == "" || tgt.floor {
			return n.Stats
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.AdminURL, "/")+"/v1/node", nil)
		if err != nil {
			return n.Stats
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return n.Stats
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&n)
		return n.Stats
	}
	stats0 := serverStats()
	var rssBase float64
	if c.ServerPID > 0 {
		rssBase = ProcRSS(c.ServerPID)
		rep.ServerRSSBaseMB = rssBase / (1 << 20)
	}

	subTransport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConnsPerHost: -1, DisableCompression: true, ResponseHeaderTimeout: 30 * time.Second,
		ReadBufferSize: 8 << 10, WriteBufferSize: 1 << 10,
	}
	defer subTransport.CloseIdleConnections()
	// Slow readers: a 4 KiB socket receive buffer, so the server sees them
	// fall behind instead of loopback buffers hiding it.
	slowTransport := subTransport.Clone()
	slowTransport.DialContext = (&net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}).DialContext
	defer slowTransport.CloseIdleConnections()
	lat := newHistograms()
	slowLat := newHistograms()
	slowEvery := 0
	if c.SlowFraction > 0 {
		slowEvery = int(1 / c.SlowFraction)
	}
	subs := make([]*benchSub, c.Subscribers)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(max(c.ConnectRate, 1))
	connectCPU0, connectStart := ProcCPU(c.ServerPID), time.Now()
	for i := range subs {
		s := &benchSub{id: strconv.Itoa(i), topic: topics[i%len(topics)], slow: slowEvery > 0 && i%slowEvery == slowEvery-1}
		subs[i] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.slow {
				s.run(subCtx, slowTransport, tgt, slowLat, i, c.SlowBPS)
				return
			}
			s.run(subCtx, subTransport, tgt, lat, i, 0)
		}()
		if i%100 == 99 {
			time.Sleep(interval * 100)
		}
	}
	connectDeadline := time.Now().Add(2 * time.Minute)
	for {
		n := 0
		for _, s := range subs {
			if s.connected.Load() {
				n++
			}
		}
		fmt.Fprintf(progress, "\rconnected %d/%d", n, len(subs))
		if n == len(subs) {
			break
		}
		if time.Now().After(connectDeadline) || ctx.Err() != nil {
			stopSubs()
			wg.Wait()
			return nil, fmt.Errorf("bench: only %d of %d streams connected", n, len(subs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintln(progress)
	if c.Subscribers > 0 {
		var last int64
		for _, s := range subs {
			last = max(last, s.connectedAt.Load())
		}
		rep.ConnectPerSec = float64(c.Subscribers) / time.Unix(0, last).Sub(connectStart).Seconds()
	}
	if c.ServerPID > 0 && c.Subscribers > 0 {
		rep.ServerConnectCPUUs = (ProcCPU(c.ServerPID) - connectCPU0) / float64(c.Subscribers) * 1e6
	}
	if c.ServerPID > 0 {
		time.Sleep(time.Second) // let the server's heap settle before sampling
		rss := ProcRSS(c.ServerPID)
		rep.ServerRSSPeakMB = rss / (1 << 20)
		if c.Subscribers > 0 {
			rep.RSSPerStreamKiB = (rss - rssBase) / float64(c.Subscribers) / 1024
		}
	}
	if c.Idle {
		for _, s := range subs {
			rep.ConnectRetries += s.reconnects.Load()
		}
		stopSubs()
		wg.Wait()
		return rep, nil
	}

	// Publish.
	pubTransport := &http.Transport{MaxIdleConnsPerHost: c.Publishers * 2, DisableCompression: true}
	defer pubTransport.CloseIdleConnections()
	pubClient := &http.Client{Transport: pubTransport, Timeout: 10 * time.Second}
	pubLat := newHistograms()
	var published, pubErrs, delivered0 atomic.Int64
	errKinds := newErrorTally(maxErrorKinds)
	for _, s := range subs {
		delivered0.Add(s.received.Load())
		s.reconnects0 = s.reconnects.Load()
		rep.ConnectRetries += s.reconnects0
	}
	cpu0, self0, redis0 := ProcCPU(c.ServerPID), ProcCPU(os.Getpid()), ProcCPU(c.RedisPID)
	start := time.Now()
	pubCtx, stopPub := context.WithTimeout(ctx, c.Duration)
	var pwg sync.WaitGroup
	if probe != nil {
		pwg.Go(func() { probe.run(pubCtx) })
	}
	pad := strings.Repeat("x", c.Payload)
	for p := range c.Publishers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			per := c.Rate / float64(c.Publishers)
			// The publishers are staggered evenly over one request
			// interval: the node sees the rate as a steady stream, not
			// as bursts of one request per publisher.
			phase := float64(p*c.Batch) / float64(c.Publishers)
			seq := 0
			for pubCtx.Err() == nil {
				if per > 0 {
					due := start.Add(time.Duration((float64(seq) + phase) / per * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d):
						case <-pubCtx.Done():
							return
						}
					}
				}
				n := c.Batch
				items := make([]map[string]any, n)
				for j := range items {
					t := topics[(p+(seq+j)*c.Publishers)%len(topics)]
					ts := strconv.FormatInt(time.Now().UnixNano(), 10)
					items[j] = map[string]any{"topic": t, "data": ts + " " + pad[len(ts)+1:]}
				}
				t0 := time.Now()
				err := tgt.publish(pubCtx, pubClient, items)
				pubLat.record(p, time.Since(t0))
				if err != nil {
					if pubCtx.Err() == nil {
						pubErrs.Add(int64(n))
						errKinds.add(err.Error())
					}
				} else {
					published.Add(int64(n))
				}
				seq += n
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	var prev *hdrhistogram.Snapshot
	for done := false; !done; {
		select {
		case <-pubCtx.Done():
			done = true
		case <-tick.C:
			var d int64
			for _, s := range subs {
				d += s.received.Load()
			}
			h := lat.merged()
			snap := h.Export()
			w := sinceSnapshot(snap, prev)
			prev = snap
			fmt.Fprintf(progress, "t=%4.0fs published %d delivered %d  p50 %.1f ms p99 %.1f ms  (last second: p50 %.1f ms p99 %.1f ms max %.1f ms)\n",
				time.Since(start).Seconds(), published.Load(), d-delivered0.Load(), ms(h, 50), ms(h, 99),
				ms(w, 50), ms(w, 99), float64(w.Max())/1000)
		}
	}
	tick.Stop()
	stopPub()
	pwg.Wait()
	pubDur := time.Since(start)

	// Drain: wait until every subscriber reached its topic's head.
	heads := map[string]uint64{}
	// Only topics with subscribers: a head is one request per topic.
	for _, t := range topics[:min(len(topics), c.Subscribers)] {
		heads[t] = tgt.head(ctx, pubClient, t)
	}
	drainUntil := time.Now().Add(c.Drain)
	for time.Now().Before(drainUntil) {
		behind := 0
		for _, s := range subs {
			if !s.slow && s.next.Load()-1 < heads[s.topic] {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu1, self1, redis1 := ProcCPU(c.ServerPID), ProcCPU(os.Getpid()), ProcCPU(c.RedisPID)
	if c.ServerPID > 0 {
		rss := ProcRSS(c.ServerPID)
		rep.ServerRSSEndMB = rss / (1 << 20)
		rep.ServerRSSGrowthMB = (rss - rssBase) / (1 << 20)
		rep.ServerRSSPublishGrowthMB = rss/(1<<20) - rep.ServerRSSPeakMB
	}
	if c.MemProfile != "" {
		if err := writeHeapProfile(c.MemProfile); err != nil {
			fmt.Fprintf(progress, "memprofile: %v\n", err)
		}
	}
	stopSubs()
	wg.Wait()

	var deliveries int64
	for _, s := range subs {
		if s.slow {
			// Slow by design: behind at the end is expected; a skip is not.
			rep.SlowSubscribers++
			rep.SlowReceived += s.received.Load()
			rep.SlowGaps += s.gaps.Load()
			rep.SlowDuplicated += s.dups.Load()
			rep.SlowCutoffs += s.reconnects.Load() - s.reconnects0
			if s.reconnects.Load() > s.reconnects0 {
				rep.SlowCutOffSubs++
			}
			continue
		}
		deliveries += s.received.Load()
		rep.Duplicated += s.dups.Load()
		rep.Lost += s.gaps.Load()
		if behind := int64(heads[s.topic]) - int64(s.next.Load()-1); behind > 0 {
			rep.Lost += behind
		}
		rep.Resets += s.resets.Load()
		rep.Reconnects += s.reconnects.Load() - s.reconnects0
	}
	deliveries -= delivered0.Load()
	stats1 := serverStats()
	rep.ServerSlowEnded = stats1.SlowEnded - stats0.SlowEnded
	if w := stats1.Writes - stats0.Writes; w > 0 {
		rep.ServerEventsPerWrite = float64(stats1.Delivered-stats0.Delivered) / float64(w)
	}
	rep.ServerHolds = stats1.Holds - stats0.Holds
	h := lat.merged()
	ph := pubLat.merged()
	rep.DurationSec = pubDur.Seconds()
	if probe != nil {
		probe.report(rep)
	}
	rep.Published = published.Load()
	rep.PublishErrors = pubErrs.Load()
	rep.PublishErrorKinds = errKinds.counts()
	rep.PublishRate = float64(rep.Published) / pubDur.Seconds()
	rep.PublishP50Ms, rep.PublishP99Ms = ms(ph, 50), ms(ph, 99)
	rep.Deliveries = deliveries
	rep.DeliveriesPerSec = float64(deliveries) / elapsed.Seconds()
	rep.LatP50Ms, rep.LatP90Ms, rep.LatP99Ms, rep.LatP999Ms = ms(h, 50), ms(h, 90), ms(h, 99), ms(h, 99.9)
	rep.LatMaxMs = float64(h.Max()) / 1000
	rep.BenchCPUSec = self1 - self0
	rep.RedisCPUSec = redis1 - redis0
	if c.ServerPID > 0 {
		rep.ServerCPUSec = cpu1 - cpu0
		if deliveries > 0 {
			rep.CPUPerMillion = rep.ServerCPUSec / (float64(deliveries) / 1e6)
			rep.CPUPerDeliveryUs = rep.CPUPerMillion
		}
	}
	return rep, nil
}

// markConnected notes that the stream is open, and when it first was.
func (s *benchSub) markConnected() {
	s.connectedAt.CompareAndSwap(0, time.Now().UnixNano())
	s.connected.Store(true)
}

// run holds one stream, reconnecting with its cursor, until ctx ends.
func (s *benchSub) run(ctx context.Context, tr *http.Transport, tgt *target, lat *histograms, shard int, bps int) {
	client := &http.Client{Transport: tr}
	offs := make([]uint64, 0, 1)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			s.reconnects.Add(1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(50+rand.IntN(450)) * time.Millisecond):
			}
		}
		resp, err := client.Do(tgt.streamRequest(ctx, s.topic, s.lastID))
		if err != nil {
			continue
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			continue
		}
		if tgt.floor {
			// The floor subscribes before its answer and sends no hello;
			// its ids count from 1 per topic, and it does not resume.
			s.next.CompareAndSwap(0, 1)
			s.markConnected()
		}
		var body io.Reader = resp.Body
		if bps > 0 {
			body = &throttledReader{r: resp.Body, bps: bps, ctx: ctx}
		}
		// The decoder reads into its own buffer: no bufio.Reader between.
		stamped := &stampReader{r: body}
		dec := sse.NewDecoder(stamped)
		for {
			ev, err := dec.Next()
			if err != nil {
				break
			}
			now := stamped.at
			offs, err = tgt.offset(ev.ID, offs[:0])
			if ev.ID != "" && err == nil && len(offs) == 1 {
				s.lastID = ev.ID
			}
			switch ev.Type {
			case "herald.hello":
				if s.next.Load() == 0 && len(offs) == 1 {
					s.next.Store(offs[0] + 1)
				}
				s.markConnected()
				continue
			case "herald.reset":
				s.resets.Add(1)
				if len(offs) == 1 {
					s.next.Store(offs[0] + 1)
				}
				continue
			}
			if len(offs) != 1 {
				continue
			}
			switch next := s.next.Load(); {
			case offs[0] < next:
				s.dups.Add(1)
				continue
			case offs[0] > next:
				s.gaps.Add(int64(offs[0] - next))
			}
			s.next.Store(offs[0] + 1)
			s.received.Add(1)
			if sp := strings.IndexByte(ev.Data, ' '); sp > 0 {
				if ns, err := strconv.ParseInt(ev.Data[:sp], 10, 64); err == nil {
					lat.record(shard, now.Sub(time.Unix(0, ns)))
				}
			}
		}
		// Like a browser, keep the id of an id-only block: a shed new
		// stream's position as of its attempt (ADR 0020).
		if id := dec.LastEventID(); id != s.lastID && !tgt.floor {
			if offs, err = push.DecodeOffsets(id, 1, offs[:0]); err == nil && len(offs) == 1 {
				s.lastID = id
			}
		}
		resp.Body.Close()
	}
}

func benchPublish(ctx context.Context, c *http.Client, base, token string, items []map[string]any) error {
	var path string
	var body []byte
	if len(items) == 1 {
		path = "/v1/topics/" + items[0]["topic"].(string) + "/events"
		body, _ = json.Marshal(map[string]any{"data": items[0]["data"]})
	} else {
		path = "/v1/events"
		body, _ = json.Marshal(map[string]any{"events": items})
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return fmt.Errorf("status %d %s", resp.StatusCode, e.Error.Code)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// maxErrorKinds bounds the distinct publish error causes a bench report
// names.
const maxErrorKinds = 8

// errorTally counts errors by message, for at most limit distinct messages.
type errorTally struct {
	mu    sync.Mutex
	limit int
	n     map[string]int64
}

func newErrorTally(limit int) *errorTally {
	return &errorTally{limit: limit, n: make(map[string]int64)}
}

func (t *errorTally) add(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.n[msg]; !ok && len(t.n) >= t.limit {
		msg = "other"
	}
	t.n[msg]++
}

func (t *errorTally) counts() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.n) == 0 {
		return nil
	}
	return maps.Clone(t.n)
}

func topicHead(ctx context.Context, c *http.Client, base, token, topic string) uint64 {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/topics/"+topic, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var out struct {
		Last uint64 `json:"last_offset"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out.Last
}

// writeHeapProfile writes the heap profile (after a collection, so it
// shows live memory) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	return errors.Join(pprof.WriteHeapProfile(f), f.Close())
}

// ProcCPU returns a process's user+system CPU seconds (Linux /proc), or 0.
func ProcCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are 14 and 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// ProcRSS returns a process's resident set size in bytes (Linux /proc), or 0.
func ProcRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb * 1024
		}
	}
	return 0
}

// throttledReader reads at most bps bytes per second: a client that cannot
// keep up.
type throttledReader struct {
	ctx   context.Context
	r     io.Reader
	bps   int
	start time.Time
	n     int
}

func (t *throttledReader) Read(p []byte) (int, error) {
	if t.start.IsZero() {
		t.start = time.Now()
	}
	// Sleep until the bytes read so far are within budget, then read a
	// small chunk.
	if wait := time.Duration(float64(t.n)/float64(t.bps)*float64(time.Second)) - time.Since(t.start); wait > 0 {
		tm := time.NewTimer(wait)
		select {
		case <-t.ctx.Done():
			tm.Stop()
			return 0, t.ctx.Err()
		case <-tm.C:
		}
	}
	n, err := t.r.Read(p[:min(len(p), max(1, t.bps/4))])
	t.n += n
	return n, err
}

// stampReader notes when each read returned data: the arrival time of the
// events decoded from it. Reading the clock once per read rather than once
// per event keeps it off the load generator's per-event path (a clock read
// costs ~60 ns on this VM, 11% of the generator's CPU in max1k), and is the
// truer arrival time of events that came in one read.
type stampReader struct {
	r  io.Reader
	at time.Time
}

func (s *stampReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.at = time.Now()
	}
	return n, err
}
