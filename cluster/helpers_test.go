package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster/gossiptest"
)

// testKey is the gossip key of test clusters.
var testKey = bytes.Repeat([]byte{7}, 32)

// eventually polls cond every 5ms until it holds or timeout passes.
func eventually(tb testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %v: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testLogger discards logs unless CLUSTER_TEST_LOG is set (then debug logs
// go to stderr), keeping `go test` output clean.
func testLogger(name string) *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_node", name)
}

// revRecorder collects OnRevoke calls with their time.
type revRecorder struct {
	mu   sync.Mutex
	revs []Revocation
	at   []time.Time
}

func (r *revRecorder) add(v Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revs = append(r.revs, v)
	r.at = append(r.at, time.Now())
}

func (r *revRecorder) forSession(s string) []Revocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Revocation
	for _, v := range r.revs {
		if v.Session == s {
			out = append(out, v)
		}
	}
	return out
}

// firstAt returns when the first revocation of s was delivered.
func (r *revRecorder) firstAt(s string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, v := range r.revs {
		if v.Session == s {
			return r.at[i], true
		}
	}
	return time.Time{}, false
}

type testNode struct {
	*Cluster
	name string
	revs *revRecorder
}

type option func(*Config)

func withNetwork(tb testing.TB, nw *gossiptest.Network) option {
	return func(c *Config) {
		tr, err := nw.NewTransport(c.NodeName, "127.0.0.1", nil)
		if err != nil {
			tb.Fatalf("transport: %v", err)
		}
		c.Transport = tr
	}
}

func withSeeds(nodes ...*testNode) option {
	return func(c *Config) {
		for _, n := range nodes {
			c.Join = append(c.Join, n.Local().GossipAddr)
		}
	}
}

// startNode starts one member on 127.0.0.1 with a free port and closes it
// when the test ends.
func startNode(tb testing.TB, name string, opts ...option) *testNode {
	tb.Helper()
	rec := &revRecorder{}
	cfg := Config{
		PoolConfig: PoolConfig{
			NodeName: name, Region: "test",
			BindAddr: "127.0.0.1", BindPort: 0,
			Keys:   [][]byte{testKey},
			Logger: testLogger(name),
		},
		Zone:    "z-" + name,
		HTTPURL: "http://" + name + ".test:8080", Version: "v-test",
		OnRevoke: rec.add,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		tb.Fatalf("New(%s): %v", name, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return &testNode{Cluster: c, name: name, revs: rec}
}

// startCluster starts n members named a, b, c, … joined through the first,
// and waits until every member sees all of them alive.
func startCluster(tb testing.TB, n int, opts ...option) []*testNode {
	tb.Helper()
	nodes := []*testNode{startNode(tb, "a", opts...)}
	for i := 1; i < n; i++ {
		name := string(rune('a' + i))
		nodes = append(nodes, startNode(tb, name, append(append([]option{}, opts...), withSeeds(nodes[0]))...))
	}
	waitMembers(tb, nodes, 10*time.Second)
	return nodes
}

// waitMembers waits until every node sees exactly the given nodes, alive.
func waitMembers(tb testing.TB, nodes []*testNode, timeout time.Duration) {
	tb.Helper()
	var want []string
	for _, n := range nodes {
		want = append(want, n.name)
	}
	sort.Strings(want)
	for _, n := range nodes {
		eventually(tb, timeout, func() bool {
			return memberSummary(n.Members(), StateAlive) == strings.Join(want, ",")
		}, "%s sees %s alive, has %v", n.name, want, n.Members())
	}
}

// memberSummary lists the names of members in one of the states.
func memberSummary(ms []Member, states ...string) string {
	var names []string
	for _, m := range ms {
		for _, s := range states {
			if m.State == s {
				names = append(names, m.Name)
			}
		}
	}
	return strings.Join(names, ",")
}

func memberNamed(ms []Member, name string) (Member, bool) {
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func stateOf(n *testNode, name string) string {
	m, _ := memberNamed(n.Members(), name)
	return m.State
}

// ownerOf returns the owner and incarnation of session as n finds it in
// the pool (its own view, the session's homes, the owner).
func ownerOf(n *testNode, session string) (string, uint64) {
	r, ok := find(n, session)
	if !ok {
		return "", 0
	}
	return r.Node, r.Incarnation
}

func find(n *testNode, session string) (Record, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, ok, _ := n.Find(ctx, session)
	return r, ok
}

func presence(n *testNode, topic string) []Record {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return n.PresenceAll(ctx, topic)
}

// quiet waits until no node has records queued or in flight for their home
// nodes, so that every forward has been delivered or given up.
func quiet(tb testing.TB, nodes ...*testNode) {
	tb.Helper()
	for _, n := range nodes {
		eventually(tb, 10*time.Second, func() bool { return n.Stats().QueueLen == 0 }, "%s forward queue drains", n.name)
	}
}
