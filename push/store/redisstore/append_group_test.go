package redisstore

// Group commit (ADR 0032) against a real redis-server. The server is paused
// (SIGSTOP) to hold a batch in flight: while it is stopped, every append
// script call the store makes is either written on a connection (counted by
// a net.Conn wrapper from the client's Dialer) or waiting in the store
// (queuedAppends), so "all calls issued" is an exact condition, not a
// timing guess.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/redis/go-redis/v9"
)

// wireCount counts, over every connection of a client, the writes that
// carry append script calls (round trips) and the calls they carry. While
// hold is set such a write waits, before it reaches Redis, until the test
// sends on release.
type wireCount struct {
	writes, calls atomic.Int64
	hold          atomic.Bool
	held          atomic.Int64 // writes waiting on release
	release       chan struct{}
	releaseOnce   sync.Once
}

// holdWrites holds append writes from now until releaseAll, which runs at
// the latest when the test ends (before its store and client close).
func (n *wireCount) holdWrites(t *testing.T) {
	n.hold.Store(true)
	t.Cleanup(n.releaseAll)
}

// releaseAll lets held and later writes through. Idempotent.
func (n *wireCount) releaseAll() {
	n.releaseOnce.Do(func() {
		n.hold.Store(false)
		close(n.release)
	})
}

type countConn struct {
	net.Conn
	n *wireCount
}

var evalshaArg = []byte("$7\r\nevalsha\r\n")

func (c countConn) Write(p []byte) (int, error) {
	if k := bytes.Count(p, evalshaArg); k > 0 {
		c.n.writes.Add(1)
		c.n.calls.Add(int64(k))
		if c.n.hold.Load() {
			c.n.held.Add(1)
			<-c.n.release
			c.n.held.Add(-1)
		}
	}
	return c.Conn.Write(p)
}

