package server_test

// Failure-injection tests over real redis-server processes: a Sentinel
// failover, an RDB rollback, a Redis Cluster, a full Redis outage, and an
// append whose reply is lost on the wire. Every
// test counts events end to end: each acknowledged publish must reach every
// subscriber of its topic exactly once, or fall inside a range that a
// herald.reset received by that subscriber names as lost — and then be
// genuinely lost: the store read after the fault no longer holds it (it was
// above what the surviving replica had). Nothing else is acceptable: no
// silent gap, no duplicate, no reordering, no reset over events the store
// still holds.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/sse"
	"github.com/heraldpush/herald/push/store/redisstore"
	"github.com/heraldpush/herald/push/wire"
)

// newRedisStoreAt returns a store over any Redis URL (single node,
// redis+sentinel://, redis+cluster://), with a fresh key prefix.
func newRedisStoreAt(t testing.TB, rawURL string) push.Store {
	t.Helper()
	opts, err := redisstore.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	s, err := redisstore.New(redisstore.Config{
		Options:   opts,
		Origin:    "local",
		KeyPrefix: fmt.Sprintf("f%d", prefixSeq.Add(1)),
		Logger:    debugLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// debugLogger shows the store's listener warnings (reconnects, resyncs)
// when HERALD_FAILOVER_DEBUG is set; otherwise it discards.
func debugLogger() *slog.Logger {
	if os.Getenv("HERALD_FAILOVER_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return quietLogger()
}

// ---------------------------------------------------------------------------
// Publisher side: every attempt is recorded as acknowledged or failed.

// ack is one publish the server acknowledged with 201.
type ack struct {
	Topic, Epoch, Data string
	Offset             uint64
	Seq                int
}

// ledger records every publish attempt of a test.
type ledger struct {
	mu         sync.Mutex
	acks       []ack
	byData     map[string]int    // data -> index in acks
	failed     map[string]string // data -> why (503 unavailable / transport error)
	unexpected []string          // statuses other than 201 and a clean 503
	n503       int
	nTransport int
}

func newLedger() *ledger {
	return &ledger{byData: map[string]int{}, failed: map[string]string{}}
}

func (l *ledger) snapshot() []ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acks)
}

func (l *ledger) ackCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

func (l *ledger) counts() (acked, n503, transport int, unexpected []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks), l.n503, l.nTransport, slices.Clone(l.unexpected)
}

// pubOutcome is one publish attempt as the HTTP client saw it.
type pubOutcome struct {
	Status     int
	Result     publishResult
	Code       string // error code of a JSON error body
	RetryAfter string
	Body       string
	Err        error // transport error
	Elapsed    time.Duration
}

// tryPublish posts one event without failing the test: the caller judges.
func tryPublish(ctx context.Context, hc *http.Client, base, topic, data string) pubOutcome {
	start := time.Now()
	body, _ := json.Marshal(map[string]any{"data": data})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/topics/"+topic+"/events", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return pubOutcome{Err: err, Elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := pubOutcome{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After"), Body: string(b), Elapsed: time.Since(start)}
	if resp.StatusCode == http.StatusCreated {
		if err := json.Unmarshal(b, &out.Result); err != nil {
			out.Err = fmt.Errorf("201 with undecodable body %q: %w", b, err)
		}
		return out
	}
	var eb struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(b, &eb) == nil {
		out.Code = eb.Error.Code
	}
	return out
}

// cleanUnavailable reports whether o is the documented outage answer: 503,
// JSON code "unavailable", and a positive integer Retry-After.
func (o pubOutcome) cleanUnavailable() bool {
	ra, err := strconv.Atoi(o.RetryAfter)
	return o.Status == http.StatusServiceUnavailable && o.Code == server.CodeUnavailable && err == nil && ra >= 1
}

// publishRecorded publishes data to topic and records the outcome.
func (l *ledger) publishRecorded(ctx context.Context, hc *http.Client, base, topic string, seq int) pubOutcome {
	data := fmt.Sprintf("%s|%d", topic, seq)
	o := tryPublish(ctx, hc, base, topic, data)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case o.Err == nil && o.Status == http.StatusCreated:
		if o.Result.Topic != topic || o.Result.Epoch == "" || o.Result.Offset == 0 || o.Result.Duplicate {
			l.unexpected = append(l.unexpected, fmt.Sprintf("publish %s: malformed 201 result %+v", data, o.Result))
			return o
		}
		l.byData[data] = len(l.acks)
		l.acks = append(l.acks, ack{Topic: topic, Epoch: o.Result.Epoch, Data: data, Offset: o.Result.Offset, Seq: seq})
	case o.Err != nil:
		if ctx.Err() == nil {
			l.nTransport++
		}
		l.failed[data] = "transport: " + o.Err.Error()
	case o.cleanUnavailable():
		l.n503++
		l.failed[data] = "503 unavailable"
	default:
		l.failed[data] = fmt.Sprintf("status %d", o.Status)
		l.unexpected = append(l.unexpected, fmt.Sprintf("publish %s: status %d Retry-After %q body %s", data, o.Status, o.RetryAfter, o.Body))
	}
	return o
}

// ---------------------------------------------------------------------------
// Subscriber side: a reconnecting SSE reader that records everything.

// recvItem is one thing a subscriber received, in arrival order: an event,
// a herald.reset, or an id-bearing herald.hello.
type recvItem struct {
	Reset  *recvReset
	Hello  map[string]uint64 // cursor offsets of an id-bearing hello
	Topic  string            // event's topic (from its data "topic|seq")
	Seq    int
	Data   string
	Offset uint64 // the event's offset, decoded from its cursor id
	Conn   int    // connection number (1-based)
}

type recvReset struct {
	Streams []push.StreamReset
	After   map[string]uint64 // cursor offsets carried by the reset's id
}

