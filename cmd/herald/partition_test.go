package main

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster/gossiptest"
	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/redistest"
)

// runGossipNode starts an in-process node whose gossip goes through net.
func runGossipNode(t *testing.T, net *gossiptest.Network, name, redisURL, join string) *Main {
	t.Helper()
	return runGossipNodeWith(t, net, name, redisURL, join, nil)
}

// runGossipNodeWith is runGossipNode with an injected telemetry (nil: none
// injected, Run sets up its own); mutate adjusts the configuration. A nil
// net gossips over memberlist's own UDP/TCP transport on loopback, so the
// node can join herald processes.
func runGossipNodeWith(t *testing.T, net *gossiptest.Network, name, redisURL, join string, tel *observability.Telemetry, mutate ...func(*Config)) *Main {
	t.Helper()
	m := NewMain()
	m.Telemetry = tel
	if net != nil {
		tr, err := net.NewTransport(name, "127.0.0.1", nil)
		if err != nil {
			t.Fatal(err)
		}
		m.GossipTransport = tr
	}
	m.Config.Listen, m.Config.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	m.Config.Dev, m.Config.LogLevel, m.Config.NodeName = true, "warn", name
	m.Config.Redis = redisURL
	m.Config.GossipListen = "127.0.0.1:0"
	m.Config.Cluster.RebalanceWindow = 0
	m.Config.Cluster.RejoinInterval = time.Second
	if join != "" {
		m.Config.Join = []string{join}
	}
	m.LogOutput = io.Discard
	if testing.Verbose() {
		m.LogOutput = os.Stderr
	}
	for _, f := range mutate {
		f(&m.Config)
	}
	if err := m.Config.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func aliveSet(m *Main) map[string]bool {
	out := map[string]bool{}
	for _, mem := range m.Cluster.Members() {
		if mem.State == "alive" {
			out[mem.Name] = true
		}
	}
	return out
}

func TestClusterGossipPartitionAndHeal(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster partition test")
	}
	rd := redistest.StartServer(t)
	net := gossiptest.NewNetwork()
	a := runGossipNode(t, net, "a", rd.URL(), "")
	seed := a.Cluster.Local().GossipAddr
	b := runGossipNode(t, net, "b", rd.URL(), seed)
	c := runGossipNode(t, net, "c", rd.URL(), seed)
	nodes := []*Main{a, b, c}
	eventually(t, 20*time.Second, "three alive members everywhere", func() bool {
		for _, m := range nodes {
			if len(aliveSet(m)) != 3 {
				return false
			}
		}
		return true
	})

	topics := []string{"p-0", "p-1", "p-2", "p-3"}
	// Subscribers start on one side each; during the partition a third of
	// them cross it (below).
	f := newFleet(t, 40, topics, func(i int) []string {
		if i%2 == 0 {
			return []string{a.URL()}
		}
		return []string{b.URL()}
	}, 0)
	eventually(t, 30*time.Second, "fleet connected", func() bool { return f.ready() == len(f.clients) })
	pubA := startPublisher([]string{a.URL()}, topics, 20)
	pubC := startPublisher([]string{c.URL()}, topics, 20)
	waitAcked(t, pubA, 20)

	// A session served on a.
	old := openRaw(t, a.URL(), "p-0", "")
	p, err := push.ParseCursor(old.hello, []string{"p-0"}, []string{"local"})
	if err != nil {
		t.Fatal(err)
	}
	session := node.FormatSessionID(p.Session())

	net.Partition([]string{"a"}, []string{"b", "c"})
	eventually(t, 30*time.Second, "each side declares the other dead", func() bool {
		return len(aliveSet(a)) == 1 && len(aliveSet(b)) == 2 && len(aliveSet(c)) == 2
	})
	// Both sides keep delivering: Redis is shared, gossip is not needed.
	waitAcked(t, pubA, 20)
	waitAcked(t, pubC, 20)

	// The session resumes on b while a, cut off, still serves it: b owns
	// it, a's record still names a, and an event published after the
	// takeover reaches both streams.
	moved := openRaw(t, b.URL(), "p-0", old.hello)
	eventually(t, 10*time.Second, "b records itself as the owner", func() bool {
		r, ok := b.Cluster.Lookup(session)
		return ok && r.Node == "b"
	})
	head := max(pubA.snapshot()["p-0"], pubC.snapshot()["p-0"])
	nextOffset(t, moved, head)
	nextOffset(t, old, head)
	if r, ok := a.Cluster.Lookup(session); !ok || r.Node != "a" {
		t.Fatalf("a's record of the session during the partition: %+v, %v; want owned by a", r, ok)
	}

	// Subscribers cross the partition: every third client closes its
	// connection, misses events, and resumes with its cursor on a node of
	// the other side.
	type mover struct {
		c  *fleetClient
		to string
		at time.Time
	}
	var movers []mover
	for i, fc := range f.clients {
		if i%3 != 0 {
			continue
		}
		to := a.URL()
		if i%2 == 0 { // on a
			to = map[bool]string{true: b.URL(), false: c.URL()}[i%12 == 0]
		}
		movers = append(movers, mover{c: fc, to: to})
		f.disconnect(fc)
	}
	waitAcked(t, pubA, 20)
	waitAcked(t, pubC, 20)
	for i := range movers {
		movers[i].at = time.Now()
		f.resume(movers[i].c, []string{movers[i].to})
	}
	// Every mover reaches, on its new side and while gossip is still cut,
	// the heads acknowledged after it moved (so it received events there).
	waitAcked(t, pubA, 20)
	waitAcked(t, pubC, 20)
	heads := pubA.snapshot()
	for k, v := range pubC.snapshot() {
		heads[k] = max(heads[k], v)
	}
	eventually(t, 30*time.Second, "every mover caught up on the other side", func() bool {
		for _, m := range movers {
			m.c.mu.Lock()
			n := len(m.c.connects)
			ok := n > 0 && m.c.connects[n-1].endpoint == m.to && m.c.connects[n-1].at.After(m.at) && m.c.last >= heads[m.c.topic]
			m.c.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})
	if len(aliveSet(a)) != 1 || len(aliveSet(b)) != 2 {
		t.Fatal("the partition healed before the movers caught up")
	}
	select {
	case <-old.done:
		t.Fatal("a closed its stream during the partition; it cannot have heard of the takeover")
	default:
	}

	tHeal := time.Now()
	net.Heal()
	select {
	case <-old.done:
		t.Logf("after heal: the stale stream on a closed %v later", time.Since(tHeal).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("a still serves the session 30s after the heal")
	}
	eventually(t, 30*time.Second, "ownership converged on b everywhere", func() bool {
		for _, m := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			r, ok, _ := m.Cluster.Find(ctx, session)
			cancel()
			if !ok || r.Node != "b" || r.Ended {
				return false
			}
		}
		return len(aliveSet(a)) == 3 && len(aliveSet(b)) == 3 && len(aliveSet(c)) == 3
	})
	select {
	case <-moved.done:
		t.Fatal("the new owner's stream was closed")
	default:
	}

	heads = pubA.stop()
	for k, v := range pubC.stop() {
		heads[k] = max(heads[k], v)
	}
	eventually(t, 60*time.Second, "fleet caught up", func() bool { return f.caughtUp(heads) == 0 })
	r := f.report(heads)
	t.Logf("partition and heal: %d clients (%d crossed the partition) received %d events; lost %d, duplicated %d; gossip dropped %d packets, refused %d dials",
		r.clients, len(movers), r.received, r.lost, r.dups, net.Dropped(), net.Refused())
	if r.lost != 0 || r.dups != 0 || r.resets != 0 || r.sessionChanges != 0 {
		t.Fatalf("lost %d, duplicated %d, resets %d, session changes %d", r.lost, r.dups, r.resets, r.sessionChanges)
	}
}

// nextOffset returns the offset of the first event on s above after,
// reading s's events in order (bounded).
func nextOffset(t *testing.T, s *rawStream, after uint64) uint64 {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-s.events:
			offs, err := push.DecodeOffsets(ev.ID, 1, nil)
			if err != nil || len(offs) != 1 {
				t.Fatalf("event id %q: %v", ev.ID, err)
			}
			if offs[0] > after {
				return offs[0]
			}
		case <-s.done:
			t.Fatal("stream closed")
		case <-deadline:
			t.Fatalf("no event above offset %d within 20s", after)
		}
	}
}

func TestMembersCommandPrintsTheCluster(t *testing.T) {
	rd := redistest.StartServer(t)
	net := gossiptest.NewNetwork()
	a := runGossipNode(t, net, "a", rd.URL(), "")
	b := runGossipNode(t, net, "b", rd.URL(), a.Cluster.Local().GossipAddr)
	eventually(t, 20*time.Second, "two members", func() bool { return len(aliveSet(b)) == 2 })
	var out strings.Builder
	cmd := newRootCommand(func() []string { return nil })
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"members", "--admin", b.AdminURL()})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "a ") ||
		!strings.HasPrefix(lines[2], "b *") || !strings.Contains(lines[1], "alive") || !strings.Contains(lines[1], a.URL()) {
		t.Fatalf("herald members printed:\n%s", out.String())
	}
}
