package cluster

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster/gossiptest"
)

// BenchmarkRegionPool simulates one region's LAN pool in process — N real
// memberlist nodes with the LAN preset over the loopback test transport —
// to check the capacity model (docs/capacity.md) where one machine cannot
// hold the streams: how long a join takes to reach every node, how long a
// crash takes to be detected everywhere, the gossip traffic per node when
// idle, and how many ownership records each node holds after every node
// claimed SIM_SESSIONS sessions (default 50) under ADR 0026's placement.
// It measures; it asserts nothing about time. Run one size at a time:
//
//	go test -run '^$' -bench 'RegionPool/nodes=200' -benchtime 1x ./cluster
func BenchmarkRegionPool(b *testing.B) {
	perNode := 50
	if v, err := strconv.Atoi(os.Getenv("SIM_SESSIONS")); err == nil && v > 0 {
		perNode = v
	}
	for _, n := range []int{25, 50, 100, 200} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			for range b.N {
				simulatePool(b, n, perNode)
			}
		})
	}
}

func simulatePool(b *testing.B, n, perNode int) {
	nw := gossiptest.NewNetwork()
	net := withNetwork(b, nw)
	start := time.Now()
	nodes := []*testNode{startNode(b, "n000", net)}
	for i := 1; i < n; i++ {
		nodes = append(nodes, startNode(b, fmt.Sprintf("n%03d", i), net, withSeeds(nodes[0])))
	}
	allAlive := func(ns []*testNode, want int) bool {
		for _, x := range ns {
			if x.Stats().Members[StateAlive] != want {
				return false
			}
		}
		return true
	}
	eventually(b, 5*time.Minute, func() bool { return allAlive(nodes, n) }, "%d nodes see each other alive", n)
	joined := time.Since(start)

	// Idle gossip: membership only.
	p0, pb0, sb0 := nw.Traffic()
	idle := 10 * time.Second
	time.Sleep(idle)
	p1, pb1, sb1 := nw.Traffic()

	// Claims: perNode sessions on every node, then wait for the forwards.
	for i, x := range nodes {
		for j := range perNode {
			x.Claim(fmt.Sprintf("s%03d-%05d", i, j), []string{"t"}, "")
		}
	}
	quiet(b, nodes...)
	_, pb2, sb2 := nw.Traffic()
	maxRecs, sumRecs := 0, 0
	for _, x := range nodes {
		s := x.Stats()
		held := s.RecordsLive - s.Owned // foreign records homed here
		maxRecs = max(maxRecs, held)
		sumRecs += held
	}

	// Crash: one node closes without leaving; time until all see it dead.
	victim := nodes[n-1]
	crash := time.Now()
	_ = victim.Close()
	rest := nodes[:n-1]
	eventually(b, 5*time.Minute, func() bool {
		for _, x := range rest {
			if stateOf(x, victim.name) != StateDead {
				return false
			}
		}
		return true
	}, "every node sees %s dead", victim.name)
	detected := time.Since(crash)

	secs := idle.Seconds()
	b.ReportMetric(joined.Seconds(), "join_s")
	b.ReportMetric(detected.Seconds(), "crash_detected_everywhere_s")
	b.ReportMetric(float64(p1-p0)/secs/float64(n), "idle_packets/node/s")
	b.ReportMetric(float64((pb1-pb0)+(sb1-sb0))/secs/float64(n), "idle_B/node/s")
	b.ReportMetric(float64((pb2-pb1)+(sb2-sb1))/float64(n*perNode), "claim_B/claim")
	b.ReportMetric(float64(sumRecs)/float64(n), "homed_records/node")
	b.ReportMetric(float64(maxRecs), "homed_records_max")
	b.ReportMetric(float64(n*perNode), "sessions")
}
