package redisstore_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/store/internal/storeutil"
	"github.com/heraldpush/herald/push/store/redisstore"
	"github.com/heraldpush/herald/push/store/storetest"
	"github.com/redis/go-redis/v9"
)

// newStore builds a store on client with a unique key prefix, closed at the
// end of the test.
func newStore(t testing.TB, client redis.UniversalClient, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	cfg.Client = client
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "t" + storeutil.NewEpoch()
	}
	if cfg.Origin == "" {
		cfg.Origin = "eu-1"
	}
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := redisstore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		// go-redis logs every failed dial; the failure tests provoke many.
		redis.SetLogger(quietLogger{})
	}
	os.Exit(m.Run())
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func conformance(client redis.UniversalClient) storetest.Factory {
	return func(t *testing.T, cfg storetest.Config) push.Store {
		return newStore(t, client, redisstore.Config{Retention: cfg.Retention, IdempotencyWindow: cfg.IdempotencyWindow})
	}
}

func TestConformanceSingleNode(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	storetest.Run(t, conformance(srv.Client(t)))
}

func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	opts, err := redisstore.ParseURL(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewUniversalClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	if _, ok := client.(*redis.ClusterClient); !ok {
		t.Fatalf("cluster URL gave a %T", client)
	}
	storetest.Run(t, conformance(client))
}

