package cluster

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestMembershipAndMetadata(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]

	if addr := a.Local().GossipAddr; !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("Local().GossipAddr = %q, want 127.0.0.1:<picked port>", addr)
	}
	for _, n := range nodes {
		for _, peer := range nodes {
			m, _ := memberNamed(n.Members(), peer.name)
			want := Member{Name: peer.name, Region: "test", Zone: "z-" + peer.name,
				URL: "http://" + peer.name + ".test:8080", Version: "v-test", State: StateAlive,
				GossipAddr: peer.Local().GossipAddr}
			m.Health = 0
			if m != want {
				t.Fatalf("%s sees %+v, want %+v", n.name, m, want)
			}
		}
	}

	a.SetLoad(5, 100)
	a.SetLoad(7, 100) // coalesced with the previous call
	b.SetDraining()
	for _, n := range []*testNode{b, c} {
		eventually(t, 5*time.Second, func() bool {
			m, _ := memberNamed(n.Members(), "a")
			return m.Streams == 7 && m.Target == 100
		}, "%s sees a's load 7/100", n.name)
	}
	for _, n := range []*testNode{a, c} {
		eventually(t, 5*time.Second, func() bool { return stateOf(n, "b") == StateDraining },
			"%s sees b draining", n.name)
	}
	if got := b.Local().State; got != StateDraining {
		t.Fatalf("b.Local().State = %q, want draining", got)
	}
	if s := a.Stats(); s.Members[StateAlive] != 2 || s.Members[StateDraining] != 1 {
		t.Fatalf("a.Stats().Members = %v", s.Members)
	}

	// Graceful leave is reported as left, not dead.
	if err := c.Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	_ = c.Close()
	for _, n := range []*testNode{a, b} {
		eventually(t, 5*time.Second, func() bool { return stateOf(n, "c") == StateLeft },
			"%s sees c left, has %v", n.name, n.Members())
	}
}

func TestClaimTakeoverAndRelease(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]

	ra := a.Claim("s1", []string{"t1", "t2"}, "trace-a")
	if ra.Node != "a" || ra.Incarnation == 0 || ra.Region != "test" {
		t.Fatalf("Claim = %+v", ra)
	}
	for _, n := range []*testNode{b, c} {
		eventually(t, 5*time.Second, func() bool {
			node, inc := ownerOf(n, "s1")
			return node == "a" && inc == ra.Incarnation
		}, "%s learns a's claim", n.name)
	}
	if p := presence(c, "t2"); len(p) != 1 || p[0].Session != "s1" || p[0].Trace != "trace-a" {
		t.Fatalf("c.PresenceAll(t2) = %+v", p)
	}

	rb := b.Claim("s1", []string{"t1"}, "trace-b")
	if rb.Incarnation <= ra.Incarnation {
		t.Fatalf("takeover incarnation %d not above %d", rb.Incarnation, ra.Incarnation)
	}
	eventually(t, 5*time.Second, func() bool { return len(a.revs.forSession("s1")) > 0 }, "a revoked s1")
	for _, n := range nodes {
		eventually(t, 5*time.Second, func() bool {
			node, inc := ownerOf(n, "s1")
			return node == "b" && inc == rb.Incarnation
		}, "%s converges to b's claim", n.name)
	}
	quiet(t, nodes...)
	revs := a.revs.forSession("s1")
	want := Revocation{Session: "s1", Incarnation: ra.Incarnation, Reason: ReasonTakeover, By: "b"}
	if len(revs) != 1 || revs[0] != want {
		t.Fatalf("a's revocations of s1 = %+v, want exactly [%+v]", revs, want)
	}
	if n := len(b.revs.forSession("s1")) + len(c.revs.forSession("s1")); n != 0 {
		t.Fatalf("b or c revoked s1 %d times", n)
	}
	if p := presence(c, "t2"); len(p) != 0 {
		t.Fatalf("c.PresenceAll(t2) after takeover = %+v, want none", p)
	}

	// Same-node takeover revokes the older local claim.
	r1 := a.Claim("s2", nil, "")
	r2 := a.Claim("s2", nil, "")
	eventually(t, 2*time.Second, func() bool { return len(a.revs.forSession("s2")) == 1 }, "a revokes its own older s2")
	if got := a.revs.forSession("s2")[0]; got != (Revocation{Session: "s2", Incarnation: r1.Incarnation, Reason: ReasonTakeover, By: "a"}) || r2.Incarnation <= r1.Incarnation {
		t.Fatalf("same-node takeover: %+v (r1 %d r2 %d)", got, r1.Incarnation, r2.Incarnation)
	}

	// Release leaves a readable tombstone everywhere.
	b.Release("s1", ra.Incarnation) // not b's claim: no effect
	b.Release("s1", rb.Incarnation)
	for _, n := range nodes {
		eventually(t, 5*time.Second, func() bool {
			r, ok := find(n, "s1")
			return ok && r.Ended && r.Trace == "trace-b" && r.Incarnation == rb.Incarnation
		}, "%s finds s1's tombstone", n.name)
		if p := presence(n, "t1"); len(p) != 0 {
			t.Fatalf("%s PresenceAll(t1) after release = %+v", n.name, p)
		}
	}
	if s := b.Stats(); s.RecordsTombstoned < 1 {
		t.Fatalf("b.Stats() = %+v", s)
	}
}

