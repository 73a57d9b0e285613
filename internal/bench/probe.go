package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/redis/go-redis/v9"
)

// benchProbe measures bare round trips while the load runs: GET /healthz
// on the node (an HTTP request that does no work) and, with a Redis URL,
// PING on Redis (a Redis call that does no work). A publish is one of
// each plus the node's and the script's work, so their latency under the
// same load is the machine's floor under the publish latency the run
// reports. One round trip at a time, paced; the probe's own load is small
// but not nothing, so scenarios that state targets do not run it.
type benchProbe struct {
	node  string // the node's /healthz URL
	redis *redis.Client
	every time.Duration
	http  *hdrhistogram.Histogram
	ping  *hdrhistogram.Histogram
}

func newBenchProbe(base, redisURL string, rate float64) (*benchProbe, error) {
	if rate <= 0 || rate > 1000 {
		return nil, fmt.Errorf("bench: probe-rate %v: want (0, 1000] round trips per second", rate)
	}
	p := &benchProbe{
		node:  strings.TrimRight(base, "/") + "/healthz",
		every: time.Duration(float64(time.Second) / rate),
		http:  hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3),
		ping:  hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3),
	}
	if redisURL != "" {
		opt, err := redis.ParseURL(redisURL)
		if err != nil {
			return nil, fmt.Errorf("bench: probe-redis: %w", err)
		}
		p.redis = redis.NewClient(opt)
	}
	return p, nil
}

// run probes until ctx ends, alternating HTTP and Redis when both are set.
func (p *benchProbe) run(ctx context.Context) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	if p.redis != nil {
		defer p.redis.Close()
	}
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t0 := time.Now()
		if p.redis != nil && i%2 == 1 {
			if p.redis.Ping(ctx).Err() == nil {
				_ = p.ping.RecordValue(max(time.Since(t0).Microseconds(), 1))
			}
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.node, nil)
		if err != nil {
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			_ = p.http.RecordValue(max(time.Since(t0).Microseconds(), 1))
		}
	}
}

// report fills the probe's figures in; call after run returned.
func (p *benchProbe) report(r *Report) {
	if p.http.TotalCount() > 0 {
		r.ProbeHTTPP50Ms, r.ProbeHTTPP99Ms = ms(p.http, 50), ms(p.http, 99)
	}
	if p.ping.TotalCount() > 0 {
		r.ProbeRedisP50Ms, r.ProbeRedisP99Ms = ms(p.ping, 50), ms(p.ping, 99)
	}
}