func TestConformanceURL(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	s, err := redisstore.New(redisstore.Config{URL: srv.URL(), KeyPrefix: "url"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Durable() || s.Origin() != "local" {
		t.Fatalf("durable=%v origin=%q", s.Durable(), s.Origin())
	}
	if _, err := s.Append(ctx, "x", []push.Draft{{Type: "a"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The store owned the client it made from the URL: it is closed now.
	if err := s.Client().Ping(ctx).Err(); err == nil {
		t.Fatal("client still open after Close")
	}
	opts, err := redisstore.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	s, err = redisstore.New(redisstore.Config{Options: opts, KeyPrefix: "opts"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Append(ctx, "x", []push.Draft{{Type: "a"}}); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []redisstore.Config{
		{},
		{URL: "redis://h", Client: redis.NewClient(&redis.Options{})},
		{URL: "redis://h", Options: &redis.UniversalOptions{Addrs: []string{"h:1"}}},
		{URL: "redis://h", Origin: "Bad Region"},
		{URL: "redis://h", KeyPrefix: "a{b}"},
		{URL: "redis://h", OpTimeout: -time.Second},
	} {
		if _, err := redisstore.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted an invalid config", cfg)
		}
	}
	if _, err := redisstore.New(redisstore.Config{URL: "redis://h:1?bogus=1"}); !errors.Is(err, redisstore.ErrBadURL) {
		t.Errorf("bad URL: %v", err)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func appendN(t testing.TB, s push.Store, topic string, from, n int) []push.AppendResult {
	t.Helper()
	var out []push.AppendResult
	for i := from; i < from+n; i++ {
		r, err := s.Append(testCtx(t), topic, []push.Draft{{Type: "e", Data: fmt.Appendf(nil, "event-%d", i)}})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		out = append(out, r...)
	}
	return out
}

func info(t testing.TB, s push.Store, topic string) push.StreamInfo {
	t.Helper()
	in, err := s.Info(testCtx(t), []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	return in[0]
}

// waitReady polls until the store answers (after a restart Redis may be
// LOADING) and returns the topic's info.
func waitReady(t testing.TB, s push.Store, topic string) push.StreamInfo {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		in, err := s.Info(testCtx(t), []string{topic})
		if err == nil {
			return in[0]
		}
		if !errors.Is(err, push.ErrUnavailable) {
			t.Fatalf("error does not wrap ErrUnavailable: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type pair struct {
	epoch  string
	offset uint64
}

// (a) Redis restarts from an older RDB: the offset counter rolls back, so the
// epoch must change and no (epoch, offset) handed out before the crash may
// name a different event afterwards.
func TestEpochChangesOnRDBRollback(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t) // appendonly no, no save points
	s := newStore(t, srv.Client(t), redisstore.Config{})
	const topic = "rollback"
	before := map[pair]string{}
	record := func(res []push.AppendResult, from int) {
		for i, r := range res {
			before[pair{r.Epoch, r.Offset}] = fmt.Sprintf("event-%d", from+i)
		}
	}
	record(appendN(t, s, topic, 1, 5), 1)
	if err := srv.Client(t).Save(testCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	record(appendN(t, s, topic, 6, 5), 6) // acknowledged, never saved
	preEpoch := info(t, s, topic).Epoch

	srv.Kill()
	srv.Restart(t) // reloads the RDB with offsets 1..5

	in := waitReady(t, s, topic)
	if in.Last != 5 || in.Epoch != preEpoch {
		t.Fatalf("after rollback, before an append: epoch %s Last %d, want the RDB's %s and 5", in.Epoch, in.Last, preEpoch)
	}
	after := appendN(t, s, topic, 100, 8)
	if in = info(t, s, topic); in.Epoch == preEpoch || in.Epoch == "" {
		t.Fatalf("epoch %q did not change after Redis lost acknowledged events", in.Epoch)
	}
	if after[0].Offset != 6 || after[0].Epoch != in.Epoch {
		t.Fatalf("first append after rollback: %+v, want offset 6 in epoch %s", after[0], in.Epoch)
	}
	evs, _, err := s.Read(testCtx(t), topic, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if old, ok := before[pair{e.Epoch, e.Offset}]; ok && old != string(e.Data) {
			t.Fatalf("(%s, %d) named %q before the crash and %q after", e.Epoch, e.Offset, old, e.Data)
		}
		if e.Epoch != in.Epoch {
			t.Fatalf("event %d read under epoch %s, stream epoch %s", e.Offset, e.Epoch, in.Epoch)
		}
	}
	for _, r := range after {
		if _, ok := before[pair{r.Epoch, r.Offset}]; ok {
			t.Fatalf("(%s, %d) acknowledged twice", r.Epoch, r.Offset)
		}
	}
	// Reads agree with the persisted epoch from now on.
	if got := info(t, s, topic).Epoch; got != in.Epoch {
		t.Fatalf("epoch moved again without a restart: %s -> %s", in.Epoch, got)
	}
}

// (b) A clean restart that lost nothing still changes the epoch: the store
// cannot tell it from a lossy one, and a needless reset is safe while a
// missed one is not.
func TestEpochChangesOnCleanRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t, redistest.WithAppendOnly(true))
	s := newStore(t, srv.Client(t), redisstore.Config{})
	const topic = "clean"
	res := appendN(t, s, topic, 1, 5)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	in := waitReady(t, s, topic)
	if in.Last != 5 || in.Length != 5 {
		t.Fatalf("data lost across a clean restart with AOF: %+v", in)
	}
	// Readers see the old epoch until something is written in a new one.
	if in.Epoch != res[0].Epoch {
		t.Fatalf("epoch %s before any append after the restart, want the stored %s", in.Epoch, res[0].Epoch)
	}
	// The first append begins the new epoch (the store cannot tell a clean
	// restart from a lossy one), which inherits offsets 1..5 of the old one.
	r6 := appendN(t, s, topic, 6, 1)[0]
	after := waitReady(t, s, topic)
	if after.Epoch == res[0].Epoch || after.Epoch != r6.Epoch || after.Parent != res[0].Epoch || after.EpochStart != 6 ||
		len(after.Lineage) != 1 || after.Lineage[0] != (push.Fork{Epoch: res[0].Epoch, At: 5}) {
		t.Fatalf("after the first append of the new epoch: %+v, want a new epoch forked from %s at 5", after, res[0].Epoch)
	}
	evs, _, err := s.Read(testCtx(t), topic, 0, 10)
	if err != nil || len(evs) != 6 || string(evs[4].Data) != "event-5" {
		t.Fatalf("read after restart: %d events, %v", len(evs), err)
	}
	// The idempotency key survives too and names the original write.
	r1, _ := s.Append(testCtx(t), topic, []push.Draft{{Type: "e", IdempotencyKey: "k"}})
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	waitReady(t, s, topic)
	r2, err := s.Append(testCtx(t), topic, []push.Draft{{Type: "e", IdempotencyKey: "k"}})
	if err != nil || !r2[0].Duplicate || r2[0].Offset != r1[0].Offset || r2[0].Epoch != r1[0].Epoch {
		t.Fatalf("idempotent retry after restart: %+v %v, first %+v", r2, err, r1)
	}
}

// (d) Loss of one of the two keys.
func TestStreamOrMetaLost(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rc := srv.Client(t)
	s := newStore(t, rc, redisstore.Config{KeyPrefix: "d"})
	ctx := testCtx(t)
	const topic = "lost"
	streamKey, metaKey := "d:{lost@eu-1}:s", "d:{lost@eu-1}:m"
	first := appendN(t, s, topic, 1, 5)
	if n, _ := rc.Exists(ctx, streamKey, metaKey).Result(); n != 2 {
		t.Fatalf("key layout: %d of %s, %s exist", n, streamKey, metaKey)
	}

	// Stream deleted, meta survives: offsets continue, nothing is reused.
	rc.Del(ctx, streamKey)
	if in := info(t, s, topic); in.Last != 5 || in.Length != 0 || in.First != 0 || in.Epoch != first[0].Epoch {
		t.Fatalf("after stream loss: %+v", in)
	}
	r := appendN(t, s, topic, 6, 1)[0]
	if r.Offset != 6 {
		t.Fatalf("after stream loss got offset %d, want 6", r.Offset)
	}

	// Stream expired (TTL), meta survives: the same.
	rc.PExpire(ctx, streamKey, time.Millisecond)
	eventually(t, func() bool { n, _ := rc.Exists(ctx, streamKey).Result(); return n == 0 })
	if r := appendN(t, s, topic, 7, 1)[0]; r.Offset != 7 {
		t.Fatalf("after stream expiry got offset %d, want 7", r.Offset)
	}

	// Meta deleted, stream survives: offsets continue above the stream's
	// top and the epoch changes.
	epochBefore := info(t, s, topic).Epoch
	rc.Del(ctx, metaKey)
	if in := info(t, s, topic); in.Epoch != "" {
		t.Fatalf("without meta the stream must read as unwritten: %+v", in)
	}
	r = appendN(t, s, topic, 8, 1)[0]
	if r.Offset != 8 || r.Epoch == epochBefore {
		t.Fatalf("after meta loss: %+v (want offset 8, new epoch)", r)
	}

	// Meta deleted while the stream is empty but still exists (trimmed to
	// nothing): XADD ids must stay above the stream's last generated id.
	rc.XTrimMaxLen(ctx, streamKey, 0)
	rc.Del(ctx, metaKey)
	r = appendN(t, s, topic, 9, 1)[0]
	if r.Offset != 9 {
		t.Fatalf("after meta loss on an emptied stream: offset %d, want 9", r.Offset)
	}

	// Both lost (idle expiry): a new lineage from 1.
	epochBefore = r.Epoch
	rc.Del(ctx, streamKey, metaKey)
	r = appendN(t, s, topic, 10, 1)[0]
	if r.Offset != 1 || r.Epoch == epochBefore {
		t.Fatalf("after losing both: %+v", r)
	}

	// Meta restored from an old backup (counter behind the stream): the
	// append repairs itself instead of failing forever.
	appendN(t, s, topic, 11, 3) // offsets 2..4
	rc.HSet(ctx, metaKey, "o", "1")
	r = appendN(t, s, topic, 14, 1)[0]
	if r.Offset != 5 || r.Epoch == epochBefore {
		t.Fatalf("after counter rollback: %+v, want offset 5 in a new epoch", r)
	}
}

// Idle streams expire: the keys get a TTL.
func TestIdleTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rc := srv.Client(t)
	ctx := testCtx(t)
	s := newStore(t, rc, redisstore.Config{KeyPrefix: "ttl", IdleTTL: time.Hour})
	appendN(t, s, "a", 1, 1)
	for _, k := range []string{"ttl:{a@eu-1}:s", "ttl:{a@eu-1}:m"} {
		if d, _ := rc.PTTL(ctx, k).Result(); d <= 59*time.Minute || d > time.Hour {
			t.Fatalf("TTL of %s = %v, want about 1h", k, d)
		}
	}
	s2 := newStore(t, rc, redisstore.Config{KeyPrefix: "ttl2", Retention: push.RetentionPolicy{Default: push.Retention{MaxAge: 48 * time.Hour}}})
	appendN(t, s2, "a", 1, 1)
	if d, _ := rc.PTTL(ctx, "ttl2:{a@eu-1}:m").Result(); d < 95*time.Hour {
		t.Fatalf("default TTL = %v, want 2×MaxAge", d)
	}
	s3 := newStore(t, rc, redisstore.Config{KeyPrefix: "ttl3", IdleTTL: -1})
	appendN(t, s3, "a", 1, 1)
	if d, _ := rc.PTTL(ctx, "ttl3:{a@eu-1}:m").Result(); d != -1 {
		t.Fatalf("negative IdleTTL: TTL = %v, want none", d)
	}
}

// Age trimming removes entries physically, not only from reads.
func TestAgeTrimPhysical(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rc := srv.Client(t)
	ctx := testCtx(t)
	const maxAge = 200 * time.Millisecond
	s := newStore(t, rc, redisstore.Config{KeyPrefix: "age", Retention: push.RetentionPolicy{Default: push.Retention{MaxAge: maxAge}}})
	appendN(t, s, "a", 1, 500)
	time.Sleep(maxAge + 50*time.Millisecond)
	appendN(t, s, "a", 501, 1)
	if n, _ := rc.XLen(ctx, "age:{a@eu-1}:s").Result(); n != 1 {
		t.Fatalf("XLEN after age trim = %d, want 1", n)
	}
}

// Large MaxLen trims approximately: bounded slack, the newest kept.
func TestApproximateMaxLen(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rc := srv.Client(t)
	s := newStore(t, rc, redisstore.Config{KeyPrefix: "ml", Retention: push.RetentionPolicy{Default: push.Retention{MaxLen: 1000}}})
	ctx := testCtx(t)
	drafts := make([]push.Draft, 100)
	for i := range drafts {
		drafts[i] = push.Draft{Type: "x", Data: []byte("y")}
	}
	for i := 0; i < 30; i++ {
		if _, err := s.Append(ctx, "a", drafts); err != nil {
			t.Fatal(err)
		}
	}
	in := info(t, s, "a")
	if in.Last != 3000 || in.Length < 1000 || in.Length > 1100 || in.First != in.Last-uint64(in.Length)+1 {
		t.Fatalf("approximate MaxLen 1000: %+v", in)
	}
}

// Reads run read-only, so they work on a replica, and a replica computes the
// same epoch as its primary (it reports the primary's replication id).
func TestReadOnReplica(t *testing.T) {
	t.Parallel()
	primary := redistest.StartServer(t)
	replica := redistest.StartServer(t, redistest.WithReplicaOf(primary.Addr()))
	ps := newStore(t, primary.Client(t), redisstore.Config{KeyPrefix: "rep"})
	rs := newStore(t, replica.Client(t), redisstore.Config{KeyPrefix: "rep"})
	res := appendN(t, ps, "a", 1, 3)
	eventually(t, func() bool { return info(t, rs, "a").Last == 3 })
	in := info(t, rs, "a")
	if in.Epoch != res[0].Epoch {
		t.Fatalf("replica epoch %s, primary %s", in.Epoch, res[0].Epoch)
	}
	evs, _, err := rs.Read(testCtx(t), "a", 1, 10)
	if err != nil || len(evs) != 2 || evs[0].Epoch != res[0].Epoch {
		t.Fatalf("read on replica: %+v %v", evs, err)
	}
	// Writes on a replica are refused as unavailable, never half-done.
	if _, err := rs.Append(testCtx(t), "a", []push.Draft{{Type: "x"}}); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("append on a replica: %v", err)
	}
	// A primary restart changes the epoch on the replica's reads too, once
	// it has resynced.
	primary.Kill()
	primary.Restart(t)
	appendN(t, ps, "b", 1, 1)
	eventually(t, func() bool {
		in, err := rs.Info(testCtx(t), []string{"b"})
		return err == nil && in[0].Last == 1
	})
	pin := waitReady(t, ps, "b")
	if rin := info(t, rs, "b"); rin.Epoch != pin.Epoch {
		t.Fatalf("after primary restart: replica epoch %s, primary %s", rin.Epoch, pin.Epoch)
	}
}

// Errors: a dead Redis gives ErrUnavailable promptly, with the cause.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialerRetries: 1, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	s := newStore(t, client, redisstore.Config{OpTimeout: 500 * time.Millisecond})
	ctx := testCtx(t)
	appendN(t, s, "a", 1, 1)
	srv.Kill()
	start := time.Now()
	_, err := s.Append(ctx, "a", []push.Draft{{Type: "x"}})
	if !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("append to a dead Redis: %v", err)
	}
	if _, _, err := s.Read(ctx, "a", 0, 1); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("read: %v", err)
	}
	if _, err := s.Info(ctx, []string{"a", "b"}); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("info: %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("ping: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("failing took %v", d)
	}
	// A caller deadline is honoured and visible in the error.
	dctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-dctx.Done()
	if _, err := s.Append(dctx, "a", []push.Draft{{Type: "x"}}); !errors.Is(err, push.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("append with an expired deadline: %v", err)
	}
}

// Scripts survive SCRIPT FLUSH (NOSCRIPT fallback), for Info's pipeline too.
func TestScriptFlush(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rc := srv.Client(t)
	s := newStore(t, rc, redisstore.Config{})
	appendN(t, s, "a", 1, 1)
	rc.ScriptFlush(testCtx(t))
	appendN(t, s, "a", 2, 1)
	rc.ScriptFlush(testCtx(t))
	if in, err := s.Info(testCtx(t), []string{"a", "b"}); err != nil || in[0].Last != 2 {
		t.Fatalf("info after SCRIPT FLUSH: %+v %v", in, err)
	}
}

// sink records announcements and resyncs.
type sink struct {
	mu      sync.Mutex
	evs     []*push.Event
	resyncs int
}

func (s *sink) Deliver(ev *push.Event) { s.mu.Lock(); s.evs = append(s.evs, ev); s.mu.Unlock() }
func (s *sink) Resync()                { s.mu.Lock(); s.resyncs++; s.mu.Unlock() }
func (s *sink) state() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.evs), s.resyncs
}

func eventually(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// (e) Killing the Pub/Sub connection triggers Resync once the subscription
// is back, and delivery resumes.
func TestListenerResyncAfterConnectionKill(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rc := srv.Client(t)
	s := newStore(t, rc, redisstore.Config{ResyncInterval: time.Hour})
	sk := &sink{}
	l, err := s.Listen(sk)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Watch(testCtx(t), "a"); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, "a", 1, 1)
	eventually(t, func() bool { n, _ := sk.state(); return n == 1 })
	for round := 1; round <= 2; round++ {
		_, before := sk.state()
		if n, err := rc.ClientKillByFilter(testCtx(t), "TYPE", "pubsub").Result(); err != nil || n != 1 {
			t.Fatalf("CLIENT KILL TYPE pubsub: killed %d, %v", n, err)
		}
		eventually(t, func() bool { _, r := sk.state(); return r > before })
		appendN(t, s, "a", 1+round, 1)
		eventually(t, func() bool { n, _ := sk.state(); return n == 1+round })
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	for i, e := range sk.evs {
		if e.Offset != uint64(i+1) {
			t.Fatalf("announcement %d has offset %d", i, e.Offset)
		}
	}
}

// Resync also comes every ResyncInterval, and a restart of Redis is
// survived by the listener.
func TestListenerBackstopAndRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	s := newStore(t, srv.Client(t), redisstore.Config{ResyncInterval: 100 * time.Millisecond})
	sk := &sink{}
	l, err := s.Listen(sk)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Watch(testCtx(t), "a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { _, r := sk.state(); return r >= 3 })
	srv.Kill()
	srv.Restart(t)
	// Appends may succeed before the listener has resubscribed: those
	// announcements are lost and covered by the Resync that follows. Keep
	// appending until one is delivered.
	_, resyncsBefore := sk.state()
	eventually(t, func() bool {
		_, _ = s.Append(testCtx(t), "a", []push.Draft{{Type: "x"}})
		time.Sleep(50 * time.Millisecond)
		n, _ := sk.state()
		return n >= 1
	})
	// The Resync after resubscribing can land just after the first new
	// announcement: wait for it (bounded), do not sample.
	eventually(t, func() bool { _, r := sk.state(); return r > resyncsBefore })
}

// Watch fails with ErrUnavailable when Redis is down, and Listener.Close
// leaves no goroutine behind.
func TestListenerNoGoroutineLeak(t *testing.T) {
	srv := redistest.StartServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialerRetries: 1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	s := newStore(t, client, redisstore.Config{OpTimeout: 300 * time.Millisecond})
	if err := s.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	for i := 0; i < 5; i++ {
		l, err := s.Listen(&sink{})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Watch(testCtx(t), "a"); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := s.Listen(&sink{})
	srv.Kill()
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.Watch(wctx, "b"); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("Watch with Redis down: %v", err)
	}
	_ = s.Close() // closes l too
	eventually(t, func() bool { return runtime.NumGoroutine() <= base })
}

// (c) Sentinel failover while appending: every acknowledged append is
// readable afterwards under the same epoch, or the epoch changed; no
// (epoch, offset) names two events; every failure is a returned error.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	set := redistest.StartSentinel(t)
	opts, err := redisstore.ParseURL(set.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.DialTimeout, opts.DialerRetries, opts.MaxRetries = 300*time.Millisecond, 1, 0
	client := redis.NewUniversalClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	s := newStore(t, client, redisstore.Config{OpTimeout: time.Second})
	sk := &sink{}
	l, err := s.Listen(sk)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Watch(testCtx(t), "f"); err != nil {
		t.Fatal(err)
	}

	type ack struct {
		res  push.AppendResult
		data string
	}
	var (
		mu     sync.Mutex
		acks   []ack
		failed int
	)
	lastEpoch := func() (first, last string) {
		mu.Lock()
		defer mu.Unlock()
		if len(acks) == 0 {
			return "", ""
		}
		return acks[0].res.Epoch, acks[len(acks)-1].res.Epoch
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	stop := make(chan struct{})
	done := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); <-done }
	t.Cleanup(halt) // runs before the store's Close, even when the test fails
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data := fmt.Sprintf("seq-%d", i)
			res, err := s.Append(ctx, "f", []push.Draft{{Type: "x", Data: []byte(data)}})
			mu.Lock()
			if err != nil {
				if !errors.Is(err, push.ErrUnavailable) {
					t.Errorf("append error does not wrap ErrUnavailable: %v", err)
				}
				failed++
			} else {
				if len(res) != 1 || res[0].Offset == 0 || res[0].Epoch == "" {
					t.Errorf("malformed ack %+v", res)
				}
				acks = append(acks, ack{res[0], data})
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// Some acknowledged appends in each epoch: the test is about the ones
	// before the kill and the ones after the failover.
	inEpoch := func(last bool) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range acks {
			if (last && a.res.Epoch == acks[len(acks)-1].res.Epoch) || (!last && a.res.Epoch == acks[0].res.Epoch) {
				n++
			}
		}
		return n
	}
	eventually(t, func() bool { return inEpoch(false) >= 20 })
	set.KillPrimary(t)
	if _, err := set.WaitFailover(ctx); err != nil {
		t.Fatal(err)
	}
	// Keep appending until writes succeed on the new primary.
	eventually(t, func() bool { f, l := lastEpoch(); return f != l })
	eventually(t, func() bool { return inEpoch(true) >= 20 })
	halt()

	in := waitReady(t, s, "f")
	evs, _, err := s.Read(testCtx(t), "f", 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	byOffset := map[uint64]string{}
	for i, e := range evs {
		if e.Offset != evs[0].Offset+uint64(i) {
			t.Fatalf("gap in the stream at %d", e.Offset)
		}
		byOffset[e.Offset] = string(e.Data)
	}
	seen := map[pair]string{}
	epochs := map[string]int{}
	for _, a := range acks {
		p := pair{a.res.Epoch, a.res.Offset}
		if prev, ok := seen[p]; ok && prev != a.data {
			t.Fatalf("(%s, %d) acknowledged for %q and %q", p.epoch, p.offset, prev, a.data)
		}
		seen[p] = a.data
		epochs[a.res.Epoch]++
		if a.res.Epoch == in.Epoch && byOffset[a.res.Offset] != a.data {
			t.Fatalf("acknowledged %q at (%s, %d) is not readable (found %q) and the epoch did not change",
				a.data, a.res.Epoch, a.res.Offset, byOffset[a.res.Offset])
		}
	}
	if acks[0].res.Epoch == in.Epoch {
		t.Fatal("epoch did not change across a failover")
	}
	// Acknowledged before the failover and replicated: still readable by
	// offset (the data, not the epoch, survives).
	lostTail := 0
	for _, a := range acks {
		if a.res.Epoch == acks[0].res.Epoch && byOffset[a.res.Offset] != a.data {
			lostTail++
		}
	}
	var keys []string
	for e, n := range epochs {
		keys = append(keys, fmt.Sprintf("%s×%d", e, n))
	}
	sort.Strings(keys)
	t.Logf("acks=%d failed=%d epochs=%v final=%+v lost-before-failover=%d", len(acks), failed, keys, in, lostTail)
	// The listener follows the new primary: Resync, then live delivery.
	eventually(t, func() bool { _, r := sk.state(); return r > 0 })
	delivered, _ := sk.state()
	eventually(t, func() bool {
		_, _ = s.Append(testCtx(t), "f", []push.Draft{{Type: "x"}})
		time.Sleep(50 * time.Millisecond)
		n, _ := sk.state()
		return n > delivered
	})
	sk.mu.Lock()
	last := sk.evs[len(sk.evs)-1]
	sk.mu.Unlock()
	if last.Epoch != in.Epoch {
		t.Fatalf("announcement after failover has epoch %s, stream %s", last.Epoch, in.Epoch)
	}
}

// A failover to a replica that missed the tail: the promoted replica has
// fewer events, so offsets are handed out again, under a new epoch.
func TestEpochChangesOnLaggingReplicaPromotion(t *testing.T) {
	t.Parallel()
	primary := redistest.StartServer(t)
	replica := redistest.StartServer(t, redistest.WithReplicaOf(primary.Addr()))
	ps := newStore(t, primary.Client(t), redisstore.Config{KeyPrefix: "lag"})
	rs := newStore(t, replica.Client(t), redisstore.Config{KeyPrefix: "lag"})
	const topic = "lag"
	acked := map[pair]string{}
	record := func(res []push.AppendResult, from int) {
		for i, r := range res {
			acked[pair{r.Epoch, r.Offset}] = fmt.Sprintf("event-%d", from+i)
		}
	}
	record(appendN(t, ps, topic, 1, 5), 1)
	eventually(t, func() bool { return info(t, rs, topic).Last == 5 })
	// Cut the replication link while the replica is stalled, so the next
	// acknowledged events never reach it.
	replica.Pause()
	if err := primary.Client(t).ClientKillByFilter(testCtx(t), "TYPE", "replica").Err(); err != nil {
		t.Fatal(err)
	}
	record(appendN(t, ps, topic, 6, 3), 6)
	primary.Kill()
	replica.Resume()
	if err := replica.Client(t).ReplicaOf(testCtx(t), "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	in := waitReady(t, rs, topic)
	if in.Last != 5 {
		t.Fatalf("promoted replica has Last %d, want 5 (it missed the tail)", in.Last)
	}
	// Until its first append the promoted replica reports the epoch it
	// holds, with the head it has (a reader past it is ahead); the append
	// begins a new epoch that forks at 5.
	old := in.Epoch
	res := appendN(t, rs, topic, 100, 3)
	if in = info(t, rs, topic); in.Epoch == old || len(in.Lineage) != 1 || in.Lineage[0] != (push.Fork{Epoch: old, At: 5}) {
		t.Fatalf("after the promoted replica's first append: %+v, want a new epoch forked from %s at 5", in, old)
	}
	for p := range acked {
		if p.epoch == in.Epoch {
			t.Fatalf("promoted replica kept epoch %s although it lost acknowledged events", in.Epoch)
		}
	}
	for i, r := range res {
		if r.Offset != uint64(6+i) {
			t.Fatalf("offset %d, want %d", r.Offset, 6+i)
		}
		if old, ok := acked[pair{r.Epoch, r.Offset}]; ok {
			t.Fatalf("(%s, %d) acknowledged for %q and again for event-%d", r.Epoch, r.Offset, old, 100+i)
		}
	}
}

// A stalled Redis (SIGSTOP: the connection stays open but silent) is
// detected by the listener's pings; after it resumes, Resync and delivery
// follow.
func TestListenerStalledServer(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	silent := &logWatch{msg: "pub/sub connection silent; reconnecting"}
	s := newStore(t, srv.Client(t), redisstore.Config{ResyncInterval: time.Hour, OpTimeout: 500 * time.Millisecond,
		Logger: slog.New(silent)})
	sk := &sink{}
	l, err := s.Listen(sk)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Watch(testCtx(t), "a"); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	t.Logf("paused at %v", time.Now().Format("15:04:05.000"))
	// Stay paused until the listener has found the connection silent (its
	// unanswered ping), which is what this test is about.
	eventually(t, silent.seen)
	srv.Resume()
	t.Logf("resumed at %v", time.Now().Format("15:04:05.000"))
	eventually(t, func() bool { _, r := sk.state(); return r >= 1 })
	eventually(t, func() bool {
		_, _ = s.Append(testCtx(t), "a", []push.Draft{{Type: "x"}})
		time.Sleep(50 * time.Millisecond)
		n, _ := sk.state()
		return n >= 1
	})
}

// logWatch is a slog handler that notes whether a message was logged.
type logWatch struct {
	msg string
	hit atomic.Bool
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	if r.Message == w.msg {
		w.hit.Store(true)
	}
	return nil
}
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *logWatch) WithGroup(string) slog.Handler      { return w }
func (w *logWatch) seen() bool                         { return w.hit.Load() }

// syncSink records, at each Resync, what the listener's Synced said.
type syncSink struct {
	sink
	l              atomic.Pointer[push.SyncedListener]
	syncedAtResync []bool
}

func (s *syncSink) Resync() {
	synced := false
	if l := s.l.Load(); l != nil {
		synced = (*l).Synced()
	}
	s.mu.Lock()
	s.resyncs++
	s.syncedAtResync = append(s.syncedAtResync, synced)
	s.mu.Unlock()
}

// The listener is synced (push.SyncedListener) while its connection is up
// and heard from; a stalled Redis or a killed connection makes it not
// synced, and it is synced again only after the Resync that makes up for
// what was lost was asked for.
func TestListenerSyncedFollowsTheConnection(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rc := srv.Client(t)
	s := newStore(t, rc, redisstore.Config{ResyncInterval: time.Hour})
	sk := &syncSink{}
	pl, err := s.Listen(sk)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := pl.(push.SyncedListener)
	if !ok {
		t.Fatal("the Redis listener does not implement push.SyncedListener")
	}
	sk.l.Store(&l)
	if err := pl.Watch(testCtx(t), "a"); err != nil {
		t.Fatal(err)
	}
	if !l.Synced() {
		t.Fatal("not synced with a confirmed subscription")
	}
	check := func(what string) {
		t.Helper()
		sk.mu.Lock()
		defer sk.mu.Unlock()
		if len(sk.syncedAtResync) == 0 || sk.syncedAtResync[len(sk.syncedAtResync)-1] {
			t.Fatalf("%s: resyncs %v: the last Resync came while Synced was already true", what, sk.syncedAtResync)
		}
	}

	srv.Pause()
	eventually(t, func() bool { return !l.Synced() })
	srv.Resume()
	eventually(t, func() bool { _, r := sk.state(); return r >= 1 && l.Synced() })
	check("after a stall")

	_, before := sk.state()
	if n, err := rc.ClientKillByFilter(testCtx(t), "TYPE", "pubsub").Result(); err != nil || n != 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub: killed %d, %v", n, err)
	}
	eventually(t, func() bool { _, r := sk.state(); return r > before && l.Synced() })
	check("after a killed connection")
	appendN(t, s, "a", 1, 1)
	eventually(t, func() bool { n, _ := sk.state(); return n == 1 })
}
