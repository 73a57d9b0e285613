// Command sseload drives any SSE fan-out server with one load, through URL
// templates, so that Herald and the floor server (/work/shared/floor) are
// measured the same way in the same run: -subscribers streams of one topic,
// -rate events/s from -publishers publishers for -duration, each event's
// data the publish time in Unix nanoseconds; it reports publish→receive
// latency percentiles, deliveries, its own CPU per delivery and the
// server's (-server-pid, from /proc).
//
//	sseload -sub 'http://127.0.0.1:8090/sse?topic=t' \
//	  -pub 'http://127.0.0.1:8090/publish?topic=t' -body '{ts}'
//	sseload -sub 'http://127.0.0.1:18611/v1/stream?topic=t' \
//	  -pub 'http://127.0.0.1:18611/v1/topics/t/events' -body '{"data":"{ts} {seq}"}' -json-body
//
// SSE subscribers behave like Herald clients: when a stream ends (the
// server cut it off as slow, kicked it, or the connection failed) they
// reconnect with the last id received as Last-Event-ID, after the server's
// retry delay, doubled on each failed attempt up to -max-backoff. With
// {seq} in the body (a space after the timestamp) every event carries its
// publish sequence number and the report counts, per stream, the events
// published (answered 2xx) that the stream never got ("lost") and the ones
// it got twice ("duplicated"), exactly; reconnects are counted by cause.
//
// Each SSE stream is one goroutine over a raw TCP connection (no
// http.Transport: its two goroutines and 8 KiB of buffers per connection
// cost more than the stream's reading), so that one process can read
// ~20,000 streams at little CPU (docs/benchmarks.md, issue 25 session 12).
//
// A ws:// -sub URL opens Herald WebSocket streams (GET /v1/ws, ADR 0023)
// instead, each message one JSON frame whose data is read the same way;
// WebSocket streams do not resume and have no lost/duplicated counts.
//
// Several load processes can share one topic (issue 25's shape: one topic,
// publishes round-robin over the nodes): -pub takes a comma-separated list
// of URLs, published to in turn, and -tag names this process's events
// ({seq} becomes "<seq>@<tag>"), so that each process counts its own
// events exactly and passes over the others' (which its streams receive
// too: the server's fan-out is the whole topic's).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/coder/websocket"
)

type config struct {
	sub, pub, body, tag  string
	jsonBody             bool
	subscribers          int
	rate                 float64
	publishers           int
	duration, drain      time.Duration
	maxBackoff           time.Duration
	connectRate, serverP int
}

func main() {
	var c config
	flag.StringVar(&c.sub, "sub", "", "subscribe URL (GET, text/event-stream)")
	flag.StringVar(&c.pub, "pub", "", "publish URL (POST); a comma-separated list is published to round-robin")
	flag.StringVar(&c.tag, "tag", "", "this process's tag: {seq} becomes \"<seq>@<tag>\" and events of other tags (other load processes on the same topic) are not counted")
	flag.StringVar(&c.body, "body", "{ts}", "publish body; {ts} becomes the publish time in Unix nanoseconds, {seq} the publish's sequence number (write \"{ts} {seq}\" for exact lost/duplicated counts)")
	flag.BoolVar(&c.jsonBody, "json-body", false, "send the body as application/json")
	flag.IntVar(&c.subscribers, "subscribers", 2000, "streams to open")
	flag.Float64Var(&c.rate, "rate", 20, "events per second in total")
	flag.IntVar(&c.publishers, "publishers", 1, "publishers (each at rate/publishers)")
	flag.DurationVar(&c.duration, "duration", 20*time.Second, "publishing time (at most 10m)")
	flag.DurationVar(&c.drain, "drain", 3*time.Second, "wait for deliveries (and resumed streams) after publishing")
	flag.DurationVar(&c.maxBackoff, "max-backoff", 10*time.Second, "upper bound of a stream's reconnection delay")
	flag.IntVar(&c.connectRate, "connect-rate", 1000, "new streams per second")
	flag.IntVar(&c.serverP, "server-pid", 0, "server process id, for its CPU seconds")
	flag.Parse()
	if c.sub == "" || c.pub == "" || c.subscribers <= 0 || c.rate <= 0 || c.publishers <= 0 || c.duration > 10*time.Minute || c.maxBackoff <= 0 {
		fmt.Fprintln(os.Stderr, "sseload: need -sub, -pub, positive -subscribers, -rate, -publishers, -max-backoff; -duration at most 10m")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "sseload:", err)
		os.Exit(1)
	}
}

// histShards spreads latency recording over this many histograms, each
// with its own lock: every stream of a topic receives an event at the same
// instant, and one lock would have all of them queue on it.
const histShards = 64