// liveSub is a subscriber that resumes with Last-Event-ID on every end of
// stream (as EventSource does), quickly (the test is the client, and it
// picks its own reconnect delay).
type liveSub struct {
	name      string
	topics    []string
	base      string
	hc        *http.Client
	transport string        // "sse" or "ws": the transport of the test that made it (transportOf)
	ready     chan struct{} // closed at the first herald.hello

	mu       sync.Mutex
	drop     context.CancelFunc // ends the current connection
	lastID   string
	items    []recvItem
	connects int      // connections that got a herald.hello
	sheds    int      // 200 responses that closed before a hello
	dialErrs int      // transport errors on connect
	errs     []string // protocol violations
}

func newLiveSub(t testing.TB, name, base string, hc *http.Client, topics ...string) *liveSub {
	return &liveSub{name: name, topics: topics, base: base, hc: hc, transport: transportOf(t), ready: make(chan struct{})}
}

func (s *liveSub) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 20 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

// run reads and reconnects until ctx ends.
func (s *liveSub) run(ctx context.Context) {
	for ctx.Err() == nil {
		s.connectOnce(ctx)
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// cut ends the current connection, as a network drop would; run resumes.
func (s *liveSub) cut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drop != nil {
		s.drop()
	}
}

func (s *liveSub) connectOnce(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	s.mu.Lock()
	last := s.lastID
	s.drop = cancel
	s.mu.Unlock()
	if s.transport == "ws" {
		s.connectWS(ctx, last)
		return
	}
	q := url.Values{"topic": s.topics}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/v1/stream?"+q.Encode(), nil)
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			s.mu.Lock()
			s.dialErrs++
			s.mu.Unlock()
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		s.fail("stream answered %d %s (a browser EventSource would give up for good)", resp.StatusCode, b)
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		s.fail("stream Content-Type %q", ct)
		return
	}
	s.consume(ctx, last, sse.NewDecoder(bufio.NewReader(resp.Body)).Next)
}

// connectWS is connectOnce over GET /v1/ws (ADR 0023): the cursor goes in
// the Last-Event-ID header, each JSON frame is read as the SSE event it
// mirrors, and a refusal (herald.error before any hello, then a close) is
// a shed, as a 200 that ends before a hello is over SSE.
func (s *liveSub) connectWS(ctx context.Context, last string) {
	h := http.Header{}
	if last != "" {
		h.Set("Last-Event-ID", last)
	}
	q := url.Values{"topic": s.topics}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	conn, resp, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(s.base, "http")+"/v1/ws?"+q.Encode(), &websocket.DialOptions{HTTPHeader: h})
	dcancel()
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			s.fail("websocket handshake answered %d (a browser cannot read why)", resp.StatusCode)
			return
		}
		if ctx.Err() == nil {
			s.mu.Lock()
			s.dialErrs++
			s.mu.Unlock()
		}
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	s.consume(ctx, last, func() (sse.Event, error) {
		f, err := readFrame(ctx, conn)
		if err != nil {
			return sse.Event{}, err
		}
		if f.Event == wire.EventError {
			return sse.Event{}, fmt.Errorf("refused: %s", f.Data)
		}
		return sse.Event{ID: f.ID, Type: f.Event, Data: f.Data}, nil
	})
}

// consume reads one connection's events until it ends, checking each
// against the subscriber's cursor and recording it.
func (s *liveSub) consume(ctx context.Context, last string, next func() (sse.Event, error)) {
	conn := 0
	prev := map[string]uint64(nil)
	for {
		ev, err := next()
		if err != nil {
			if conn == 0 && ctx.Err() == nil {
				s.mu.Lock()
				s.sheds++
				s.mu.Unlock()
			}
			return
		}
		switch ev.Type {
		case push.EventHello:
			s.mu.Lock()
			s.connects++
			conn = s.connects
			if ev.ID != "" {
				// The hello resumes exactly where the client was: same
				// offsets (the epochs may be descendants of the client's,
				// ADR 0024).
				if last != "" && !maps.Equal(s.decode(ev.ID), s.decode(last)) {
					s.errs = append(s.errs, fmt.Sprintf("hello id %q on resume, want our cursor's offsets %q", ev.ID, last))
				}
				s.lastID = ev.ID
			}
			s.mu.Unlock()
			if conn == 1 {
				close(s.ready)
			}
			if ev.ID != "" {
				if prev = s.decode(ev.ID); prev == nil {
					s.fail("hello id %q is not a cursor of %v", ev.ID, s.topics)
					return
				}
				s.mu.Lock()
				s.items = append(s.items, recvItem{Hello: prev, Conn: conn})
				s.mu.Unlock()
			}
		case push.EventReset:
			var rd resetEvent
			if err := json.Unmarshal([]byte(ev.Data), &rd); err != nil || ev.ID == "" {
				s.fail("bad reset %+v: %v", ev, err)
				return
			}
			after := s.decode(ev.ID)
			if after == nil {
				s.fail("reset id %q is not a cursor of %v", ev.ID, s.topics)
				return
			}
			s.mu.Lock()
			s.items = append(s.items, recvItem{Reset: &recvReset{Streams: rd.Streams, After: after}, Conn: conn})
			s.lastID = ev.ID
			s.mu.Unlock()
			prev = after
		default:
			cur := s.decode(ev.ID)
			topic, seqStr, ok := strings.Cut(ev.Data, "|")
			seq, err := strconv.Atoi(seqStr)
			if cur == nil || !ok || err != nil || !slices.Contains(s.topics, topic) {
				s.fail("undecodable event %+v", ev)
				return
			}
			// Exactly the event's topic must advance the cursor.
			for tp, off := range cur {
				if tp != topic && prev != nil && off != prev[tp] {
					s.fail("event %q moved the cursor of %s (%d -> %d)", ev.Data, tp, prev[tp], off)
				}
			}
			s.mu.Lock()
			s.items = append(s.items, recvItem{Topic: topic, Seq: seq, Data: ev.Data, Offset: cur[topic], Conn: conn})
			s.lastID = ev.ID
			s.mu.Unlock()
			prev = cur
		}
	}
}

// decode returns the per-topic offsets of a cursor id, or nil.
func (s *liveSub) decode(id string) map[string]uint64 {
	p, err := push.ParseCursor(id, s.topics, []string{"local"})
	if err != nil {
		return nil
	}
	out := make(map[string]uint64, p.Len())
	for i := range p.Len() {
		out[p.Key(i).Topic] = p.Offset(i)
	}
	return out
}

