// Command ingestload measures Herald's NDJSON ingest the way a fleet of log
// shippers and a room of log tails use it: -posters post batches of
// -batch lines to POST /v1/ingest at -rate lines/s in total (0: as fast as
// the node takes them) for -duration, the lines spread round-robin over
// -apps log types (topic logs.<app>.info by the ingest profile
// "logs.{app}.{level}"), while -subscribers SSE streams tail them, stream i
// the log type i mod -apps. Each line carries its batch's send time; the
// tool reports lines/s accepted, refusals, deliveries, send→receive latency
// percentiles and the CPU seconds of the node and Redis (-server-pid,
// -redis-pid, from /proc).
//
//	ingestload -url http://127.0.0.1:8080 -rate 50000 -subscribers 100
//
// The node needs an ingest profile whose topic is "logs.{app}.{level}" for
// the key given with -key (or "*": dev mode has no keys).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

type config struct {
	url, key               string
	apps, batch, posters   int
	subscribers, lineBytes int
	rate                   float64
	mixed                  bool
	duration, drain        time.Duration
	serverPID, redisPID    int
}

func main() {
	var c config
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8080", "Herald base URL")
	flag.StringVar(&c.key, "key", "", "API key (X-API-Key) for posting and subscribing; empty in dev mode")
	flag.IntVar(&c.apps, "apps", 50, "log types (topics logs.appNN.info)")
	flag.IntVar(&c.batch, "batch", 500, "lines per request (at most ingest.max_lines)")
	flag.IntVar(&c.posters, "posters", 8, "concurrent posters (shippers)")
	flag.IntVar(&c.subscribers, "subscribers", 100, "SSE streams, stream i on log type i mod apps")
	flag.IntVar(&c.lineBytes, "line-bytes", 200, "approximate size of one line")
	flag.Float64Var(&c.rate, "rate", 50000, "lines per second in total; 0 posts as fast as the node answers")
	flag.DurationVar(&c.duration, "duration", 20*time.Second, "posting time (at most 10m)")
	flag.DurationVar(&c.drain, "drain", 3*time.Second, "wait for deliveries after posting")
	flag.BoolVar(&c.mixed, "mixed", false, "every request carries every log type (default: poster p carries types p, p+posters, …, as a host's shipper does)")
	flag.IntVar(&c.serverPID, "server-pid", 0, "node process id, for its CPU seconds")
	flag.IntVar(&c.redisPID, "redis-pid", 0, "redis-server process id, for its CPU seconds")
	flag.Parse()
	if c.apps <= 0 || c.batch <= 0 || c.posters <= 0 || c.subscribers < 0 || c.rate < 0 || c.duration > 10*time.Minute {
		fmt.Fprintln(os.Stderr, "ingestload: need positive -apps, -batch, -posters; -rate ≥ 0; -duration at most 10m")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "ingestload:", err)
		os.Exit(1)
	}
}

// tail is the subscribers' side: latencies and counts.
type tail struct {
	mu       sync.Mutex
	hist     *hdrhistogram.Histogram
	received atomic.Int64
}

func (t *tail) record(lat time.Duration) {
	t.received.Add(1)
	t.mu.Lock()
	_ = t.hist.RecordValue(max(lat.Microseconds(), 1))
	t.mu.Unlock()
}