func TestDuplicateDeliveryDoesNotDoubleRevoke(t *testing.T) {
	a := startNode(t, "a")
	mine := a.Claim("dup", []string{"t"}, "")
	newer := Record{Session: "dup", Node: "ghost", Region: "test", Incarnation: mine.Incarnation + 1, Topics: []string{"t"}}
	msg, _ := encodeRecordMsg("ghost", newer, false, 0)
	d := delegate{a.Cluster}
	for range 3 {
		d.NotifyMsg(msg)
	}
	state, _ := encodeStateJSON("ghost", []Record{newer}, []bool{false}, 0) // a peer from before digests
	d.MergeRemoteState(state, false)
	d.NotifyMsg([]byte{wireVersion, msgRecord, '{'}) // malformed
	d.NotifyMsg([]byte{9, msgRecord})                // unknown version

	eventually(t, 2*time.Second, func() bool {
		s := a.Stats()
		return s.RecordsReceived == 3 && s.Duplicates == 3 && s.Merges == 1 && s.Invalid == 2
	}, "all injected messages processed: %+v", a.Stats())
	eventually(t, 2*time.Second, func() bool { return len(a.revs.forSession("dup")) > 0 }, "revocation delivered")
	if revs := a.revs.forSession("dup"); len(revs) != 1 || revs[0].By != "ghost" || revs[0].Incarnation != mine.Incarnation {
		t.Fatalf("revocations = %+v, want one by ghost of %d", revs, mine.Incarnation)
	}
	if node, _ := ownerOf(a, "dup"); node != "ghost" {
		t.Fatalf("owner = %q", node)
	}

	// Push/pull state alone (no broadcast) revokes too.
	mine = a.Claim("merged", nil, "")
	newer = Record{Session: "merged", Node: "ghost", Incarnation: mine.Incarnation + 1}
	state, _ = encodeStateJSON("ghost", []Record{newer}, []bool{false}, 0)
	d.MergeRemoteState(state, true)
	d.MergeRemoteState(state, false)
	eventually(t, 2*time.Second, func() bool { return a.Stats().Merges == 3 }, "states merged")
	eventually(t, 2*time.Second, func() bool { return len(a.revs.forSession("merged")) > 0 }, "revocation by merge")
	if revs := a.revs.forSession("merged"); len(revs) != 1 || revs[0].Incarnation != mine.Incarnation {
		t.Fatalf("revocations = %+v", revs)
	}
}

func TestSelfAuthorityTombstonesStaleOwnRecord(t *testing.T) {
	// A record naming this node for a claim it does not serve (as after a
	// restart under the same name) is replaced by a tombstone.
	a := startNode(t, "a")
	stale := Record{Session: "old", Node: "a", Region: "test", Incarnation: 42, Topics: []string{"t"}}
	msg, _ := encodeRecordMsg("b", stale, false, 0)
	delegate{a.Cluster}.NotifyMsg(msg)
	eventually(t, 2*time.Second, func() bool {
		r, ok := a.Lookup("old")
		return ok && r.Ended && r.Incarnation == 42
	}, "stale own record tombstoned")
	if p := a.Presence("t"); len(p) != 0 || a.Stats().Corrections != 1 {
		t.Fatalf("presence %+v, stats %+v", p, a.Stats())
	}
}