func (s *liveSub) snapshot() []recvItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.items)
}

// ---------------------------------------------------------------------------
// The delivery check.

// deliveryReport is one subscriber's account against the ledger.
type deliveryReport struct {
	delivered     int // events received that were acknowledged
	unackedSeen   int // events received whose publish failed (ambiguous failure: allowed once)
	covered       int // acknowledged events not received but named by a reset, and lost
	resets        int
	overReported  []string // named lost by a reset, yet the store still holds them
	silent        []string // acknowledged, not received, not named by any reset
	newEpochSkips []string // subset of silent: acked in the epoch a reset moved the subscriber to
	problems      []string // duplicates, phantoms, offset mismatches, reordering
}

// coveredBy reports whether a reset the subscriber received names a as lost.
// epoch_changed covers offsets >= lost_from (up to lost_to when set) of an
// epoch other than the one the reset moves to; trimmed and ahead cover their
// range in the current epoch.
func coveredBy(a ack, items []recvItem) bool {
	for _, it := range items {
		if it.Reset == nil {
			continue
		}
		for _, sr := range it.Reset.Streams {
			if sr.Topic != a.Topic || a.Offset < sr.LostFrom || (sr.LostTo != 0 && a.Offset > sr.LostTo) {
				continue
			}
			switch sr.Reason {
			case push.ResetEpochChanged:
				if a.Epoch != sr.Epoch {
					return true
				}
			case push.ResetTrimmed, push.ResetAhead:
				if a.Epoch == sr.Epoch {
					return true
				}
			}
		}
	}
	return false
}

// inResetEpoch reports whether a reset moved this subscriber into a's epoch:
// a was acknowledged in the lineage the subscriber was told to continue in.
func inResetEpoch(a ack, items []recvItem) bool {
	for _, it := range items {
		if it.Reset == nil {
			continue
		}
		for _, sr := range it.Reset.Streams {
			if sr.Topic == a.Topic && sr.Epoch == a.Epoch {
				return true
			}
		}
	}
	return false
}

// pending counts the acknowledged events of s's topics that s has neither
// received nor been told it lost.
func (s *liveSub) pending(acks []ack) int {
	items := s.snapshot()
	got := make(map[string]bool, len(items))
	for _, it := range items {
		if it.Reset == nil && it.Hello == nil {
			got[it.Data] = true
		}
	}
	n := 0
	for _, a := range acks {
		if slices.Contains(s.topics, a.Topic) && !got[a.Data] && !coveredBy(a, items) {
			n++
		}
	}
	return n
}

// check compares s's receipts with the ledger; lost holds the data of the
// acknowledged events the store no longer holds (lostFromStore).
func (s *liveSub) check(l *ledger, lost map[string]bool) deliveryReport {
	var r deliveryReport
	items := s.snapshot()
	l.mu.Lock()
	acks := slices.Clone(l.acks)
	byData := make(map[string]int, len(l.byData))
	for k, v := range l.byData {
		byData[k] = v
	}
	failed := make(map[string]string, len(l.failed))
	for k, v := range l.failed {
		failed[k] = v
	}
	l.mu.Unlock()

	seen := map[string]int{}
	lastSeq := map[string]int{}
	// lastOff is the subscriber's position per topic as the server stated
	// it (hello id, reset id, event id). Between resets every event must be
	// the next offset: per stream, history has no holes.
	lastOff := map[string]uint64{}
	for _, it := range items {
		if it.Hello != nil {
			maps.Copy(lastOff, it.Hello)
			continue
		}
		if it.Reset != nil {
			r.resets++
			for _, sr := range it.Reset.Streams {
				if sr.Reason != push.ResetEpochChanged {
					r.problems = append(r.problems, fmt.Sprintf("unexpected reset reason %q for %s", sr.Reason, sr.Topic))
				}
				// The reset's id is documented as the cursor after the reset,
				// and continue_from as the next offset the client receives.
				lastOff[sr.Topic] = it.Reset.After[sr.Topic]
				if sr.ContinueFrom != it.Reset.After[sr.Topic]+1 {
					r.problems = append(r.problems, fmt.Sprintf("reset of %s says continue_from %d but its id puts the cursor at %d",
						sr.Topic, sr.ContinueFrom, it.Reset.After[sr.Topic]))
				}
			}
			continue
		}
		seen[it.Data]++
		if seen[it.Data] == 2 {
			r.problems = append(r.problems, fmt.Sprintf("duplicate %q (conn %d)", it.Data, it.Conn))
		}
		if prev, ok := lastSeq[it.Topic]; ok && it.Seq <= prev {
			r.problems = append(r.problems, fmt.Sprintf("reordered on %s: seq %d after %d", it.Topic, it.Seq, prev))
		}
		lastSeq[it.Topic] = it.Seq
		if prev, ok := lastOff[it.Topic]; ok && it.Offset != prev+1 {
			what := "gap"
			if it.Offset <= prev {
				what = "offset went back"
			}
			r.problems = append(r.problems, fmt.Sprintf("%s on %s: %q at offset %d follows position %d (as stated by the previous hello, reset or event id; conn %d)",
				what, it.Topic, it.Data, it.Offset, prev, it.Conn))
		}
		lastOff[it.Topic] = it.Offset
		if i, ok := byData[it.Data]; ok {
			r.delivered++
			if a := acks[i]; a.Offset != it.Offset {
				r.problems = append(r.problems, fmt.Sprintf("%q acknowledged at offset %d, delivered at %d", it.Data, a.Offset, it.Offset))
			}
		} else if _, ok := failed[it.Data]; ok {
			r.unackedSeen++
		} else {
			r.problems = append(r.problems, fmt.Sprintf("phantom event %q: never published", it.Data))
		}
	}
	for _, a := range acks {
		if !slices.Contains(s.topics, a.Topic) || seen[a.Data] > 0 {
			continue
		}
		if coveredBy(a, items) {
			if lost[a.Data] {
				r.covered++
			} else {
				r.overReported = append(r.overReported, fmt.Sprintf("%s (epoch %s offset %d)", a.Data, a.Epoch, a.Offset))
			}
			continue
		}
		desc := fmt.Sprintf("%s (epoch %s offset %d)", a.Data, a.Epoch, a.Offset)
		r.silent = append(r.silent, desc)
		if inResetEpoch(a, items) {
			r.newEpochSkips = append(r.newEpochSkips, desc)
		}
	}
	return r
}