func run(ctx context.Context, c config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.posters + c.subscribers}}
	tl := &tail{hist: hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)}
	var wg sync.WaitGroup
	perApp := make([]int, c.apps) // streams per log type
	for i := range c.subscribers {
		topic := fmt.Sprintf("logs.app%02d.info", i%c.apps)
		perApp[i%c.apps]++
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/v1/stream?topic="+topic, nil)
		req.Header.Set("Accept", "text/event-stream")
		if c.key != "" {
			req.Header.Set("X-API-Key", c.key)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("subscribe %s: %s", topic, resp.Status)
		}
		wg.Go(func() {
			defer resp.Body.Close()
			readStream(resp.Body, tl)
		})
	}
	time.Sleep(time.Second) // let every stream settle before the clock starts

	cpu0, rcpu0 := cpuSeconds(c.serverPID), cpuSeconds(c.redisPID)
	var accepted, refusedLines, refusals, failures atomic.Int64
	var perAppSent = make([]atomic.Int64, c.apps)
	pubCtx, pubStop := context.WithTimeout(ctx, c.duration)
	defer pubStop()
	start := time.Now()
	var interval time.Duration
	if c.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(c.batch*c.posters) / c.rate)
	}
	var pwg sync.WaitGroup
	for p := range c.posters {
		pwg.Go(func() {
			var t *time.Ticker
			if interval > 0 {
				select { // posters spread evenly over one interval
				case <-time.After(interval * time.Duration(p) / time.Duration(c.posters)):
				case <-pubCtx.Done():
					return
				}
				t = time.NewTicker(interval)
				defer t.Stop()
			}
			pad := strings.Repeat("x", max(0, c.lineBytes-110))
			var body bytes.Buffer
			// Like a host's shipper, a poster carries its own log types:
			// apps p, p+posters, p+2·posters… (all of them with -mixed).
			var own []int
			for app := range c.apps {
				if c.mixed || c.posters > c.apps || app%c.posters == p {
					own = append(own, app)
				}
			}
			next := 0 // round-robin position over own
			for seq := 0; ; seq++ {
				body.Reset()
				ts := time.Now().UnixNano()
				counts := make([]int, c.apps)
				for i := range c.batch {
					app := own[next%len(own)]
					next++
					counts[app]++
					fmt.Fprintf(&body, `{"ts":%d,"app":"app%02d","level":"info","poster":%d,"seq":%d,"msg":"GET /v1/items 200 %s"}`+"\n", ts, app, p, seq*c.batch+i, pad)
				}
				n, refused, err := post(pubCtx, hc, c, body.Bytes())
				switch {
				case err != nil && pubCtx.Err() == nil:
					failures.Add(1)
				case err == nil:
					accepted.Add(int64(n))
					if refused > 0 {
						refusals.Add(1)
						refusedLines.Add(int64(refused))
					} else {
						for app, k := range counts {
							perAppSent[app].Add(int64(k))
						}
					}
				}
				if t == nil {
					if pubCtx.Err() != nil {
						return
					}
					continue
				}
				select {
				case <-t.C:
				case <-pubCtx.Done():
					return
				}
			}
		})
	}
	pwg.Wait()
	elapsed := time.Since(start)
	var want int64
	for app := range perAppSent {
		want += perAppSent[app].Load() * int64(perApp[app])
	}
	deadline := time.Now().Add(c.drain)
	for tl.received.Load() < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cpu, rcpu := cpuSeconds(c.serverPID)-cpu0, cpuSeconds(c.redisPID)-rcpu0
	cancel()
	wg.Wait()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	ms := func(q float64) float64 { return float64(tl.hist.ValueAtQuantile(q)) / 1000 }
	rep := map[string]any{
		"seconds": elapsed.Seconds(), "lines_accepted": accepted.Load(),
		"lines_per_s":      float64(accepted.Load()) / elapsed.Seconds(),
		"refused_requests": refusals.Load(), "refused_lines": refusedLines.Load(), "failed_requests": failures.Load(),
		"streams": c.subscribers, "received": tl.received.Load(), "expected_at_least": want,
		"p50_ms": ms(50), "p90_ms": ms(90), "p99_ms": ms(99), "p999_ms": ms(99.9), "max_ms": float64(tl.hist.Max()) / 1000,
	}
	if c.serverPID > 0 {
		rep["node_cpu_s"] = cpu
		rep["node_cores"] = cpu / elapsed.Seconds()
	}
	if c.redisPID > 0 {
		rep["redis_cpu_s"] = rcpu
		rep["redis_cores"] = rcpu / elapsed.Seconds()
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// post sends one NDJSON batch and returns the lines accepted and refused
// (a 429 or 503 answer still says which lines were published).
func post(ctx context.Context, hc *http.Client, c config, body []byte) (accepted, refused int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/v1/ingest", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if c.key != "" {
		req.Header.Set("X-API-Key", c.key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var a struct {
		Accepted int `json:"accepted"`
		Rejected int `json:"rejected"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&a); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK && a.Accepted+a.Rejected == 0 {
		return 0, 0, fmt.Errorf("%s", resp.Status)
	}
	return a.Accepted, a.Rejected, nil
}

var tsField = []byte(`"ts":`)

// readStream records the latency of every log event: now minus the "ts"
// its line carries.
func readStream(r io.Reader, tl *tail) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		i := bytes.Index(line, tsField)
		if i < 0 {
			continue
		}
		rest := line[i+len(tsField):]
		end := bytes.IndexByte(rest, ',')
		if end < 0 {
			continue
		}
		ts, err := strconv.ParseInt(string(rest[:end]), 10, 64)
		if err != nil {
			continue
		}
		tl.record(time.Since(time.Unix(0, ts)))
	}
}

// cpuSeconds is a process's user+system CPU time from /proc (0 when pid is
// 0 or unreadable).
func cpuSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}
