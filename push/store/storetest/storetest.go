package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
)

// Config carries the knobs the suite needs from a store. A factory maps it
// onto its own configuration and leaves everything else at its defaults.
type Config struct {
	// Retention is the policy the store must apply.
	Retention push.RetentionPolicy
	// IdempotencyWindow is how long an idempotency key is remembered; zero
	// means the store's default.
	IdempotencyWindow time.Duration
}

// Factory returns a new, empty store for one subtest. It registers the
// store's Close with t.Cleanup; the suite may call Close earlier itself.
type Factory func(t *testing.T, cfg Config) push.Store

// Timeouts for eventual truths. Generous: CI machines are small.
const (
	waitTimeout = 10 * time.Second
	pollEvery   = 20 * time.Millisecond
	// quietPeriod is how long the suite waits to be convinced that
	// something (an announcement of an unwatched topic) does not happen.
	quietPeriod = 300 * time.Millisecond
)

// Run runs the conformance suite against stores built by newStore.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newStore Factory)
	}{
		{"Offsets", testOffsets},
		{"EmptyAndInvalid", testEmptyAndInvalid},
		{"BatchAtomicOrder", testBatchAtomicOrder},
		{"ConcurrentAppends", testConcurrentAppends},
		{"Idempotency", testIdempotency},
		{"IdempotencyWindow", testIdempotencyWindow},
		{"Info", testInfo},
		{"Read", testRead},
		{"RetentionMaxLen", testRetentionMaxLen},
		{"RetentionMaxAge", testRetentionMaxAge},
		{"ListenerDelivery", testListenerDelivery},
		{"ListenerUnwatch", testListenerUnwatch},
		{"ListenerSeveralSinks", testListenerSeveralSinks},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore) })
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func draft(i int) push.Draft {
	return push.Draft{Type: "note", Data: []byte("event " + strconv.Itoa(i))}
}

func mustAppend(t *testing.T, s push.Store, topic string, drafts ...push.Draft) []push.AppendResult {
	t.Helper()
	res, err := s.Append(ctxFor(t), topic, drafts)
	if err != nil {
		t.Fatalf("Append(%s, %d drafts): %v", topic, len(drafts), err)
	}
	if len(res) != len(drafts) {
		t.Fatalf("Append(%s): %d results for %d drafts", topic, len(res), len(drafts))
	}
	return res
}

func mustInfo(t *testing.T, s push.Store, topics ...string) []push.StreamInfo {
	t.Helper()
	infos, err := s.Info(ctxFor(t), topics)
	if err != nil {
		t.Fatalf("Info(%v): %v", topics, err)
	}
	if len(infos) != len(topics) {
		t.Fatalf("Info(%v): %d results", topics, len(infos))
	}
	for i, in := range infos {
		if in.Topic != topics[i] || in.Origin != s.Origin() {
			t.Fatalf("Info[%d] names %s@%s, want %s@%s", i, in.Topic, in.Origin, topics[i], s.Origin())
		}
	}
	return infos
}

func mustRead(t *testing.T, s push.Store, topic string, after uint64, limit int) ([]push.Event, push.StreamInfo) {
	t.Helper()
	evs, info, err := s.Read(ctxFor(t), topic, after, limit)
	if err != nil {
		t.Fatalf("Read(%s, after=%d, limit=%d): %v", topic, after, limit, err)
	}
	return evs, info
}

func offsets(evs []push.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Offset
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for o := from; o <= to; o++ {
		out = append(out, o)
	}
	return out
}

// eventually polls cond until it returns nil or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v: %v", what, waitTimeout, err)
		}
		time.Sleep(pollEvery)
	}
}