// lostFromStore returns the data of the acknowledged events that st, read
// after the fault, no longer holds at their offset (absent, or another
// event there): what the fault genuinely lost, the only events a reset may
// name as lost.
func lostFromStore(t *testing.T, st push.Store, acks []ack) map[string]bool {
	t.Helper()
	held := map[string]map[uint64]string{} // topic → offset → data
	for _, a := range acks {
		if held[a.Topic] != nil {
			continue
		}
		held[a.Topic] = map[uint64]string{}
		for after := uint64(0); ; {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			evs, _, err := st.Read(ctx, a.Topic, after, 1000)
			cancel()
			if err != nil {
				t.Fatalf("read %s after the fault: %v", a.Topic, err)
			}
			if len(evs) == 0 {
				break
			}
			for _, ev := range evs {
				held[a.Topic][ev.Offset] = string(ev.Data)
			}
			after = evs[len(evs)-1].Offset
		}
	}
	lost := map[string]bool{}
	for _, a := range acks {
		if held[a.Topic][a.Offset] != a.Data {
			lost[a.Data] = true
		}
	}
	return lost
}

// assertDelivery checks every subscriber and fails the test on any silent
// loss, reset over an event not in lost (see lostFromStore), duplicate,
// reordering or protocol error. It returns the totals: covered counts the
// (subscriber, event) pairs a reset reported lost, each in lost.
func assertDelivery(t *testing.T, subs []*liveSub, l *ledger, lost map[string]bool) (delivered, covered, resets int) {
	t.Helper()
	for _, s := range subs {
		r := s.check(l, lost)
		s.mu.Lock()
		errs, connects, sheds, dialErrs := slices.Clone(s.errs), s.connects, s.sheds, s.dialErrs
		s.mu.Unlock()
		for _, e := range errs {
			t.Errorf("%s %v: %s", s.name, s.topics, e)
		}
		for _, p := range head(r.problems, 10) {
			t.Errorf("%s %v: %s", s.name, s.topics, p)
		}
		if len(r.silent) > 0 {
			t.Errorf("%s %v: SILENT LOSS of %d acknowledged events (not received, not named by any herald.reset); first: %v",
				s.name, s.topics, len(r.silent), head(r.silent, 5))
		}
		if len(r.overReported) > 0 {
			t.Errorf("%s %v: %d acknowledged events named lost by a herald.reset, yet the store still holds them (the client could have had them); first: %v",
				s.name, s.topics, len(r.overReported), head(r.overReported, 5))
		}
		if len(r.newEpochSkips) > 0 {
			t.Errorf("%s %v: %d of them were acknowledged in the NEW epoch (the one a reset moved the subscriber to) and are in Redis, yet were skipped; first: %v",
				s.name, s.topics, len(r.newEpochSkips), head(r.newEpochSkips, 5))
		}
		t.Logf("%s %v: delivered %d, covered by resets %d, unacknowledged-but-delivered %d, resets %d, connections %d, sheds %d, dial errors %d",
			s.name, s.topics, r.delivered, r.covered, r.unackedSeen, r.resets, connects, sheds, dialErrs)
		delivered += r.delivered
		covered += r.covered
		resets += r.resets
	}
	return delivered, covered, resets
}

func head(s []string, n int) []string { return s[:min(len(s), n)] }

// nodeReady reports whether the node's /readyz answers 200 (store reachable).
func nodeReady(n *testNode) bool {
	resp, err := http.Get(n.URL + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// startSubs runs subs until the test ends and waits for their first hello.
func startSubs(t *testing.T, subs []*liveSub) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() { defer wg.Done(); s.run(ctx) }()
	}
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for _, s := range subs {
		select {
		case <-s.ready:
		case <-deadline.C:
			t.Fatalf("%s did not get its herald.hello", s.name)
		}
	}
	return stop
}

// awaitDelivery polls until no subscriber has pending events.
func awaitDelivery(subs []*liveSub, l *ledger, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		acks := l.snapshot()
		done := true
		for _, s := range subs {
			if s.pending(acks) > 0 {
				done = false
				break
			}
		}
		if done {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func streamClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
}

// ---------------------------------------------------------------------------
// 1. Sentinel failover.

func TestSentinelFailoverNoSilentLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel topology and kills its primary")
	}
	forTransports(t, testSentinelFailoverNoSilentLoss)
}

