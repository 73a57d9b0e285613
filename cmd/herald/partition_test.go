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
	"github.com/heraldpush/herald/push/redistest"
	"github.com/heraldpush/herald/push/server"
)

// runGossipNode starts an in-process node whose gossip goes through net.
func runGossipNode(t *testing.T, net *gossiptest.Network, name, redisURL, join string) *Main {
	t.Helper()
	return runGossipNodeWith(t, net, name, redisURL, join, nil)
}

// runGossipNodeWith is runGossipNode with an injected telemetry (nil: none
// injected, Run sets up its own).
func runGossipNodeWith(t *testing.T, net *gossiptest.Network, name, redisURL, join string, tel *observability.Telemetry) *Main {
	t.Helper()
	tr, err := net.NewTransport(name, "127.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain()
	m.Telemetry = tel
	m.GossipTransport = tr
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
	// Subscribers pinned to one side each; publishers on both sides.
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
	session := server.FormatSessionID(p.Session())

	net.Partition([]string{"a"}, []string{"b", "c"})
	eventually(t, 30*time.Second, "each side declares the other dead", func() bool {
		return len(aliveSet(a)) == 1 && len(aliveSet(b)) == 2 && len(aliveSet(c)) == 2
	})
	// Both sides keep delivering: Redis is shared, gossip is not needed.
	waitAcked(t, pubA, 20)
	waitAcked(t, pubC, 20)
	// The session resumes on b while a, cut off, still serves it.
	moved := openRaw(t, b.URL(), "p-0", old.hello)
	select {
	case <-old.done:
		t.Fatal("a closed its stream during the partition; it cannot have heard of the takeover")
	case <-time.After(500 * time.Millisecond):
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
			r, ok := m.Cluster.Lookup(session)
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

	heads := pubA.stop()
	for k, v := range pubC.stop() {
		heads[k] = max(heads[k], v)
	}
	eventually(t, 60*time.Second, "fleet caught up", func() bool { return f.caughtUp(heads) == 0 })
	r := f.report(heads)
	t.Logf("partition and heal: %d clients received %d events; lost %d, duplicated %d; gossip dropped %d packets, refused %d dials",
		r.clients, r.received, r.lost, r.dups, net.Dropped(), net.Refused())
	if r.lost != 0 || r.dups != 0 || r.resets != 0 {
		t.Fatalf("lost %d, duplicated %d, resets %d", r.lost, r.dups, r.resets)
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