func testOffsets(t *testing.T, newStore Factory) {
	s := newStore(t, Config{})
	const topic = "offsets"
	var epoch string
	before := time.Now().Add(-time.Second)
	for i := 1; i <= 5; i++ {
		r := mustAppend(t, s, topic, draft(i))[0]
		if r.Offset != uint64(i) || r.Duplicate {
			t.Fatalf("append %d: got offset %d duplicate %v", i, r.Offset, r.Duplicate)
		}
		if r.Epoch == "" {
			t.Fatal("empty epoch")
		}
		if epoch != "" && r.Epoch != epoch {
			t.Fatalf("epoch changed without data loss: %q -> %q", epoch, r.Epoch)
		}
		epoch = r.Epoch
		if r.Time.Before(before) || r.Time.After(time.Now().Add(time.Second)) {
			t.Fatalf("append time %v outside the call", r.Time)
		}
	}
	// Another topic has its own offsets.
	if r := mustAppend(t, s, "offsets-other", draft(0))[0]; r.Offset != 1 {
		t.Fatalf("second topic starts at %d, want 1", r.Offset)
	}
}

func testEmptyAndInvalid(t *testing.T, newStore Factory) {
	s := newStore(t, Config{})
	ctx := ctxFor(t)
	res, err := s.Append(ctx, "empty", nil)
	if err != nil || len(res) != 0 {
		t.Fatalf("Append(no drafts) = %v, %v; want no results, nil", res, err)
	}
	if in := mustInfo(t, s, "empty")[0]; in.Epoch != "" || in.Last != 0 {
		t.Fatalf("an empty Append created the stream: %+v", in)
	}
	for _, bad := range []string{"", "{x}", "a@b", "a b", "-x", string(make([]byte, push.MaxTopicLen+1))} {
		if _, err := s.Append(ctx, bad, []push.Draft{draft(1)}); !errors.Is(err, push.ErrInvalidTopic) {
			t.Errorf("Append(topic %q) error = %v, want ErrInvalidTopic", bad, err)
		}
		if _, _, err := s.Read(ctx, bad, 0, 10); !errors.Is(err, push.ErrInvalidTopic) {
			t.Errorf("Read(topic %q) error = %v, want ErrInvalidTopic", bad, err)
		}
		if _, err := s.Info(ctx, []string{"ok", bad}); !errors.Is(err, push.ErrInvalidTopic) {
			t.Errorf("Info(topic %q) error = %v, want ErrInvalidTopic", bad, err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testBatchAtomicOrder(t *testing.T, newStore Factory) {
	s := newStore(t, Config{})
	const topic = "batch"
	const writers, batches, size = 4, 15, 5
	type acked struct {
		res  []push.AppendResult
		data [][]byte
	}
	var (
		mu  sync.Mutex
		all []acked
		wg  sync.WaitGroup
	)
	errc := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				ds := make([]push.Draft, size)
				data := make([][]byte, size)
				for i := range ds {
					data[i] = fmt.Appendf(nil, "w%d b%d i%d", w, b, i)
					ds[i] = push.Draft{Type: "batch", Data: data[i]}
				}
				res, err := s.Append(context.Background(), topic, ds)
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				all = append(all, acked{res, data})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("concurrent batch append: %v", err)
	}
	byOffset := map[uint64][]byte{}
	for _, a := range all {
		for i, r := range a.res {
			if r.Offset != a.res[0].Offset+uint64(i) || r.Epoch != a.res[0].Epoch || !r.Time.Equal(a.res[0].Time) {
				t.Fatalf("batch not contiguous/atomic: %+v", a.res)
			}
			byOffset[r.Offset] = a.data[i]
		}
	}
	evs, _ := mustRead(t, s, topic, 0, writers*batches*size+10)
	if got, want := offsets(evs), seq(1, writers*batches*size); !slices.Equal(got, want) {
		t.Fatalf("offsets after concurrent batches: %v", got)
	}
	for _, e := range evs {
		if !bytes.Equal(e.Data, byOffset[e.Offset]) {
			t.Fatalf("offset %d holds %q, acknowledged as %q", e.Offset, e.Data, byOffset[e.Offset])
		}
	}
}

func testConcurrentAppends(t *testing.T, newStore Factory) {
	s := newStore(t, Config{})
	const topic = "concurrent"
	const writers, per = 16, 25
	got := make([][]uint64, writers)
	data := map[uint64]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				d := fmt.Sprintf("w%d-%d", w, i)
				res, err := s.Append(context.Background(), topic, []push.Draft{{Type: "c", Data: []byte(d)}})
				if err != nil {
					errc <- err
					return
				}
				got[w] = append(got[w], res[0].Offset)
				mu.Lock()
				if prev, dup := data[res[0].Offset]; dup {
					mu.Unlock()
					errc <- fmt.Errorf("offset %d acknowledged twice (%s and %s)", res[0].Offset, prev, d)
					return
				}
				data[res[0].Offset] = d
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	var all []uint64
	for w, offs := range got {
		if !slices.IsSorted(offs) {
			t.Fatalf("writer %d saw offsets out of call order: %v", w, offs)
		}
		all = append(all, offs...)
	}
	slices.Sort(all)
	if want := seq(1, writers*per); !slices.Equal(all, want) {
		t.Fatalf("offsets are not a permutation of 1..%d: %v", writers*per, all)
	}
	evs, info := mustRead(t, s, topic, 0, writers*per)
	if len(evs) != writers*per || info.Last != writers*per || info.Length != writers*per {
		t.Fatalf("read %d events, info %+v", len(evs), info)
	}
	for _, e := range evs {
		if string(e.Data) != data[e.Offset] {
			t.Fatalf("offset %d holds %q, acknowledged as %q", e.Offset, e.Data, data[e.Offset])
		}
	}
}

func testIdempotency(t *testing.T, newStore Factory) {
	s := newStore(t, Config{IdempotencyWindow: time.Minute})
	const topic = "idem"
	first := mustAppend(t, s, topic, push.Draft{Type: "a", Data: []byte("1"), IdempotencyKey: "key-1"})[0]
	mustAppend(t, s, topic, draft(2))
	again := mustAppend(t, s, topic, push.Draft{Type: "a", Data: []byte("different payload"), IdempotencyKey: "key-1"})[0]
	if !again.Duplicate || again.Offset != first.Offset || again.Epoch != first.Epoch || !again.Time.Equal(first.Time) {
		t.Fatalf("retry with the same key: got %+v, want duplicate of %+v", again, first)
	}
	if first.Duplicate {
		t.Fatal("first append marked duplicate")
	}
	if in := mustInfo(t, s, topic)[0]; in.Last != 2 || in.Length != 2 {
		t.Fatalf("a duplicate appended something: %+v", in)
	}
	// The same key on another topic is independent.
	other := mustAppend(t, s, "idem-other", push.Draft{Type: "a", Data: []byte("x"), IdempotencyKey: "key-1"})[0]
	if other.Duplicate || other.Offset != 1 {
		t.Fatalf("same key on another topic: %+v", other)
	}
	// Inside one batch: a repeated key is a duplicate of the earlier draft,
	// a known key a duplicate of the earlier append.
	res := mustAppend(t, s, topic,
		push.Draft{Type: "a", Data: []byte("3"), IdempotencyKey: "key-3"},
		push.Draft{Type: "a", Data: []byte("3 again"), IdempotencyKey: "key-3"},
		push.Draft{Type: "a", Data: []byte("1 again"), IdempotencyKey: "key-1"},
		push.Draft{Type: "a", Data: []byte("4")},
	)
	if res[0].Duplicate || res[0].Offset != 3 ||
		!res[1].Duplicate || res[1].Offset != 3 ||
		!res[2].Duplicate || res[2].Offset != first.Offset ||
		res[3].Duplicate || res[3].Offset != 4 {
		t.Fatalf("batch with repeated keys: %+v", res)
	}
	evs, _ := mustRead(t, s, topic, 0, 100)
	if got := offsets(evs); !slices.Equal(got, seq(1, 4)) || string(evs[0].Data) != "1" || string(evs[2].Data) != "3" {
		t.Fatalf("history after duplicates: %v", got)
	}
}

func testIdempotencyWindow(t *testing.T, newStore Factory) {
	const window = 300 * time.Millisecond
	s := newStore(t, Config{IdempotencyWindow: window})
	const topic = "idem-window"
	d := push.Draft{Type: "a", Data: []byte("x"), IdempotencyKey: "k"}
	first := mustAppend(t, s, topic, d)[0]
	start := time.Now()
	var last push.AppendResult
	eventually(t, "idempotency key expires", func() error {
		last = mustAppend(t, s, topic, d)[0]
		if last.Duplicate {
			return errors.New("still a duplicate")
		}
		return nil
	})
	if time.Since(start) < window-50*time.Millisecond {
		t.Fatalf("key forgotten after %v, window is %v", time.Since(start), window)
	}
	if last.Offset != first.Offset+1 {
		t.Fatalf("after expiry got offset %d, want %d", last.Offset, first.Offset+1)
	}
}

func testInfo(t *testing.T, newStore Factory) {
	s := newStore(t, Config{})
	in := mustInfo(t, s, "never-written")[0]
	if !reflect.DeepEqual(in, push.StreamInfo{Topic: "never-written", Origin: s.Origin()}) {
		t.Fatalf("unknown topic: %+v, want zero values", in)
	}
	res := mustAppend(t, s, "info-a", draft(1), draft(2), draft(3))
	mustAppend(t, s, "info-b", draft(1))
	infos := mustInfo(t, s, "info-b", "never-written", "info-a")
	if a := infos[2]; a.Epoch != res[0].Epoch || a.First != 1 || a.Last != 3 || a.Length != 3 {
		t.Fatalf("info-a: %+v", a)
	}
	if b := infos[0]; b.Epoch == "" || b.First != 1 || b.Last != 1 || b.Length != 1 {
		t.Fatalf("info-b: %+v", b)
	}
	if infos[1].Epoch != "" || infos[1].Last != 0 {
		t.Fatalf("never-written: %+v", infos[1])
	}
	if infos, err := s.Info(ctxFor(t), nil); err != nil || len(infos) != 0 {
		t.Fatalf("Info(nil) = %v, %v", infos, err)
	}
}

func testRead(t *testing.T, newStore Factory) {
	s := newStore(t, Config{})
	const topic = "read"
	var acked []push.AppendResult
	for i := 1; i <= 10; i++ {
		d := draft(i)
		if i%2 == 0 {
			d.TraceParent = fmt.Sprintf("00-%032x-%016x-01", i, i)
		}
		acked = append(acked, mustAppend(t, s, topic, d)...)
	}
	evs, info := mustRead(t, s, topic, 0, 3)
	if got := offsets(evs); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("Read(after 0, limit 3) = %v", got)
	}
	if info.Epoch != acked[0].Epoch || info.First != 1 || info.Last != 10 || info.Length != 10 {
		t.Fatalf("Read info: %+v", info)
	}
	for i, e := range evs {
		want := draft(i + 1)
		if e.Topic != topic || e.Origin != s.Origin() || e.Epoch != info.Epoch || e.Type != want.Type ||
			!bytes.Equal(e.Data, want.Data) || !e.Time.Equal(acked[i].Time) {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	evs, _ = mustRead(t, s, topic, 3, 100)
	if got := offsets(evs); !slices.Equal(got, seq(4, 10)) {
		t.Fatalf("Read(after 3) = %v (after is exclusive)", got)
	}
	if evs[0].TraceParent != fmt.Sprintf("00-%032x-%016x-01", 4, 4) || evs[1].TraceParent != "" {
		t.Fatalf("traceparent not kept: %q %q", evs[0].TraceParent, evs[1].TraceParent)
	}
	for _, after := range []uint64{10, 11, 1 << 40} {
		if evs, info := mustRead(t, s, topic, after, 10); len(evs) != 0 || info.Last != 10 {
			t.Fatalf("Read(after %d) = %v, info %+v; want nothing", after, offsets(evs), info)
		}
	}
	if evs, info := mustRead(t, s, topic, 0, 0); len(evs) != 0 || info.Last != 10 {
		t.Fatalf("Read(limit 0) = %v, %+v", offsets(evs), info)
	}
	if evs, info := mustRead(t, s, "read-unknown", 0, 10); len(evs) != 0 || info.Epoch != "" || info.Last != 0 {
		t.Fatalf("Read(unknown) = %v, %+v", offsets(evs), info)
	}
	// Binary-safe-enough data: newlines, separators, unicode.
	odd := []byte("line1\nline2\r\n|{}@ ünïcødé \x01")
	r := mustAppend(t, s, topic, push.Draft{Type: "odd", Data: odd})[0]
	evs, _ = mustRead(t, s, topic, r.Offset-1, 1)
	if len(evs) != 1 || !bytes.Equal(evs[0].Data, odd) {
		t.Fatalf("odd data round trip: %+v", evs)
	}
	// Empty data is an event too.
	r = mustAppend(t, s, topic, push.Draft{Type: "empty"})[0]
	evs, _ = mustRead(t, s, topic, r.Offset-1, 1)
	if len(evs) != 1 || len(evs[0].Data) != 0 || evs[0].Type != "empty" {
		t.Fatalf("empty data round trip: %+v", evs)
	}
}

func testRetentionMaxLen(t *testing.T, newStore Factory) {
	const maxLen = 5
	s := newStore(t, Config{Retention: push.RetentionPolicy{
		Default: push.Retention{MaxLen: maxLen},
		Rules:   []push.RetentionRule{{Pattern: "long-*", Retention: push.Retention{MaxLen: 100}}},
	}})
	for i := 1; i <= 12; i++ {
		mustAppend(t, s, "short", draft(i))
		mustAppend(t, s, "long-x", draft(i))
	}
	evs, info := mustRead(t, s, "short", 0, 100)
	if got := offsets(evs); !slices.Equal(got, seq(8, 12)) || info.First != 8 || info.Last != 12 || info.Length != maxLen {
		t.Fatalf("MaxLen %d: read %v, info %+v", maxLen, got, info)
	}
	if in := mustInfo(t, s, "long-x")[0]; in.First != 1 || in.Length != 12 {
		t.Fatalf("rule for long-*: %+v", in)
	}
	// A batch larger than MaxLen keeps its tail.
	ds := make([]push.Draft, 8)
	for i := range ds {
		ds[i] = draft(100 + i)
	}
	mustAppend(t, s, "short", ds...)
	evs, info = mustRead(t, s, "short", 0, 100)
	if got := offsets(evs); !slices.Equal(got, seq(16, 20)) || info.First != 16 || info.Length != maxLen {
		t.Fatalf("MaxLen after big batch: read %v, info %+v", got, info)
	}
	// Reading after a trimmed offset starts at the first retained one.
	evs, _ = mustRead(t, s, "short", 3, 2)
	if got := offsets(evs); !slices.Equal(got, []uint64{16, 17}) {
		t.Fatalf("Read(after trimmed) = %v", got)
	}
}

func testRetentionMaxAge(t *testing.T, newStore Factory) {
	const maxAge = 300 * time.Millisecond
	s := newStore(t, Config{Retention: push.RetentionPolicy{Default: push.Retention{MaxLen: 1000, MaxAge: maxAge}}})
	const topic = "aged"
	old := mustAppend(t, s, topic, draft(1), draft(2), draft(3))
	// Wait until the first batch is older than MaxAge, then append once more.
	time.Sleep(time.Until(old[0].Time.Add(maxAge + 50*time.Millisecond)))
	fresh := mustAppend(t, s, topic, draft(4))[0]
	if fresh.Offset != 4 || fresh.Epoch != old[0].Epoch {
		t.Fatalf("append after expiry: %+v (offsets and epoch continue)", fresh)
	}
	eventually(t, "events older than MaxAge are dropped", func() error {
		evs, info, err := s.Read(ctxFor(t), topic, 0, 100)
		if err != nil {
			return err
		}
		if got := offsets(evs); !slices.Equal(got, []uint64{4}) || info.First != 4 || info.Last != 4 || info.Length != 1 {
			return fmt.Errorf("read %v, info %+v", got, info)
		}
		return nil
	})
	in := mustInfo(t, s, topic)[0]
	if in.First != 4 || in.Last != 4 || in.Length != 1 {
		t.Fatalf("Info after age trim: %+v", in)
	}
	// Once everything is older than MaxAge, the stream is empty but keeps
	// its epoch and last offset.
	eventually(t, "all events age out", func() error {
		in := mustInfo(t, s, topic)[0]
		if in.First != 0 || in.Length != 0 || in.Last != 4 || in.Epoch != fresh.Epoch {
			return fmt.Errorf("info %+v", in)
		}
		return nil
	})
	if r := mustAppend(t, s, topic, draft(5))[0]; r.Offset != 5 {
		t.Fatalf("append after full expiry: offset %d, want 5", r.Offset)
	}
}

// recSink records announcements. Deliver and Resync never block.
type recSink struct {
	mu      sync.Mutex
	evs     []*push.Event
	resyncs int
}

func (r *recSink) Deliver(ev *push.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

func (r *recSink) Resync() {
	r.mu.Lock()
	r.resyncs++
	r.mu.Unlock()
}

func (r *recSink) events() []*push.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs)
}

func (r *recSink) waitEvents(t *testing.T, n int) []*push.Event {
	t.Helper()
	eventually(t, fmt.Sprintf("%d announcements", n), func() error {
		if got := len(r.events()); got < n {
			return fmt.Errorf("%d announced", got)
		}
		return nil
	})
	return r.events()
}

func mustListen(t *testing.T, s push.Store, sink push.Sink, topics ...string) push.Listener {
	t.Helper()
	l, err := s.Listen(sink)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	for _, topic := range topics {
		if err := l.Watch(ctxFor(t), topic); err != nil {
			t.Fatalf("Watch(%s): %v", topic, err)
		}
	}
	return l
}

func testListenerDelivery(t *testing.T, newStore Factory) {
	s := newStore(t, Config{IdempotencyWindow: time.Minute})
	sink := &recSink{}
	l := mustListen(t, s, sink, "live")
	if err := l.Watch(ctxFor(t), "live"); err != nil {
		t.Fatalf("second Watch of the same topic: %v", err)
	}
	var acked []push.AppendResult
	var drafts []push.Draft
	for i := 1; i <= 30; i++ {
		d := push.Draft{Type: "t" + strconv.Itoa(i%3), Data: fmt.Appendf(nil, "payload %d\nsecond line", i)}
		if i%4 == 0 {
			d.TraceParent = fmt.Sprintf("00-%032x-%016x-01", i, i)
		}
		if i%5 == 0 {
			d.IdempotencyKey = "k" + strconv.Itoa(i)
		}
		drafts = append(drafts, d)
	}
	for i := 0; i < len(drafts); {
		n := 1 + i%4
		if i+n > len(drafts) {
			n = len(drafts) - i
		}
		acked = append(acked, mustAppend(t, s, "live", drafts[i:i+n]...)...)
		i += n
	}
	// A duplicate is not announced again.
	if r := mustAppend(t, s, "live", drafts[4])[0]; !r.Duplicate {
		t.Fatalf("expected duplicate: %+v", r)
	}
	sink.waitEvents(t, len(drafts))
	time.Sleep(quietPeriod) // a negative assertion: give a duplicate announcement time to show up
	evs := sink.events()
	if len(evs) != len(drafts) {
		t.Fatalf("%d announcements for %d events (duplicates must not be announced)", len(evs), len(drafts))
	}
	for i, e := range evs {
		d, a := drafts[i], acked[i]
		if e.Topic != "live" || e.Origin != s.Origin() || e.Epoch != a.Epoch || e.Offset != a.Offset ||
			e.Type != d.Type || !bytes.Equal(e.Data, d.Data) || !e.Time.Equal(a.Time) || e.TraceParent != d.TraceParent {
			t.Fatalf("announcement %d = %+v, want draft %+v acked as %+v", i, e, d, a)
		}
	}
}

func testListenerUnwatch(t *testing.T, newStore Factory) {
	s := newStore(t, Config{})
	sink := &recSink{}
	l := mustListen(t, s, sink, "watched", "marker")
	mustAppend(t, s, "unwatched", draft(1))
	mustAppend(t, s, "watched", draft(1))
	sink.waitEvents(t, 1)
	l.Unwatch("watched")
	mustAppend(t, s, "watched", draft(2))
	mustAppend(t, s, "unwatched", draft(2))
	mustAppend(t, s, "marker", draft(1))
	sink.waitEvents(t, 2)
	time.Sleep(quietPeriod)
	evs := sink.events()
	if len(evs) != 2 || evs[0].Topic != "watched" || evs[0].Offset != 1 || evs[1].Topic != "marker" {
		var got []string
		for _, e := range evs {
			got = append(got, fmt.Sprintf("%s/%d", e.Topic, e.Offset))
		}
		t.Fatalf("announced %v; want [watched/1 marker/1]", got)
	}
	// Unwatching an unknown topic is harmless; watching again resumes.
	l.Unwatch("never-watched")
	if err := l.Watch(ctxFor(t), "watched"); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "watched", draft(3))
	evs = sink.waitEvents(t, 3)
	if evs[2].Topic != "watched" || evs[2].Offset != 3 {
		t.Fatalf("after re-watch: %+v", evs[2])
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Listener.Close: %v", err)
	}
	_ = l.Close() // idempotent
	mustAppend(t, s, "watched", draft(4))
	time.Sleep(quietPeriod)
	if n := len(sink.events()); n != 3 {
		t.Fatalf("announced after Listener.Close: %d events", n)
	}
	if err := l.Watch(ctxFor(t), "watched"); !errors.Is(err, push.ErrClosed) {
		t.Fatalf("Watch after Close: %v, want ErrClosed", err)
	}
}

func testListenerSeveralSinks(t *testing.T, newStore Factory) {
	s := newStore(t, Config{})
	a, b := &recSink{}, &recSink{}
	mustListen(t, s, a, "shared", "only-a")
	mustListen(t, s, b, "shared")
	mustAppend(t, s, "only-a", draft(1))
	mustAppend(t, s, "shared", draft(1), draft(2))
	if evs := a.waitEvents(t, 3); evs[0].Topic != "only-a" || evs[1].Offset != 1 || evs[2].Offset != 2 {
		t.Fatalf("sink a: %+v", evs)
	}
	if evs := b.waitEvents(t, 2); evs[0].Topic != "shared" || evs[1].Offset != 2 {
		t.Fatalf("sink b: %+v", evs)
	}
}

func testClose(t *testing.T, newStore Factory) {
	s := newStore(t, Config{})
	sink := &recSink{}
	mustListen(t, s, sink, "closing")
	mustAppend(t, s, "closing", draft(1))
	sink.waitEvents(t, 1)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := ctxFor(t)
	if _, err := s.Append(ctx, "closing", []push.Draft{draft(2)}); !errors.Is(err, push.ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	if _, _, err := s.Read(ctx, "closing", 0, 10); !errors.Is(err, push.ErrClosed) {
		t.Fatalf("Read after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Info(ctx, []string{"closing"}); !errors.Is(err, push.ErrClosed) {
		t.Fatalf("Info after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Listen(sink); !errors.Is(err, push.ErrClosed) {
		t.Fatalf("Listen after Close: %v, want ErrClosed", err)
	}
}