func testSentinelFailoverNoSilentLoss(t *testing.T) {
	set := redistest.StartSentinel(t)
	st := newRedisStoreAt(t, set.URL())
	n := startNode(t, st, nil)

	topics := []string{"fo0", "fo1", "fo2", "fo3"}
	hc := streamClient()
	defer hc.CloseIdleConnections()
	subs := []*liveSub{
		newLiveSub(t, "single-0", n.URL, hc, "fo0"),
		newLiveSub(t, "single-1", n.URL, hc, "fo1"),
		newLiveSub(t, "single-3", n.URL, hc, "fo3"),
		newLiveSub(t, "multi-012", n.URL, hc, "fo0", "fo1", "fo2"),
		newLiveSub(t, "multi-123", n.URL, hc, "fo1", "fo2", "fo3"),
		newLiveSub(t, "multi-023", n.URL, hc, "fo0", "fo2", "fo3"),
	}
	stopSubs := startSubs(t, subs)

	// One publisher, sequential: per topic, ack order is seq order.
	led := newLedger()
	pc := &http.Client{Timeout: 10 * time.Second}
	pctx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for seq := 1; pctx.Err() == nil; seq++ {
			led.publishRecorded(pctx, pc, n.URL, topics[seq%len(topics)], seq)
		}
	}()
	defer func() { stopPub(); <-pubDone }()

	waitFor(t, 15*time.Second, "150 acknowledged publishes before the kill", func() bool { return led.ackCount() >= 150 })
	killedAt := time.Now()
	ackedBefore := led.ackCount()
	old := set.KillPrimary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	newPrimary, err := set.WaitFailover(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	failoverAt := time.Now()
	failoverTook := failoverAt.Sub(killedAt)
	// Two subscribers lose their connection now and resume with their
	// cursor (the resume path); the others stay connected (the live path).
	subs[0].cut()
	subs[3].cut()
	// Keep publishing on the new primary for a while: at least 150 acks and
	// 3 s, long enough for every component to have reconnected.
	waitFor(t, 20*time.Second, "150 acknowledged publishes and 3s after the failover", func() bool {
		return led.ackCount() >= ackedBefore+150 && time.Since(failoverAt) >= 3*time.Second
	})
	stopPub()
	<-pubDone

	ok := awaitDelivery(subs, led, 12*time.Second)
	stopSubs()
	acked, n503, transport, unexpected := led.counts()
	for _, u := range head(unexpected, 10) {
		t.Errorf("publisher: %s (only 201, a clean 503 unavailable, or a transport error are acceptable)", u)
	}
	epochs := map[string]int{} // acks per epoch
	topicEpochs := map[string]map[string]bool{}
	for _, a := range led.snapshot() {
		epochs[a.Epoch]++
		if topicEpochs[a.Topic] == nil {
			topicEpochs[a.Topic] = map[string]bool{}
		}
		topicEpochs[a.Topic][a.Epoch] = true
	}
	for _, tp := range topics {
		if len(topicEpochs[tp]) != 2 {
			t.Errorf("topic %s acknowledged in %d epochs, want 2 (one before, one after the failover)", tp, len(topicEpochs[tp]))
		}
	}
	if !ok {
		t.Errorf("subscribers did not converge within the deadline")
	}
	// What the failover lost: events acknowledged by the old primary that
	// the promoted replica never got (the replication lag at the kill).
	lost := lostFromStore(t, st, led.snapshot())
	delivered, covered, resets := assertDelivery(t, subs, led, lost)
	t.Logf("failover %s -> %s in %s; acked %d (%d before the kill), failed %d (503: %d, transport: %d), epochs %v; delivered %d; reported lost by resets %d (subscriber × event), all among the %d events the failover lost; resets %d",
		old, newPrimary, failoverTook.Round(time.Millisecond), acked, ackedBefore, n503+transport, n503, transport, epochs, delivered, covered, len(lost), resets)
}

// ---------------------------------------------------------------------------
// 2. RDB rollback: the offset counter goes back, offsets are reused under a
// new epoch, and a client holding an old cursor is told.

func TestRDBRollbackResetsNoReuse(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts redis-server")
	}
	forTransports(t, testRDBRollbackResetsNoReuse)
}

func testRDBRollbackResetsNoReuse(t *testing.T) {
	rs := redistest.StartServer(t) // --save '': only an explicit SAVE writes dump.rdb
	n := startNode(t, newRedisStoreAt(t, rs.URL()), nil)
	const k, N, M = 5, 10, 8 // SAVE after k; N before the crash; M after (k+M > N)
	topics := []string{"keep", "rb"}

	s := n.openStream(t, topics, "", nil)
	s.next(wait) // hello
	rc := rs.Client(t)
	var lastID string
	var oldEpoch string
	for i := 1; i <= 3; i++ {
		n.publish("keep", "", fmt.Sprintf("keep-%d", i))
		if ev := s.next(wait); ev.Data != fmt.Sprintf("keep-%d", i) {
			t.Fatalf("keep event %d: %+v", i, ev)
		}
	}
	for i := 1; i <= N; i++ {
		res := n.publish("rb", "", fmt.Sprintf("old-%d", i))
		if res.Offset != uint64(i) {
			t.Fatalf("old-%d at offset %d", i, res.Offset)
		}
		oldEpoch = res.Epoch
		ev := s.next(wait)
		if ev.Data != fmt.Sprintf("old-%d", i) || offsets(t, ev.ID, topics)["rb"] != uint64(i) {
			t.Fatalf("event %d: %+v", i, ev)
		}
		lastID = ev.ID
		if i == k {
			if err := rc.Save(context.Background()).Err(); err != nil {
				t.Fatalf("SAVE: %v", err)
			}
		}
	}
	s.Close()

	rs.Kill() // crash: events k+1..N of rb were acknowledged, never saved
	rs.Restart(t)
	waitFor(t, 10*time.Second, "node ready after the restart", func() bool { return nodeReady(n) })
	// Nothing is written in a new epoch yet: the stream reads as the
	// snapshot left it.
	if info := topicInfo(t, n, "rb"); info.Last != k || info.Epoch != oldEpoch {
		t.Fatalf("after the rollback: epoch %s last %d, want the snapshot's %s at %d", info.Epoch, info.Last, oldEpoch, k)
	}
	var newEpoch string
	var newData []string
	for i := 1; i <= M; i++ {
		d := fmt.Sprintf("new-%d", i)
		res := n.publish("rb", "", d)
		if i == 1 {
			newEpoch = res.Epoch
		}
		if res.Epoch != newEpoch || res.Epoch == oldEpoch || res.Offset != uint64(k+i) {
			t.Fatalf("%s: epoch %s offset %d, want a new epoch (not %s) at offset %d", d, res.Epoch, res.Offset, oldEpoch, k+i)
		}
		newData = append(newData, d)
	}
	info := topicInfo(t, n, "rb")
	if info.Epoch != newEpoch || info.Last != k+M {
		t.Fatalf("GET /v1/topics/rb: epoch %s last %d, want epoch %s last %d", info.Epoch, info.Last, newEpoch, k+M)
	}
	n.publish("keep", "", "keep-4") // keep's new epoch forks at 3: nothing of it was lost

	// The client resumes with its cursor at N of the old epoch of rb and 3
	// of keep.
	r := n.openStream(t, topics, lastID, nil)
	hello := r.next(wait)
	var hd helloEvent
	decodeJSON(t, hello.Data, &hd)
	if hello.Type != push.EventHello || !hd.Resumed || hello.ID != "" {
		t.Fatalf("hello %+v %+v: want a resumed hello without id (a reset follows)", hello, hd)
	}
	reset := r.next(wait)
	if reset.Type != push.EventReset {
		t.Fatalf("after the rollback the first event is %+v (%q): want herald.reset, not a silent replay of reused offsets", reset.Type, reset.Data)
	}
	var rd resetEvent
	decodeJSON(t, reset.Data, &rd)
	// Exactly rb, exactly the offsets the client saw that no longer exist.
	if len(rd.Streams) != 1 || rd.Streams[0].Topic != "rb" || rd.Streams[0].Reason != push.ResetEpochChanged ||
		rd.Streams[0].Epoch != newEpoch || rd.Streams[0].LostFrom != k+1 || rd.Streams[0].LostTo != N || rd.Streams[0].ContinueFrom != k+1 {
		t.Fatalf("reset %+v: want only rb, epoch_changed into %s, lost %d..%d, continue_from %d", rd, newEpoch, k+1, N, k+1)
	}
	if resetAt := offsets(t, reset.ID, topics)["rb"]; resetAt != k {
		t.Errorf("reset id cursor at %d of rb, want %d (continue_from-1)", resetAt, k)
	}

	// Then the new lineage in order, keep-4, and live.
	n.publish("rb", "", "live-1")
	var between []string
	for {
		ev := r.next(wait)
		if ev.Type == push.EventReset {
			t.Fatalf("second reset %q", ev.Data)
		}
		if ev.Data == "live-1" {
			if got := offsets(t, ev.ID, topics)["rb"]; got != k+M+1 {
				t.Errorf("live-1 delivered at offset %d, want %d", got, k+M+1)
			}
			break
		}
		if strings.HasPrefix(ev.Data, "old-") || (strings.HasPrefix(ev.Data, "keep-") && ev.Data != "keep-4") {
			t.Fatalf("event %q replayed", ev.Data)
		}
		if ev.Data != "keep-4" {
			between = append(between, ev.Data)
		}
	}
	r.noEvent(200 * time.Millisecond)
	if !slices.Equal(between, newData) {
		t.Errorf("after the rollback the client got %v of the new epoch, want %v in order", between, newData)
	}
	t.Logf("rollback: old epoch %s (N=%d, saved at %d) -> new epoch %s; reset lost %d..%d continue %d; new events delivered %d of %d; keep not reset",
		oldEpoch, N, k, newEpoch, rd.Streams[0].LostFrom, rd.Streams[0].LostTo, rd.Streams[0].ContinueFrom, len(between), M)
}

