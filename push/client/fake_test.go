package client

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/sse"
)

// How a fake stream connection ends after its events.
type endMode int

const (
	endHang  endMode = iota // heartbeat until the client or the test goes away
	endClose                // finish the response cleanly
	endAbort                // cut the TCP connection (no chunked terminator)
	endQuiet                // send nothing more, not even heartbeats
)

// connPlan scripts one request to the fake.
type connPlan struct {
	status     int    // non-zero: answer with this status and a JSON error
	code       string // error code for status
	retryAfter string // Retry-After header
	ctype      string // Content-Type override for 200

	noHello bool
	send    int  // events to send after the resume position; -1 for all
	partial bool // then write the first lines of the next event
	end     endMode

	applyThenAbort bool // publish: store the event, then cut the connection
}

// fakeHerald is a small in-memory Herald: a fixed list of events with ids
// "1".."n" for /v1/stream, and an idempotent event log for publishing.
type fakeHerald struct {
	t      *testing.T
	srv    *httptest.Server
	events []string // data of event i has id i+1
	done   chan struct{}

	mu        sync.Mutex
	plans     []connPlan // by request number; the last repeats
	requests  []*http.Request
	times     []time.Time
	bodies    []string
	published map[string]int // idempotency key → offset
	offset    int
}

func newFake(t *testing.T, plans ...connPlan) *fakeHerald {
	t.Helper()
	f := &fakeHerald{t: t, plans: plans, done: make(chan struct{}), published: map[string]int{}}
	for i := range 6 {
		f.events = append(f.events, fmt.Sprintf("event-%d", i+1))
	}
	f.events[2] = "multi\nline\r\nevent-3" // exercised through the real encoder
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/stream", f.stream)
	mux.HandleFunc("POST /v1/topics/{topic}/events", f.publish)
	mux.HandleFunc("POST /v1/events", f.batch)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() { close(f.done) }) // runs first: releases hanging handlers
	return f
}

func (f *fakeHerald) URL() string { return f.srv.URL }

// record stores the request and returns its plan.
func (f *fakeHerald) record(r *http.Request, body string) connPlan {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Clone(r.Context()))
	f.times = append(f.times, time.Now())
	f.bodies = append(f.bodies, body)
	if len(f.plans) == 0 {
		return connPlan{send: -1}
	}
	i := min(len(f.requests)-1, len(f.plans)-1)
	return f.plans[i]
}

func (f *fakeHerald) Requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.requests...)
}

func (f *fakeHerald) Times() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times...)
}

func (f *fakeHerald) Bodies() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies...)
}

func writeError(w http.ResponseWriter, p connPlan) {
	if p.retryAfter != "" {
		w.Header().Set("Retry-After", p.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(p.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": p.code, "message": "fake says " + p.code}})
}

func (f *fakeHerald) stream(w http.ResponseWriter, r *http.Request) {
	p := f.record(r, "")
	if p.status != 0 {
		writeError(w, p)
		return
	}
	pos := len(f.events) // new events only
	switch {
	case r.Header.Get("Last-Event-ID") != "":
		pos, _ = strconv.Atoi(r.Header.Get("Last-Event-ID"))
	case r.URL.Query().Get("last_event_id") != "":
		pos, _ = strconv.Atoi(r.URL.Query().Get("last_event_id"))
	case r.URL.Query().Get("from") == "earliest":
		pos = 0
	}
	pos = min(max(pos, 0), len(f.events))

	ctype := "text/event-stream"
	if p.ctype != "" {
		ctype = p.ctype
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := sse.AppendRetry(nil, 10*time.Millisecond)
	if !p.noHello {
		hello, _ := json.Marshal(Hello{Session: "s", Node: "n1", Topics: r.URL.Query()["topic"], Cursor: strconv.Itoa(pos)})
		buf = sse.AppendEvent(buf, strconv.Itoa(pos), EventHello, hello)
	}
	n := len(f.events) - pos
	if p.send >= 0 {
		n = min(n, p.send)
	}
	for i := pos; i < pos+n; i++ {
		buf = sse.AppendEvent(buf, strconv.Itoa(i+1), "update", []byte(f.events[i]))
	}
	if p.partial && pos+n < len(f.events) {
		buf = sse.AppendID(buf, strconv.Itoa(pos+n+1))
		buf = append(buf, "event: update\ndata: half of "...)
	}
	_, _ = w.Write(buf)
	_ = rc.Flush()

	switch p.end {
	case endClose:
		return
	case endAbort:
		panic(http.ErrAbortHandler)
	case endQuiet:
		select {
		case <-r.Context().Done():
		case <-f.done:
		}
	case endHang:
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-f.done:
				return
			case <-tick.C:
				if _, err := w.Write(sse.AppendComment(nil, "")); err != nil {
					return
				}
				_ = rc.Flush()
			}
		}
	}
}

func (f *fakeHerald) publish(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	raw := new(strings.Builder)
	if err := json.NewDecoder(teeReader{r.Body, raw}).Decode(&body); err != nil {
		writeError(w, connPlan{status: 400, code: "bad_json"})
		return
	}
	p := f.record(r, raw.String())
	if p.status != 0 {
		writeError(w, p)
		return
	}
	off, dup := f.apply(r.Header.Get("Idempotency-Key"))
	if p.applyThenAbort {
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"topic": r.PathValue("topic"), "origin": "eu", "epoch": "e1",
		"offset": off, "time": "2025-06-18T10:00:00.123Z", "duplicate": dup,
	})
}

func (f *fakeHerald) apply(key string) (offset int, duplicate bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off, ok := f.published[key]; ok && key != "" {
		return off, true
	}
	f.offset++
	f.published[key] = f.offset
	return f.offset, false
}

func (f *fakeHerald) batch(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Events []struct {
			Topic          string          `json:"topic"`
			Event          string          `json:"event"`
			Data           json.RawMessage `json:"data"`
			IdempotencyKey string          `json:"idempotency_key"`
		} `json:"events"`
	}
	raw := new(strings.Builder)
	if err := json.NewDecoder(teeReader{r.Body, raw}).Decode(&body); err != nil {
		writeError(w, connPlan{status: 400, code: "bad_json"})
		return
	}
	p := f.record(r, raw.String())
	if p.status != 0 {
		writeError(w, p)
		return
	}
	status := http.StatusOK
	results := make([]any, len(body.Events))
	for i, e := range body.Events {
		if e.Topic == "" || strings.HasPrefix(e.Topic, "bad") {
			status = http.StatusMultiStatus
			results[i] = map[string]any{"error": map[string]string{"code": "invalid_topic", "message": "bad topic"}}
			continue
		}
		off, dup := f.apply(e.IdempotencyKey)
		// Offsets as strings and times as Unix ms: the client accepts both.
		results[i] = map[string]any{"topic": e.Topic, "origin": "eu", "epoch": "e1",
			"offset": strconv.Itoa(off), "time": 1750240800123, "duplicate": dup}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
}

type teeReader struct {
	r interface{ Read([]byte) (int, error) }
	w *strings.Builder
}

func (t teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.w.Write(p[:n])
	return n, err
}

// deadURL returns the URL of a port nothing listens on any more.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	_ = l.Close()
	return u
}

// checkNoGoroutineLeak registers, as the test's first cleanup and so its
// last to run, a check that the goroutine count returns to its level at the
// start of the test. It polls: goroutines of closed connections exit
// asynchronously.
func checkNoGoroutineLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutines: %d before, %d after\n%s", before, n, buf)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