// countedStore is a store on srv whose client counts its append round
// trips, with idle connections ready for conns concurrent calls (so a
// paused server does not stall their dials: the comparison is between
// round trips, not connection set-up).
func countedStore(t *testing.T, srv *redistest.Server, conns int) (*Store, *wireCount) {
	t.Helper()
	n := &wireCount{release: make(chan struct{})}
	client := redis.NewClient(&redis.Options{
		Addr: srv.Addr(), ContextTimeoutEnabled: true, PoolSize: conns + 4,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countConn{Conn: c, n: n}, nil
		},
	})
	t.Cleanup(func() { _ = client.Close() })
	s, err := New(Config{Client: client, Origin: "eu-1", KeyPrefix: "g" + fmt.Sprint(time.Now().UnixNano()), OpTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := testContext(t)
	if _, err := s.Append(ctx, "warm", []push.Draft{{Type: "w"}}); err != nil { // loads the script
		t.Fatal(err)
	}
	// conns connections, each dialed and initialised (HELLO), back in the
	// pool.
	held := make([]*redis.Conn, conns)
	for i := range held {
		held[i] = client.Conn()
		if err := held[i].Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range held {
		_ = c.Close()
	}
	n.writes.Store(0)
	n.calls.Store(0)
	return s, n
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 15s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type appendOutcome struct {
	res []push.AppendResult
	err error
}

// appendAll appends one event to each topic concurrently while srv is
// paused, resumes it once every call is issued, and returns the outcomes.
func appendAll(t *testing.T, srv *redistest.Server, s *Store, n *wireCount, topics []string) []appendOutcome {
	t.Helper()
	ctx := testContext(t)
	out := make([]appendOutcome, len(topics))
	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	var wg sync.WaitGroup
	for i, topic := range topics {
		wg.Go(func() {
			out[i].res, out[i].err = s.Append(ctx, topic, []push.Draft{{Type: "e", Data: []byte(topic)}})
		})
	}
	waitFor(t, func() bool { return int(n.calls.Load())+queuedAppends(s) == len(topics) })
	srv.Resume()
	resumed = true
	wg.Wait()
	return out
}

// Concurrent appends to different topics share round trips: the first goes
// out alone, the rest, queued while it is in flight, as one batch.
func TestGroupCommitSharesRoundTrips(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	const N = 16
	s, n := countedStore(t, srv, N)
	topics := make([]string, N)
	for i := range topics {
		topics[i] = fmt.Sprintf("t%d", i)
	}
	for i, o := range appendAll(t, srv, s, n, topics) {
		if o.err != nil || len(o.res) != 1 || o.res[0].Offset != 1 {
			t.Fatalf("append to %s: %+v %v", topics[i], o.res, o.err)
		}
	}
	if w, c := n.writes.Load(), n.calls.Load(); w > 2 || c != N {
		t.Fatalf("%d appends took %d round trips carrying %d calls; want at most 2 round trips", N, w, c)
	}
}

// One call's script error fails that call only, not its batch.
func TestGroupCommitIsolatesErrors(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	const N = 8
	s, n := countedStore(t, srv, N)
	if err := s.client.Set(testContext(t), s.tag("bad")+"s", "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	topics := []string{"a", "b", "c", "bad", "d", "e", "f", "g"}
	for i, o := range appendAll(t, srv, s, n, topics) {
		if topics[i] == "bad" {
			if !errors.Is(o.err, push.ErrUnavailable) {
				t.Fatalf("append to a key of the wrong type: %+v %v", o.res, o.err)
			}
			continue
		}
		if o.err != nil || o.res[0].Offset != 1 {
			t.Fatalf("append to %s beside a failing one: %+v %v", topics[i], o.res, o.err)
		}
	}
	if w := n.writes.Load(); w >= N {
		t.Fatalf("%d appends took %d round trips: nothing was batched", N, w)
	}
}

// A caller whose context ends while its call is queued gets an error and the
// call is never sent; one whose call was sent in a batch gets its context's
// error at once, and a retry with the same idempotency key settles the
// outcome. Writes are held before they reach Redis (the outcome of a held
// one is still open: exactly the ambiguous case).
func TestGroupCommitContext(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	s, n := countedStore(t, srv, 4)
	n.holdWrites(t)
	bg := testContext(t)
	cctx, ccancel := context.WithCancel(bg)
	dctx, dcancel := context.WithCancel(bg)
	defer ccancel()
	defer dcancel()
	a, c, d, e := make(chan error, 1), make(chan error, 1), make(chan error, 1), make(chan error, 1)
	appendTo := func(ctx context.Context, topic, key string, out chan error) {
		_, err := s.Append(ctx, topic, []push.Draft{{Type: "e", IdempotencyKey: key}})
		out <- err
	}
	go appendTo(bg, "a", "ka", a)
	waitFor(t, func() bool { return n.held.Load() == 1 }) // a in flight, alone
	go appendTo(cctx, "c", "kc", c)
	waitFor(t, func() bool { return queuedAppends(s) == 1 })
	go appendTo(dctx, "d", "kd", d)
	waitFor(t, func() bool { return queuedAppends(s) == 2 })
	// d gives up while queued: never sent.
	dcancel()
	if err := waitErr(t, d); !errors.Is(err, context.Canceled) || !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("queued append whose context ended: %v", err)
	}
	go appendTo(bg, "e", "ke", e)
	waitFor(t, func() bool { return queuedAppends(s) == 2 }) // c and e
	n.release <- struct{}{}                                  // a reaches Redis
	if err := waitErr(t, a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return n.held.Load() == 1 }) // the batch of c and e, in flight
	if q := queuedAppends(s); q != 0 {
		t.Fatalf("%d calls still queued", q)
	}
	// c gives up after its batch was sent: it returns now, outcome unknown.
	ccancel()
	if err := waitErr(t, c); !errors.Is(err, context.Canceled) || !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("sent append whose context ended: %v", err)
	}
	n.releaseAll()
	if err := waitErr(t, e); err != nil {
		t.Fatalf("c's batch-mate: %v", err)
	}
	res, err := s.Append(bg, "c", []push.Draft{{Type: "e", IdempotencyKey: "kc"}})
	if err != nil || res[0].Offset != 1 || !res[0].Duplicate {
		t.Fatalf("retry of the ambiguous append: %+v %v", res, err)
	}
	in, err := s.Info(bg, []string{"a", "c", "d", "e"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint64{1, 1, 0, 1} {
		if in[i].Last != want {
			t.Fatalf("%s: last offset %d, want %d", in[i].Topic, in[i].Last, want)
		}
	}
	// a alone, c and e together, c's retry; d never.
	if w, k := n.writes.Load(), n.calls.Load(); w != 3 || k != 4 {
		t.Fatalf("%d round trips carrying %d calls, want 3 carrying 4", w, k)
	}
}

func waitErr(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("append did not return after its context ended")
		return nil
	}
}

// Batched appends give what sequential ones give: per topic, offsets 1..k
// with no gap or repeat, and an idempotency key sent twice (in the same
// batch or not) appends once and answers the same offset. Single node and
// Cluster (topics in different slots and nodes).
func TestGroupCommitMatchesSequential(t *testing.T) {
	t.Parallel()
	t.Run("single", func(t *testing.T) {
		t.Parallel()
		checkConcurrentAppends(t, redistest.StartServer(t).Client(t))
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		checkConcurrentAppends(t, redistest.StartCluster(t, 3).Client(t))
	})
}

func checkConcurrentAppends(t *testing.T, client redis.UniversalClient) {
	s, err := New(Config{Client: client, Origin: "eu-1", KeyPrefix: "seq"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := testContext(t)
	const workers, each, topics = 8, 40, 5
	type got struct {
		topic string
		key   string
		res   push.AppendResult
	}
	results := make(chan got, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Every 4th call of worker w > 0 repeats worker w-1's call
				// (its topic and key), concurrently: a duplicate.
				src := w
				if i%4 == 0 && w > 0 {
					src = w - 1
				}
				topic, k := fmt.Sprintf("topic-%d", (src+i)%topics), fmt.Sprintf("k-%d-%d", src, i)
				r, err := s.Append(ctx, topic, []push.Draft{{Type: "e", Data: []byte(k), IdempotencyKey: k}})
				if err != nil {
					t.Error(err)
					return
				}
				results <- got{topic, k, r[0]}
			}
		})
	}
	wg.Wait()
	close(results)
	byKey := map[string]push.AppendResult{}
	offsets := map[string]map[uint64]string{}
	for g := range results {
		if prev, ok := byKey[g.key]; ok {
			if prev.Offset != g.res.Offset || prev.Epoch != g.res.Epoch {
				t.Fatalf("key %s answered %+v and %+v", g.key, prev, g.res)
			}
			continue
		}
		byKey[g.key] = g.res
		if offsets[g.topic] == nil {
			offsets[g.topic] = map[uint64]string{}
		}
		if k, dup := offsets[g.topic][g.res.Offset]; dup {
			t.Fatalf("%s offset %d given to %s and %s", g.topic, g.res.Offset, k, g.key)
		}
		offsets[g.topic][g.res.Offset] = g.key
	}
	for topic, offs := range offsets {
		for o := uint64(1); o <= uint64(len(offs)); o++ {
			if _, ok := offs[o]; !ok {
				t.Fatalf("%s: offsets %v have a gap at %d", topic, offs, o)
			}
		}
		evs, _, err := s.Read(ctx, topic, 0, 1000)
		if err != nil || len(evs) != len(offs) {
			t.Fatalf("%s: read %d events (%v), want %d", topic, len(evs), err, len(offs))
		}
		for _, ev := range evs {
			if string(ev.Data) != offs[ev.Offset] {
				t.Fatalf("%s offset %d holds %q, want %q", topic, ev.Offset, ev.Data, offs[ev.Offset])
			}
		}
	}
}

// A call queued alone behind the one in flight is sent by its own caller
// when that one's reply is in, not handed to the committer's goroutine (a
// batch of one saves no round trip there and costs two goroutine
// hand-offs); two or more queued go to the committer as one batch. Either
// way, one round trip more.
func TestGroupCommitSoloGoesDirect(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	for _, queued := range []int{1, 2, 5} {
		t.Run(fmt.Sprintf("queued=%d", queued), func(t *testing.T) {
			s, n := countedStore(t, srv, queued+1)
			n.holdWrites(t)
			ctx := testContext(t)
			errs := make(chan error, queued+1)
			appendTo := func(topic string) {
				res, err := s.Append(ctx, topic, []push.Draft{{Type: "e"}})
				if err == nil && res[0].Offset != 1 {
					err = fmt.Errorf("%s: offset %d, want 1", topic, res[0].Offset)
				}
				errs <- err
			}
			go appendTo("first")
			waitFor(t, func() bool { return n.held.Load() == 1 })
			for i := range queued {
				go appendTo(fmt.Sprintf("q%d", i))
			}
			waitFor(t, func() bool { return queuedAppends(s) == queued })
			n.releaseAll()
			for range queued + 1 {
				if err := waitErr(t, errs); err != nil {
					t.Fatal(err)
				}
			}
			wantBatches := int64(1)
			if queued == 1 {
				wantBatches = 0
			}
			if b, w, k := committerBatches(s), n.writes.Load(), n.calls.Load(); b != wantBatches || w != 2 || k != int64(queued+1) {
				t.Fatalf("%d round trips (%d by the committer) carrying %d calls; want 2 (%d) carrying %d", w, b, k, wantBatches, queued+1)
			}
		})
	}
}