// ---------------------------------------------------------------------------
// 3. Redis Cluster.

// batchAck is one acknowledged event of a batch.
type batchAck struct {
	Data   string
	Offset uint64
}

func TestStreamOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	cl := redistest.StartCluster(t, 3)
	n := startNode(t, newRedisStoreAt(t, cl.URL()), nil)

	const nTopics, nEvents, batch = 20, 2000, 100
	topics := make([]string, nTopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("cl-%d", i)
	}
	multiTopics := []string{topics[0], topics[5], topics[11], topics[17]}
	singleTopics := []string{topics[0], topics[5], topics[11], topics[17], topics[3], topics[19]}

	multi := n.openStream(t, multiTopics, "", nil)
	multi.next(wait)
	singles := make([]*stream, len(singleTopics))
	for i, tp := range singleTopics {
		singles[i] = n.openStream(t, []string{tp}, "", nil)
		singles[i].next(wait)
	}

	rng := rand.New(rand.NewPCG(3, 3))
	expected := map[string][]batchAck{}
	hc := &http.Client{Timeout: 30 * time.Second}
	for sent := 0; sent < nEvents; sent += batch {
		var items []map[string]any
		var want []string
		for j := range batch {
			tp := topics[rng.IntN(nTopics)]
			d := fmt.Sprintf("%s|%d", tp, sent+j)
			items = append(items, map[string]any{"topic": tp, "data": d})
			want = append(want, d)
		}
		body, _ := json.Marshal(map[string]any{"events": items})
		resp, err := hc.Post(n.URL+"/v1/events", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Results []struct {
				Topic  string                          `json:"topic"`
				Offset uint64                          `json:"offset"`
				Error  *struct{ Code, Message string } `json:"error"`
			} `json:"results"`
		}
		err = jsonDecode(resp, &out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(out.Results) != batch {
			t.Fatalf("batch at %d: status %d, %v, %d results", sent, resp.StatusCode, err, len(out.Results))
		}
		for j, r := range out.Results {
			tp := items[j]["topic"].(string)
			if r.Error != nil || r.Topic != tp {
				t.Fatalf("batch item %s: %+v", want[j], r)
			}
			if prev := expected[tp]; r.Offset != uint64(len(prev)+1) {
				t.Fatalf("%s acknowledged at offset %d, want %d (contiguous per topic)", want[j], r.Offset, len(prev)+1)
			}
			expected[tp] = append(expected[tp], batchAck{Data: want[j], Offset: r.Offset})
		}
	}

	// Keys are spread over every master.
	var spread []int64
	for _, node := range cl.Nodes() {
		size, err := node.Client(t).DBSize(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		spread = append(spread, size)
		if size == 0 {
			t.Errorf("master %s holds no keys: topics not spread over slots (%v)", node.Addr(), spread)
		}
	}

	// readExact reads want events from s and checks them per topic.
	readExact := func(name string, s *stream, tps []string, from map[string]uint64) []sse.Event {
		t.Helper()
		total := 0
		for _, tp := range tps {
			total += len(expected[tp]) - int(from[tp])
		}
		next := map[string]uint64{}
		for _, tp := range tps {
			next[tp] = from[tp] + 1
		}
		var evs []sse.Event
		for range total {
			ev := s.next(10 * time.Second)
			tp, _, _ := strings.Cut(ev.Data, "|")
			if !slices.Contains(tps, tp) {
				t.Fatalf("%s: foreign event %+v", name, ev)
			}
			off := offsets(t, ev.ID, tps)
			want := expected[tp][next[tp]-1]
			if ev.Data != want.Data || off[tp] != want.Offset {
				t.Fatalf("%s: got %q at offset %d, want %q at %d (in order, exactly once)", name, ev.Data, off[tp], want.Data, want.Offset)
			}
			next[tp]++
			evs = append(evs, ev)
		}
		s.noEvent(200 * time.Millisecond)
		return evs
	}
	zero := map[string]uint64{}
	got := readExact("multi", multi, multiTopics, zero)
	for i, s := range singles {
		readExact("single "+singleTopics[i], s, []string{singleTopics[i]}, zero)
	}

	// Resume mid-way with Last-Event-ID: exactly the rest, per topic in order.
	cut := got[len(got)/3]
	multi.Close()
	from := offsets(t, cut.ID, multiTopics)
	r := n.openStream(t, multiTopics, cut.ID, nil)
	hello := r.next(wait)
	var hd helloEvent
	decodeJSON(t, hello.Data, &hd)
	if hello.Type != push.EventHello || hello.ID != cut.ID || !hd.Resumed {
		t.Fatalf("resume hello %+v %+v", hello, hd)
	}
	replayed := readExact("resumed multi", r, multiTopics, from)
	// And live continues on every topic of the resumed stream.
	for _, tp := range multiTopics {
		d := fmt.Sprintf("%s|%d", tp, nEvents+1)
		res := n.publish(tp, "", d)
		expected[tp] = append(expected[tp], batchAck{Data: d, Offset: res.Offset})
	}
	last := map[string]uint64{}
	for _, tp := range multiTopics {
		last[tp] = uint64(len(expected[tp]) - 1)
	}
	live := readExact("resumed multi (live)", r, multiTopics, last)
	perTopic := map[string]int{}
	for _, tp := range topics {
		perTopic[tp] = len(expected[tp])
	}
	t.Logf("cluster: %d events over %d topics via %d batches, keys per master %v; multi got %d, resumed at %v and replayed %d, then %d live",
		nEvents, nTopics, nEvents/batch, spread, len(got), from, len(replayed), len(live))
}

// ---------------------------------------------------------------------------
// 4. Redis outage under a running node.

func TestRedisDownStreamsShedPublishes503(t *testing.T) {
	if testing.Short() {
		t.Skip("kills redis-server")
	}
	forTransports(t, testRedisDownStreamsShedPublishes503)
}

func testRedisDownStreamsShedPublishes503(t *testing.T) {
	// AOF with fsync always: no acknowledged event is lost by the kill, so
	// only the replication id (and so the epoch) changes.
	rs := redistest.StartServer(t, redistest.WithAppendOnly(true), redistest.WithArgs("--appendfsync", "always"))
	st := newRedisStoreAt(t, rs.URL())
	n := startNode(t, st, nil)
	topics := []string{"out-a", "out-b"}
	hc := streamClient()
	defer hc.CloseIdleConnections()
	// Both subscribers connect before the outage. "connected" keeps its
	// stream open throughout (the live path); "away" goes offline 6 events
	// before the outage and resumes with its cursor only after Redis is back
	// and new events were published (the resume path), like a phone that
	// slept: it is behind the new epoch's start, and must still get the 6
	// events Redis kept (not a reset over them).
	sub := newLiveSub(t, "connected", n.URL, hc, topics...)
	away := newLiveSub(t, "away", n.URL, hc, topics...)
	subs := []*liveSub{sub, away}
	stopSubs := startSubs(t, []*liveSub{sub})
	stopAway := startSubs(t, []*liveSub{away})

	led := newLedger()
	pc := &http.Client{Timeout: 10 * time.Second}
	ctx := context.Background()
	seq := 0
	publishSome := func(count int) {
		for range count {
			seq++
			o := led.publishRecorded(ctx, pc, n.URL, topics[seq%2], seq)
			if o.Status != http.StatusCreated {
				t.Fatalf("publish %d with Redis up: %d %v %s", seq, o.Status, o.Err, o.Body)
			}
		}
	}
	publishSome(10)
	if !awaitDelivery(subs, led, 10*time.Second) {
		t.Fatal("events before the outage not delivered")
	}
	stopAway()
	publishSome(6)
	if !awaitDelivery([]*liveSub{sub}, led, 10*time.Second) {
		t.Fatal("events before the outage not delivered to the connected subscriber")
	}
	oldEpoch := topicInfo(t, n, "out-a").Epoch
	// The node's Pub/Sub connection dies and cannot come back (maxclients 1;
	// the pooled connections stay), and 4 more events are appended: Redis
	// keeps them (AOF always), but no node announces them before the crash.
	// "connected" is then behind the new epoch's start while connected (the
	// live path) and must still get them.
	rc := rs.Client(t)
	if err := rc.ConfigSet(ctx, "maxclients", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		seq++
		topic := topics[seq%2]
		data := fmt.Sprintf("%s|%d", topic, seq)
		res, err := st.Append(ctx, topic, []push.Draft{{Type: "message", Data: []byte(data)}})
		if err != nil {
			t.Fatalf("append %s with the listener cut off: %v", data, err)
		}
		led.mu.Lock()
		led.byData[data] = len(led.acks)
		led.acks = append(led.acks, ack{Topic: topic, Epoch: res[0].Epoch, Data: data, Offset: res[0].Offset, Seq: seq})
		led.mu.Unlock()
	}

	rs.Kill()
	// Publishes fail fast and clearly.
	for i := range 3 {
		seq++
		o := led.publishRecorded(ctx, pc, n.URL, topics[seq%2], seq)
		if !o.cleanUnavailable() || o.Elapsed > 3*time.Second {
			t.Errorf("publish %d during the outage: status %d code %q Retry-After %q err %v in %s; want 503 unavailable with Retry-After within 3s",
				i, o.Status, o.Code, o.RetryAfter, o.Err, o.Elapsed)
		}
		t.Logf("publish during outage: %d %s Retry-After %s in %s", o.Status, o.Code, o.RetryAfter, o.Elapsed.Round(time.Millisecond))
	}
	// Readiness reports the outage.
	if resp, err := http.Get(n.URL + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz during the outage: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// A new stream is shed the browser-safe way (SSE: 200, retry:, close;
	// WebSocket: herald.error, close 4503 with retry_ms).
	start := time.Now()
	shed, code, body := n.tryStream([]string{"out-a"}, "", nil)
	if code != http.StatusOK {
		t.Fatalf("stream during the outage: %d %s; want a browser-safe shed", code, body)
	}
	retry := shed.shedOnly(3 * time.Second)
	t.Logf("stream during outage shed on %s with retry %s in %s", n.transport, retry, time.Since(start).Round(time.Millisecond))

	// Redis comes back on the same port (AOF reload, new replication id).
	rs.Restart(t)
	restartedAt := time.Now()
	// The publisher retries at once, as a real one would. Whether its first
	// events land before or after the node's Pub/Sub connection is back
	// depends on two independent reconnect backoffs; either way the
	// subscriber must get them (the node learns of them on resync).
	var firstOK time.Duration
	for {
		seq++
		o := led.publishRecorded(ctx, pc, n.URL, topics[seq%2], seq)
		if o.Status == http.StatusCreated {
			firstOK = time.Since(restartedAt)
			break
		}
		if !o.cleanUnavailable() || time.Since(restartedAt) > 10*time.Second {
			t.Fatalf("publish after Redis came back: %d %s %v (%s after the restart)", o.Status, o.Body, o.Err, time.Since(restartedAt))
		}
	}
	publishSome(9) // publishes work again
	newEpoch := topicInfo(t, n, "out-a").Epoch
	if newEpoch == oldEpoch {
		t.Errorf("epoch %s unchanged across the restart", newEpoch)
	}
	stopAway = startSubs(t, []*liveSub{away})
	ok1 := awaitDelivery(subs, led, 8*time.Second)
	publishSome(10) // and later
	ok2 := awaitDelivery(subs, led, 8*time.Second)
	stopSubs()
	stopAway()
	if !ok1 || !ok2 {
		t.Errorf("pre-outage subscribers did not converge (right after the restart: %v, later: %v)", ok1, ok2)
	}
	acked, n503, transport, unexpected := led.counts()
	for _, u := range unexpected {
		t.Errorf("publisher: %s", u)
	}
	// AOF always: the restart loses nothing, so no reset may name anything.
	lost := lostFromStore(t, st, led.snapshot())
	if len(lost) != 0 {
		t.Errorf("the restart with AOF always lost %d acknowledged events: %v", len(lost), lost)
	}
	delivered, covered, resets := assertDelivery(t, subs, led, lost)
	// The new epoch forked at the head the restart found, which every
	// subscriber's position is at or before: nothing to reset (ADR 0024).
	if resets != 0 {
		t.Errorf("a restart that lost nothing reset subscribers %d times", resets)
	}
	t.Logf("outage: epoch %s -> %s; first publish OK %s after restart; acked %d, failed %d (503: %d, transport: %d); delivered %d, covered %d, resets %d",
		oldEpoch, newEpoch, firstOK.Round(time.Millisecond), acked, n503+transport, n503, transport, delivered, covered, resets)
}

// ---------------------------------------------------------------------------
// 5. A lost reply: Redis ran the append, the connection died before the reply
// reached the node. Whatever the node answers, the event must not be
// appended twice.

// replyDropper is a loopback TCP proxy in front of Redis that, when armed,
// lets the next append script (EVALSHA, not the read-only EVALSHA_RO) reach
// Redis and then cuts that connection instead of passing the reply back.
type replyDropper struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	drops  atomic.Int32
	wg     sync.WaitGroup
}

func startReplyDropper(t *testing.T, target string) *replyDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyDropper{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *replyDropper) Addr() string { return p.ln.Addr().String() }

func (p *replyDropper) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		var victim atomic.Bool
		p.wg.Add(2)
		go func() { // client -> redis
			defer p.wg.Done()
			defer s.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if p.armed.Load() && bytes.Contains(bytes.ToLower(buf[:n]), []byte("$7\r\nevalsha\r\n")) && p.armed.CompareAndSwap(true, false) {
						victim.Store(true)
					}
					if _, err := s.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() { // redis -> client
			defer p.wg.Done()
			defer c.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && victim.Load() {
					p.drops.Add(1)
					s.Close() // the reply is lost with the connection
					return
				}
				if n > 0 {
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func TestPublishLostReplyNoDuplicate(t *testing.T) {
	rs := redistest.StartServer(t)
	proxy := startReplyDropper(t, rs.Addr())
	n := startNode(t, newRedisStoreAt(t, "redis://"+proxy.Addr()), nil)
	s := n.openStream(t, []string{"lr"}, "", nil)
	s.next(wait)
	n.publish("lr", "", "before")
	if ev := s.next(wait); ev.Data != "before" {
		t.Fatalf("got %q", ev.Data)
	}

	proxy.armed.Store(true)
	o := tryPublish(context.Background(), http.DefaultClient, n.URL, "lr", "lost-reply")
	if proxy.drops.Load() != 1 {
		t.Fatalf("the proxy dropped %d replies, want 1", proxy.drops.Load())
	}
	if o.Status != http.StatusCreated && !o.cleanUnavailable() {
		t.Errorf("publish with a lost reply: %d %s %v; want 201 or a clean 503", o.Status, o.Body, o.Err)
	}
	n.publish("lr", "", "after")
	var got []string
	for {
		ev := s.next(wait)
		got = append(got, fmt.Sprintf("%s@%d", ev.Data, offsets(t, ev.ID, []string{"lr"})["lr"]))
		if ev.Data == "after" {
			break
		}
	}
	copies := 0
	for _, g := range got {
		if strings.HasPrefix(g, "lost-reply@") {
			copies++
		}
	}
	t.Logf("publish with a lost reply answered %d (offset %d); the subscriber then got %v", o.Status, o.Result.Offset, got)
	if copies != 1 {
		t.Errorf("the event whose reply was lost was appended %d times (%v): a retried append script must not write twice", copies, got)
	}
}