func TestAdminDisconnect(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	ra := a.Claim("adm", []string{"t"}, "")
	eventually(t, 5*time.Second, func() bool { n, _ := ownerOf(c, "adm"); return n == "a" }, "c learns adm")
	got, err := c.Disconnect(ctx, "adm")
	if err != nil || got.Node != "a" || got.Incarnation != ra.Incarnation {
		t.Fatalf("Disconnect = %+v, %v", got, err)
	}
	eventually(t, 5*time.Second, func() bool { return len(a.revs.forSession("adm")) == 1 }, "a revokes adm")
	if r := a.revs.forSession("adm")[0]; r != (Revocation{Session: "adm", Incarnation: ra.Incarnation, Reason: ReasonAdmin, By: "c"}) {
		t.Fatalf("revocation = %+v", r)
	}
	// The owner's record of a revoked claim becomes a tombstone even if the
	// application never calls Release.
	eventually(t, 5*time.Second, func() bool { r, ok := find(c, "adm"); return ok && r.Ended }, "adm tombstoned, as c finds it")

	// Local disconnect.
	b.Claim("loc", nil, "")
	if _, err := b.Disconnect(ctx, "loc"); err != nil {
		t.Fatalf("local Disconnect: %v", err)
	}
	eventually(t, 2*time.Second, func() bool { return len(b.revs.forSession("loc")) == 1 }, "b revokes loc")
	if r := b.revs.forSession("loc")[0]; r.Reason != ReasonAdmin || r.By != "b" {
		t.Fatalf("revocation = %+v", r)
	}

	if _, err := c.Disconnect(ctx, "nope"); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("Disconnect(unknown) = %v, want ErrUnknownSession", err)
	}
	gh := homedAt(c, "gh")
	ghost := Record{Session: gh, Node: "ghost", Incarnation: 1}
	msg, _ := encodeRecordMsg("ghost", ghost, false, 0)
	delegate{c.Cluster}.NotifyMsg(msg)
	eventually(t, 2*time.Second, func() bool { _, ok := c.Lookup(gh); return ok }, "ghost record stored on its home")
	if _, err := c.Disconnect(ctx, gh); !errors.Is(err, ErrOwnerUnreachable) {
		t.Fatalf("Disconnect(owner not a member) = %v, want ErrOwnerUnreachable", err)
	}
}

func TestCannotJoinWithoutCredentials(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	a.Claim("ok", []string{"t"}, "")
	eventually(t, 5*time.Second, func() bool { n, _ := ownerOf(b, "ok"); return n == "a" }, "b learns ok")

	t.Run("missing key", func(t *testing.T) {
		_, err := New(Config{PoolConfig: PoolConfig{NodeName: "x", Region: "test", BindAddr: "127.0.0.1"}})
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "Keys") {
			t.Fatalf("New without keys = %v, want ErrConfig naming Keys", err)
		}
	})
	other := make([]byte, 32)
	copy(other, "another key, another cluster....")
	cases := []struct {
		name string
		opt  option
	}{
		{"wrong key", func(c *Config) { c.Keys = [][]byte{other} }},
		{"no key in dev mode", func(c *Config) { c.Keys, c.Dev = nil, true }},
		{"other label", func(c *Config) { c.Label = "herald/elsewhere" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := startNode(t, "intruder", tc.opt, withSeeds(a), func(c *Config) { c.RejoinInterval = 50 * time.Millisecond })
			x.Claim("evil", []string{"t"}, "")
			eventually(t, 5*time.Second, func() bool { return x.Stats().JoinFailures >= 3 }, "three failed join attempts")
			// The join loop keeps trying every 50 ms: one attempt may be
			// in flight, counted as attempted and not yet as failed.
			if s := x.Stats(); s.JoinAttempts-s.JoinFailures > 1 {
				t.Fatalf("intruder joined: %+v", s)
			}
			for _, n := range nodes {
				if got := memberSummary(n.Members(), StateAlive, StateDead, StateLeft, StateDraining); got != "a,b" {
					t.Fatalf("%s members = %s, want a,b", n.name, got)
				}
				if _, ok := n.Lookup("evil"); ok {
					t.Fatalf("%s learned the intruder's record", n.name)
				}
				if s := n.Stats(); s.RecordsLive != 1 {
					t.Fatalf("%s records = %d, want 1", n.name, s.RecordsLive)
				}
			}
			if got := memberSummary(x.Members(), StateAlive); got != "intruder" {
				t.Fatalf("intruder members = %s", got)
			}
		})
	}
}

func TestCrashDetectionAndRecordExpiry(t *testing.T) {
	const grace = 2 * time.Second
	var orphaned atomic.Int64 // OnExpire reports on every node
	nodes := startCluster(t, 3, func(c *Config) {
		c.DeadGrace = grace
		c.HomeReplicas = 3 // every node a home: both survivors hold c1
		c.OnExpire = func(n int) { orphaned.Add(int64(n)) }
	})
	a, b, c := nodes[0], nodes[1], nodes[2]
	c.Claim("c1", []string{"tc"}, "")
	for _, n := range []*testNode{a, b} {
		eventually(t, 5*time.Second, func() bool { return len(n.Presence("tc")) == 1 }, "%s sees c1", n.name)
	}

	crash := time.Now()
	_ = c.Close() // Shutdown without Leave
	var detected [2]time.Duration
	for i, n := range []*testNode{a, b} {
		eventually(t, 10*time.Second, func() bool { return stateOf(n, "c") == StateDead }, "%s sees c dead", n.name)
		detected[i] = time.Since(crash)
	}
	t.Logf("crash detected after %v (a) and %v (b) with preset %+v", detected[0].Round(time.Millisecond),
		detected[1].Round(time.Millisecond), LANTuning())
	// Kept during the grace period (readable for a reconnect), then forgotten.
	if _, ok := a.Lookup("c1"); !ok {
		t.Fatalf("c1 forgotten before DeadGrace")
	}
	for _, n := range []*testNode{a, b} {
		eventually(t, grace+5*time.Second, func() bool {
			_, ok := n.Lookup("c1")
			return !ok && len(n.Presence("tc")) == 0
		}, "%s forgets c1 after DeadGrace", n.name)
	}
	if gone := time.Since(crash); gone < grace {
		t.Fatalf("records expired %v after the crash, before DeadGrace %v", gone, grace)
	}
	// Both survivors reported the dead owner's live record as expired.
	eventually(t, 5*time.Second, func() bool { return orphaned.Load() == 2 }, "OnExpire on a and b (got %d)", orphaned.Load())
}

