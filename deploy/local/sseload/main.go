// Command sseload drives any SSE fan-out server with one load, through URL
// templates, so that Herald and the floor server (/work/shared/floor) are
// measured the same way in the same run: -subscribers streams of one topic,
// -rate events/s from -publishers publishers for -duration, each event's
// data the publish time in Unix nanoseconds; it reports publish→receive
// latency percentiles, deliveries, and the server's CPU per delivery
// (-server-pid, from /proc). `herald bench` measures Herald alone (cursors,
// loss and duplicate checks); this tool only compares.
//
//	sseload -sub 'http://127.0.0.1:8090/sse?topic=t' \
//	  -pub 'http://127.0.0.1:8090/publish?topic=t' -body '{ts}'
//	sseload -sub 'http://127.0.0.1:18611/v1/stream?topic=t' \
//	  -pub 'http://127.0.0.1:18611/v1/topics/t/events' -body '{"data":"{ts}"}' -json-body
//
// A ws:// -sub URL opens Herald WebSocket streams (GET /v1/ws, ADR 0023)
// instead, each message one JSON frame whose data is read the same way.
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
	"github.com/coder/websocket"
)

type config struct {
	sub, pub, body       string
	jsonBody             bool
	subscribers          int
	rate                 float64
	publishers           int
	duration, drain      time.Duration
	connectRate, serverP int
}

func main() {
	var c config
	flag.StringVar(&c.sub, "sub", "", "subscribe URL (GET, text/event-stream)")
	flag.StringVar(&c.pub, "pub", "", "publish URL (POST)")
	flag.StringVar(&c.body, "body", "{ts}", "publish body; {ts} becomes the publish time in Unix nanoseconds")
	flag.BoolVar(&c.jsonBody, "json-body", false, "send the body as application/json")
	flag.IntVar(&c.subscribers, "subscribers", 2000, "streams to open")
	flag.Float64Var(&c.rate, "rate", 20, "events per second in total")
	flag.IntVar(&c.publishers, "publishers", 1, "publishers (each at rate/publishers)")
	flag.DurationVar(&c.duration, "duration", 20*time.Second, "publishing time (at most 10m)")
	flag.DurationVar(&c.drain, "drain", 3*time.Second, "wait for deliveries after publishing")
	flag.IntVar(&c.connectRate, "connect-rate", 1000, "new streams per second")
	flag.IntVar(&c.serverP, "server-pid", 0, "server process id, for its CPU seconds")
	flag.Parse()
	if c.sub == "" || c.pub == "" || c.subscribers <= 0 || c.rate <= 0 || c.publishers <= 0 || c.duration > 10*time.Minute {
		fmt.Fprintln(os.Stderr, "sseload: need -sub, -pub, positive -subscribers, -rate, -publishers; -duration at most 10m")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "sseload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: c.publishers * 2}
	hc := &http.Client{Transport: tr}
	var (
		mu       sync.Mutex
		hist     = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		received atomic.Int64
		open     atomic.Int64
		refused  atomic.Int64
		wg       sync.WaitGroup
	)
	pace := time.NewTicker(time.Second / time.Duration(c.connectRate))
	for range c.subscribers {
		<-pace.C
		record := func(data []byte) {
			ts, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
			if err != nil {
				return
			}
			lat := time.Since(time.Unix(0, ts))
			received.Add(1)
			mu.Lock()
			_ = hist.RecordValue(max(lat.Microseconds(), 1))
			mu.Unlock()
		}
		if strings.HasPrefix(c.sub, "ws://") {
			conn, _, err := websocket.Dial(ctx, c.sub, nil)
			if err != nil {
				pace.Stop()
				return err
			}
			// A refused stream (herald.error, then a close) is not open:
			// counted apart, so that "expected" counts served streams only.
			_, first, err := conn.Read(ctx)
			if err != nil || bytes.Contains(first, []byte(`"event":"herald.error"`)) {
				refused.Add(1)
				_ = conn.CloseNow()
				continue
			}
			open.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.CloseNow()
				for {
					_, msg, err := conn.Read(ctx)
					if err != nil {
						return
					}
					// {"id":…,"event":…,"topic":…,"data":"<ts>"}: the data is
					// the last field, digits only for these events.
					if bytes.Contains(msg, []byte(`"event":"herald.`)) {
						continue
					}
					if i := bytes.LastIndex(msg, []byte(`"data":"`)); i >= 0 {
						record(bytes.TrimRight(msg[i+8:], `"}`))
					}
				}
			}()
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.sub, nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := hc.Do(req)
		if err != nil {
			pace.Stop()
			return err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			pace.Stop()
			return fmt.Errorf("subscribe: %s", resp.Status)
		}
		open.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				line := sc.Bytes()
				if bytes.HasPrefix(line, []byte("data:")) {
					record(line[5:])
				}
			}
		}()
	}
	pace.Stop()
	time.Sleep(time.Second) // let every stream settle before the clock starts
	cpu0 := cpuSeconds(c.serverP)
	var sent, failed atomic.Int64
	pubCtx, pubStop := context.WithTimeout(ctx, c.duration)
	defer pubStop()
	var pwg sync.WaitGroup
	interval := time.Duration(float64(time.Second) * float64(c.publishers) / c.rate)
	for i := range c.publishers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			// Publishers are spread evenly over one interval.
			select {
			case <-time.After(interval * time.Duration(i) / time.Duration(c.publishers)):
			case <-pubCtx.Done():
				return
			}
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				body := strings.ReplaceAll(c.body, "{ts}", strconv.FormatInt(time.Now().UnixNano(), 10))
				req, _ := http.NewRequestWithContext(pubCtx, http.MethodPost, c.pub, strings.NewReader(body))
				if c.jsonBody {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := hc.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err == nil && resp.StatusCode < 300 {
					sent.Add(1)
				} else if pubCtx.Err() == nil {
					failed.Add(1)
				}
				select {
				case <-t.C:
				case <-pubCtx.Done():
					return
				}
			}
		}()
	}
	pwg.Wait()
	want := sent.Load() * open.Load()
	deadline := time.Now().Add(c.drain)
	for received.Load() < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cpu := cpuSeconds(c.serverP) - cpu0
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	ms := func(q float64) float64 { return float64(hist.ValueAtQuantile(q)) / 1000 }
	rep := map[string]any{
		"streams": open.Load(), "refused": refused.Load(), "published": sent.Load(), "publish_errors": failed.Load(),
		"received": received.Load(), "expected": want,
		"p50_ms": ms(50), "p90_ms": ms(90), "p99_ms": ms(99), "p999_ms": ms(99.9), "max_ms": float64(hist.Max()) / 1000,
	}
	if c.serverP > 0 && received.Load() > 0 {
		rep["server_cpu_s"] = cpu
		rep["server_cpu_s_per_million"] = cpu / float64(received.Load()) * 1e6
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(rep)
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
	// Fields after the command name (which may hold spaces) start at ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}