// shardedHist is a latency histogram recorded without one global lock.
type shardedHist struct {
	shards [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
}

func newShardedHist() *shardedHist {
	s := &shardedHist{}
	for i := range s.shards {
		s.shards[i].h = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	}
	return s
}

func (s *shardedHist) record(shard int, lat time.Duration) {
	sh := &s.shards[shard%histShards]
	sh.mu.Lock()
	_ = sh.h.RecordValue(max(lat.Microseconds(), 1))
	sh.mu.Unlock()
}

func (s *shardedHist) merged() *hdrhistogram.Histogram {
	m := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	for i := range s.shards {
		s.shards[i].mu.Lock()
		m.Merge(s.shards[i].h)
		s.shards[i].mu.Unlock()
	}
	return m
}

// bitset is a set of sequence numbers.
type bitset []uint64

func (b *bitset) add(i int) (had bool) {
	w := i / 64
	for len(*b) <= w {
		*b = append(*b, 0)
	}
	had = (*b)[w]&(1<<(i%64)) != 0
	(*b)[w] |= 1 << (i % 64)
	return had
}

func (b bitset) has(i int) bool { w := i / 64; return w < len(b) && b[w]&(1<<(i%64)) != 0 }

// counts is a set of named counters, safe for concurrent use.
type counts struct {
	mu sync.Mutex
	m  map[string]int64
}

func (c *counts) add(k string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	c.m[k]++
	c.mu.Unlock()
}

func (c *counts) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

// load is one run's shared state.
type load struct {
	c    config
	hist *shardedHist
	// received counts data events (duplicates included), unique the
	// distinct (stream, seq) pairs among them.
	received, unique, dups atomic.Int64
	deliveries             atomic.Int64 // every event received, other tags' included
	open                   atomic.Int64 // streams answered 200 at least once
	refused                counts       // refusals by HTTP status or in-band error code
	reconnects             counts       // reconnections by the cause of the stream's end
	withSeq                bool         // the body carries {seq}
	tag                    []byte       // "@" + -tag, or nil
}

func run(ctx context.Context, c config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := &load{c: c, hist: newShardedHist(), withSeq: strings.Contains(c.body, "{seq}")}
	if c.tag != "" {
		l.tag = []byte("@" + c.tag)
	}
	pubs := strings.Split(c.pub, ",")
	tr := &http.Transport{MaxIdleConnsPerHost: c.publishers * 2}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	ws := strings.HasPrefix(c.sub, "ws://")
	var subs []*sseStream
	if !ws {
		u, err := url.Parse(c.sub)
		if err != nil || u.Scheme != "http" {
			return fmt.Errorf("-sub %q: want an http:// or ws:// URL", c.sub)
		}
		subs = make([]*sseStream, c.subscribers)
		for i := range subs {
			subs[i] = &sseStream{l: l, idx: i, addr: hostPort(u), reqHead: requestHead(u)}
		}
	}
	pace := time.NewTicker(time.Second / time.Duration(c.connectRate))
	for i := range c.subscribers {
		<-pace.C
		if ws {
			if err := l.wsSubscribe(ctx, &wg, i); err != nil {
				pace.Stop()
				return err
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			subs[i].follow(ctx)
		}()
	}
	pace.Stop()
	// Every stream open before the clock starts (bounded: a refused stream
	// keeps retrying and loses what is published before it gets in).
	settle := time.Now().Add(30 * time.Second)
	for !ws && l.open.Load() < int64(c.subscribers) && time.Now().Before(settle) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	cpu0, self0 := cpuSeconds(c.serverP), selfCPU()
	var sent, failed atomic.Int64
	var okMu sync.Mutex
	var ok bitset // sequence numbers the server accepted (2xx)
	var seq atomic.Int64
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
				n := int(seq.Add(1) - 1)
				body := strings.ReplaceAll(c.body, "{ts}", strconv.FormatInt(time.Now().UnixNano(), 10))
				body = strings.ReplaceAll(body, "{seq}", strconv.Itoa(n)+string(l.tag))
				// ctx, not pubCtx: the phase's end does not cut a publish
				// in flight, whose event the server may have stored.
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, pubs[n%len(pubs)], strings.NewReader(body))
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
					okMu.Lock()
					ok.add(n)
					okMu.Unlock()
				} else {
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
	streams := int64(c.subscribers)
	if ws {
		streams = l.open.Load()
	}
	want := sent.Load() * streams
	deadline := time.Now().Add(c.drain)
	count := &l.received
	if l.withSeq && !ws {
		count = &l.unique // resumed streams: wait for every event, not for as many deliveries
	}
	for count.Load() < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cpu, self := cpuSeconds(c.serverP)-cpu0, selfCPU()-self0
	cancel()
	wg.Wait()
	hist := l.hist.merged()
	ms := func(q float64) float64 { return float64(hist.ValueAtQuantile(q)) / 1000 }
	received := l.received.Load()
	rep := map[string]any{
		"streams": l.open.Load(), "subscribers": c.subscribers, "refused": l.refused.snapshot(),
		"reconnects": l.reconnects.snapshot(), "published": sent.Load(), "publish_errors": failed.Load(),
		"received": received, "expected": want, "deliveries": l.deliveries.Load(),
		"p50_ms": ms(50), "p90_ms": ms(90), "p99_ms": ms(99), "p999_ms": ms(99.9), "max_ms": float64(hist.Max()) / 1000,
		"self_cpu_s": self,
	}
	if received > 0 {
		rep["self_cpu_us_per_delivery"] = self / float64(received) * 1e6
	}
	if l.withSeq && !ws {
		// Exact, per stream, over the events the server accepted; an event
		// whose publish failed (no 2xx) but was delivered is "unconfirmed".
		var lost, unconfirmed int64
		published := int(seq.Load())
		for _, s := range subs {
			for n := range published {
				switch got := s.got.has(n); {
				case ok.has(n) && !got:
					lost++
				case !ok.has(n) && got:
					unconfirmed++
				}
			}
		}
		rep["lost"], rep["duplicated"], rep["unconfirmed"] = lost, l.dups.Load(), unconfirmed
	}
	if c.serverP > 0 && received > 0 {
		rep["server_cpu_s"] = cpu
		rep["server_cpu_s_per_million"] = cpu / float64(received) * 1e6
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// record takes one event's data, "<ts>" or "<ts> <seq>", for stream s (nil:
// no per-stream accounting).
func (l *load) record(s *sseStream, shard int, data []byte) {
	ts, rest, _ := bytes.Cut(bytes.TrimSpace(data), []byte(" "))
	t, err := strconv.ParseInt(string(ts), 10, 64)
	if err != nil {
		return
	}
	l.deliveries.Add(1)
	if l.tag != nil {
		seq, ok := bytes.CutSuffix(rest, l.tag)
		if !ok {
			return // another load process's event on the shared topic
		}
		rest = seq
	}
	l.received.Add(1)
	l.hist.record(shard, time.Since(time.Unix(0, t)))
	if s == nil || !l.withSeq {
		return
	}
	n, err := strconv.Atoi(string(rest))
	if err != nil || n < 0 {
		return
	}
	if s.got.add(n) {
		l.dups.Add(1)
		return
	}
	l.unique.Add(1)
}

// sseStream is one subscriber: its connections one after another, all on
// its goroutine (follow), which alone touches its fields until run has
// waited for it.
type sseStream struct {
	l       *load
	idx     int
	addr    string
	reqHead string // request line and headers but the Last-Event-ID
	lastID  string
	hasID   bool
	retry   time.Duration // the server's last retry: hint
	opened  bool
	got     bitset // sequence numbers received
}

// Bounds of one connection's waits: the TCP connect and the response
// header; a stream silent for longer than idleTimeout is taken as dead
// (Herald writes a keep-alive every 15 s by default).
const (
	dialTimeout   = 10 * time.Second
	headerTimeout = 15 * time.Second
	idleTimeout   = 60 * time.Second
	// defaultRetry is the reconnection delay before the server named one.
	defaultRetry = time.Second
)

// follow keeps the stream connected until ctx ends: after each end it waits
// the server's retry delay (doubled per attempt that delivered nothing, up
// to max-backoff, with jitter) and resumes from its last id.
func (s *sseStream) follow(ctx context.Context) {
	failures := 0
	for {
		cause, progressed := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		s.l.reconnects.add(cause)
		if progressed {
			failures = 0
		} else {
			failures++
		}
		base := s.retry
		if base <= 0 {
			base = defaultRetry
		}
		// Full jitter as push/client does: streams cut together do not
		// come back together, and streams that get nothing back off.
		d := rand.N(min(base<<min(failures, 8), s.l.c.maxBackoff) + 1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session runs one connection and returns why it ended and whether it
// delivered an event (as push/client, only that resets the backoff: under
// overload, streams cut before their first event back off).
func (s *sseStream) session(ctx context.Context) (cause string, progressed bool) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return "dial_error", false
	}
	defer conn.Close()
	// The run's end closes the connection, which ends any read.
	defer context.AfterFunc(ctx, func() { _ = conn.Close() })()
	dc := &deadlineConn{Conn: conn}
	_ = conn.SetDeadline(time.Now().Add(headerTimeout))
	req := s.reqHead
	if s.hasID {
		req += "Last-Event-ID: " + s.lastID + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		return "write_error", false
	}
	br := bufio.NewReaderSize(dc, 2048)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "header_error", false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.l.refused.add(strconv.Itoa(resp.StatusCode))
		return "refused_" + strconv.Itoa(resp.StatusCode), false
	}
	if !s.opened {
		s.opened = true
		s.l.open.Add(1)
	}
	dc.idle = true // from here on, a read waits at most idleTimeout
	return s.read(resp.Body)
}

// read parses the event stream until it ends. Only the fields a Herald
// client uses: id (the resume cursor, kept even on control events), event,
// data and retry.
func (s *sseStream) read(body io.Reader) (cause string, progressed bool) {
	r := bufio.NewReaderSize(body, 1024)
	var (
		data, typ, line []byte
		id              string
		idSet           bool
		// last is the type of the last control event but herald.hello: a
		// stream that ends right after one (a shed, a move) is named after it.
		last string
	)
	for {
		chunk, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			line = append(line, chunk...) // a line longer than the buffer
			continue
		}
		if err != nil {
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				if last != "" {
					return "closed_after_" + last, progressed
				}
				return "closed", progressed
			case errors.Is(err, os.ErrDeadlineExceeded):
				return "idle", progressed
			}
			return "read_error", progressed
		}
		if len(line) > 0 {
			chunk = append(line, chunk...)
			line = line[:0]
		}
		chunk = bytes.TrimRight(chunk, "\r\n")
		if len(chunk) == 0 { // dispatch
			if idSet {
				s.lastID, s.hasID = id, true
			}
			switch {
			case bytes.Equal(typ, []byte("herald.error")):
				// A refusal in band (a client without the Herald-Client
				// header gets a 200 with the error, then the end).
				code := "error"
				if _, after, ok := bytes.Cut(data, []byte(`"code":"`)); ok {
					code, _, _ = strings.Cut(string(after), `"`)
				}
				s.l.refused.add(code)
				cause = "refused_" + code
			case bytes.Equal(typ, []byte("herald.hello")):
			case bytes.HasPrefix(typ, []byte("herald.")):
				last = string(typ)
			case len(data) > 0:
				s.l.record(s, s.idx, data)
				progressed, last = true, ""
			}
			if cause != "" {
				return cause, false
			}
			data, typ, idSet = data[:0], typ[:0], false
			continue
		}
		name, value, _ := bytes.Cut(chunk, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(name) {
		case "data":
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, value...)
		case "event":
			typ = append(typ[:0], value...)
		case "id":
			id, idSet = string(value), true
		case "retry":
			if ms, err := strconv.Atoi(string(value)); err == nil && ms >= 0 {
				s.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// deadlineConn pushes the read deadline idleTimeout ahead at most once a
// second once idle is set, rather than on every read.
type deadlineConn struct {
	net.Conn
	idle bool
	set  time.Time
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.idle {
		if now := time.Now(); now.Sub(c.set) > time.Second {
			c.set = now
			_ = c.Conn.SetReadDeadline(now.Add(idleTimeout))
		}
	}
	return c.Conn.Read(p)
}

// requestHead is the GET request for u without its closing blank line.
func requestHead(u *url.URL) string {
	return "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: sseload\r\n"
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// wsSubscribe opens one WebSocket stream (no resume) and reads it on a
// goroutine counted in wg.
func (l *load) wsSubscribe(ctx context.Context, wg *sync.WaitGroup, i int) error {
	conn, _, err := websocket.Dial(ctx, l.c.sub, nil)
	if err != nil {
		return err
	}
	// A refused stream (herald.error, then a close) is not open: counted
	// apart, so that "expected" counts served streams only.
	_, first, err := conn.Read(ctx)
	if err != nil || bytes.Contains(first, []byte(`"event":"herald.error"`)) {
		l.refused.add("ws")
		_ = conn.CloseNow()
		return nil
	}
	l.open.Add(1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer conn.CloseNow()
		for {
			_, msg, err := conn.Read(ctx)
			if err != nil {
				return
			}
			// {"id":…,"event":…,"topic":…,"data":"<ts>"}: the data is the
			// last field, digits only for these events.
			if bytes.Contains(msg, []byte(`"event":"herald.`)) {
				continue
			}
			if j := bytes.LastIndex(msg, []byte(`"data":"`)); j >= 0 {
				l.record(nil, i, bytes.TrimRight(msg[j+8:], `"}`))
			}
		}
	}()
	return nil
}

// selfCPU is this process's user+system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
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