func TestDNSSeedReResolution(t *testing.T) {
	b := startNode(t, "b", func(c *Config) { c.BindAddr = "127.0.0.2" })
	_, port, err := splitSeed(b.Local().GossipAddr)
	if err != nil {
		t.Fatal(err)
	}
	var answer atomic.Value
	answer.Store([]string{"127.0.0.3"}) // nothing listens there
	var lookups atomic.Int32
	resolver := func(_ context.Context, host string) ([]string, error) {
		lookups.Add(1)
		if host != "seeds.herald.test" {
			return nil, fmt.Errorf("unexpected host %q", host)
		}
		return answer.Load().([]string), nil
	}
	x := startNode(t, "x", func(c *Config) {
		c.Join = []string{fmt.Sprintf("seeds.herald.test:%d", port)}
		c.Resolver = resolver
		c.RejoinInterval = 50 * time.Millisecond
	})
	if s := x.Stats(); s.JoinFailures == 0 || len(x.Members()) != 1 {
		t.Fatalf("first join should fail: %+v", s)
	}
	answer.Store([]string{"127.0.0.2"})
	waitMembers(t, []*testNode{b, x}, 5*time.Second)
	if lookups.Load() < 2 {
		t.Fatalf("lookups = %d", lookups.Load())
	}
}

func TestConfigValidation(t *testing.T) {
	key := GenerateKey()
	k, err := ParseKey(key)
	if err != nil || len(k) != 32 {
		t.Fatalf("ParseKey(GenerateKey()) = %d bytes, %v", len(k), err)
	}
	for _, bad := range []string{"", "!!", "AAAA", "AAAAAAAA"} {
		if _, err := ParseKey(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseKey(%q) = %v, want ErrConfig", bad, err)
		}
	}
	base := Config{PoolConfig: PoolConfig{NodeName: "n", Region: "r", Dev: true, BindAddr: "127.0.0.1"}}
	cases := map[string]func(*Config){
		"NodeName":     func(c *Config) { c.NodeName = "" },
		"Region":       func(c *Config) { c.Region = "" },
		"Keys[0]":      func(c *Config) { c.Keys = [][]byte{make([]byte, 5)} },
		"Join seed":    func(c *Config) { c.Join = []string{"no-port"} },
		"ProbeTimeout": func(c *Config) { c.Tuning.ProbeTimeout = time.Hour },
		"metadata":     func(c *Config) { c.HTTPURL = strings.Repeat(`"`, MaxURLLen) },
		"DeadGrace":    func(c *Config) { c.DeadGrace = -1 },
	}
	for want, mut := range cases {
		cfg := base
		mut(&cfg)
		if _, err := New(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: New = %v, want ErrConfig naming it", want, err)
		}
	}
	if err := ValidateClaim(strings.Repeat("s", MaxSessionLen+1), nil, ""); !errors.Is(err, ErrInvalidClaim) {
		t.Errorf("ValidateClaim(long session) = %v", err)
	}
	n := startNode(t, "v")
	if r := n.Claim("", nil, ""); r.Incarnation != 0 || n.Stats().InvalidClaims != 1 {
		t.Errorf("Claim(\"\") = %+v", r)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := n.Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Close = %v", err)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		a := startNode(t, "a")
		b := startNode(t, "b", withSeeds(a))
		c := startNode(t, "c", withSeeds(a))
		nodes := []*testNode{a, b, c}
		waitMembers(t, nodes, 10*time.Second)
		a.Claim("g", []string{"t"}, "")
		b.Claim("g", []string{"t"}, "")
		b.SetLoad(1, 2)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		eventually(t, 5*time.Second, func() bool { n, _ := ownerOf(c, "g"); return n == "b" }, "c learns g")
		if _, err := c.Disconnect(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			_ = n.Close()
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
