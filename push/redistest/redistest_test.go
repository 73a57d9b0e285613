package redistest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/redistest"
	"github.com/redis/go-redis/v9"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	s := redistest.StartServer(t)
	if s.Port() == 6379 {
		t.Fatal("must never use the default port")
	}
	if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") {
		t.Fatalf("URL = %q", s.URL())
	}
	ctx := ctxT(t)
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Defaults: no persistence, so a kill + restart loses the key.
	s.Kill()
	if s.Running() {
		t.Fatal("still running after Kill")
	}
	s.Restart(t)
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after restart without persistence: exists=%d err=%v", n, err)
	}
}

func TestServerRestartReloadsRDB(t *testing.T) {
	t.Parallel()
	s := redistest.StartServer(t)
	ctx := ctxT(t)
	c := s.Client(t)
	port := s.Port()
	c.Set(ctx, "saved", "1", 0)
	if err := c.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	c.Set(ctx, "unsaved", "1", 0)
	s.Kill()
	s.Restart(t)
	if s.Port() != port {
		t.Fatalf("port changed %d -> %d", port, s.Port())
	}
	if n, _ := c.Exists(ctx, "saved").Result(); n != 1 {
		t.Fatal("saved key lost")
	}
	if n, _ := c.Exists(ctx, "unsaved").Result(); n != 0 {
		t.Fatal("unsaved key survived a SIGKILL without AOF")
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "dump.rdb")); err != nil {
		t.Fatal(err)
	}
}

func TestServerAOFSurvivesStop(t *testing.T) {
	t.Parallel()
	s := redistest.StartServer(t, redistest.WithAppendOnly(true))
	ctx := ctxT(t)
	c := s.Client(t)
	c.Set(ctx, "k", "v", 0)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	s.Restart(t)
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("get after graceful restart with AOF: %q %v", v, err)
	}
}

func TestReplicaOf(t *testing.T) {
	t.Parallel()
	p := redistest.StartServer(t)
	r := redistest.StartServer(t, redistest.WithReplicaOf(p.Addr()))
	ctx := ctxT(t)
	p.Client(t).Set(ctx, "k", "v", 0)
	rc := r.Client(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, _ := rc.Get(ctx, "k").Result(); v == "v" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("replica never got the key")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3} {
		c := redistest.StartCluster(t, n)
		if !strings.HasPrefix(c.URL(), "redis+cluster://127.0.0.1:") || len(c.Addrs()) != n {
			t.Fatalf("URL %q addrs %v", c.URL(), c.Addrs())
		}
		ctx := ctxT(t)
		cl := c.Client(t)
		for _, k := range []string{"a", "b", "c", "{x}1", "{x}2"} {
			if err := cl.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatalf("masters=%d set %s: %v", n, k, err)
			}
		}
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	set := redistest.StartSentinel(t)
	if got := set.URL(); !strings.HasPrefix(got, "redis+sentinel://127.0.0.1:") || !strings.HasSuffix(got, "/mymaster") {
		t.Fatalf("URL = %q", got)
	}
	if len(set.SentinelAddrs()) != 3 {
		t.Fatal(set.SentinelAddrs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := set.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old := set.KillPrimary(t)
	start := time.Now()
	addr, err := set.WaitFailover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover %s -> %s in %v", old, addr, time.Since(start).Round(time.Millisecond))
	if addr == old {
		t.Fatal("no new primary")
	}
	// The failover client follows the new primary.
	for {
		err := c.Set(ctx, "k2", "v", 0).Err()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("writes never resumed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = redis.Nil
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	s := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx := ctxT(t)
	s.Pause()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("a paused server answered")
	}
	s.Resume()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("after Resume: %v", err)
	}
	s.Pause()
	s.Kill() // works on a stopped process too
	if s.Running() {
		t.Fatal("still running")
	}
}
