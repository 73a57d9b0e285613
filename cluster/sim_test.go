package cluster

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldpush/herald/cluster/gossiptest"
)

// BenchmarkRegionPool simulates one region's LAN pool in process — N real
// memberlist nodes (LAN preset, encrypted gossip) over the loopback test
// transport — to check the capacity model (docs/capacity.md) where one
// machine cannot hold the pool. It measures, and asserts nothing about
// time:
//
//   - bootstrap_s: N nodes started one after another, until every node sees
//     every other alive;
//   - join_s: one more node joins the settled pool, until every node sees it
//     alive;
//   - dead_first_s, dead_all_s: one node closes without leaving, until the
//     first and until the last of the others declares it dead (probe,
//     suspicion, suspicion timeout);
//   - idle_B/node/s, quiet_B/node/s, idle_packets/node/s: gossip sent per
//     node while nothing changes (UDP packets and TCP push/pull bytes,
//     counted in the transport), the mean over 20 s and the quietest 5 s;
//   - idle_cpu_ms/node/s: the process's CPU over the same 20 s per node
//     (memberlist, this package's loops, the Go runtime);
//   - claims_s, claim_B/claim: time and bytes (less the idle gossip) to
//     place SIM_SESSIONS claims made at once, spread over the nodes;
//   - recs/node, recs_max, copies/session: ownership records held per node
//     and copies per session (ADR 0037: the owner plus HomeReplicas homes
//     other than the owner, so HomeReplicas+1 exactly; 3 - 2/N on average
//     under ADR 0026's HomeReplicas+1 slots);
//   - ownership_heap_MiB/node, heap_B/record: Go heap grown by the claims
//     (noise at the default session count; see BenchmarkOwnershipState);
//   - false_dead: members seen dead at the end that were never stopped,
//     summed over every node's view.
//
// Environment: SIM_SESSIONS (default 50 per node), SIM_CLAIM_RATE (claims
// per second over the pool; default all at once), SIM_SLOW (a factor
// stretching every timing of the LAN preset; default 1: 200 nodes sharing
// this machine's 2 cores need 8, see docs/capacity.md), SIM_PROGRESS=1
// (progress on stderr).
// A million claims at once starve a 200-node pool sharing 2 cores (its
// nodes then declare each other dead): pace them. One size at a time, e.g.
//
//	SIM_SLOW=8 go test -run '^$' -bench 'RegionPool/nodes=200$' -benchtime 1x -timeout 30m ./cluster
//	SIM_SESSIONS=1000000 SIM_CLAIM_RATE=5000 SIM_SLOW=8 go test -run '^$' -bench 'RegionPool/nodes=200$' -benchtime 1x -timeout 40m ./cluster
func BenchmarkRegionPool(b *testing.B) {
	sessions := envInt("SIM_SESSIONS", 0)
	slow := envInt("SIM_SLOW", 1)
	for _, n := range []int{25, 50, 100, 200} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			s := sessions
			if s == 0 {
				s = 50 * n
			}
			for range b.N {
				simulatePool(b, n, s, slow)
			}
		})
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// simPool is the simulated pool and its measuring helpers.
type simPool struct {
	tb    testing.TB
	nw    *gossiptest.Network
	tun   Tuning
	nodes []*testNode
	start time.Time
	log   bool
	// stopped holds the names of nodes closed on purpose.
	stopped map[string]bool
}

func (p *simPool) progress(format string, args ...any) {
	if p.log {
		fmt.Fprintf(os.Stderr, "%7.1fs  %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

// add starts one node joined through the pool's first node.
func (p *simPool) add(name string) *testNode {
	opts := []option{withNetwork(p.tb, p.nw), func(c *Config) { c.Tuning = p.tun }}
	if len(p.nodes) > 0 {
		opts = append(opts, withSeeds(p.nodes[0]))
	}
	n := startNode(p.tb, name, opts...)
	p.nodes = append(p.nodes, n)
	return n
}

// view reports how node n sees member name: present and alive, dead or
// left. It reads the member table directly: Members() allocates and sorts
// N entries per call, which for N nodes polled together is O(N²) per poll
// and was most of the simulation's own CPU at 200 nodes.
func view(n *testNode, name string) (alive, down bool) {
	n.memMu.RLock()
	defer n.memMu.RUnlock()
	e := n.members[name]
	if e == nil {
		return false, false
	}
	return !e.down, e.down
}

// aliveCount is the number of peers n sees alive.
func aliveCount(n *testNode) int {
	n.memMu.RLock()
	defer n.memMu.RUnlock()
	k := 0
	for _, e := range n.members {
		if !e.down {
			k++
		}
	}
	return k
}

// downCount is the number of peers n sees dead or departed.
func downCount(n *testNode) int {
	n.memMu.RLock()
	defer n.memMu.RUnlock()
	k := 0
	for _, e := range n.members {
		if e.down {
			k++
		}
	}
	return k
}

// waitAll polls cond over the nodes every 20 ms until it holds for every one
// and returns when it first held for one and for all of them.
func (p *simPool) waitAll(what string, nodes []*testNode, timeout time.Duration, cond func(*testNode) bool) (first, all time.Duration) {
	p.tb.Helper()
	t0 := time.Now()
	done := make([]bool, len(nodes))
	left := len(nodes)
	lastLog := t0
	for {
		for i, x := range nodes {
			if !done[i] && cond(x) {
				done[i] = true
				left--
				if first == 0 {
					first = time.Since(t0)
				}
			}
		}
		if left == 0 {
			return first, time.Since(t0)
		}
		if time.Since(t0) > timeout {
			p.tb.Fatalf("not within %v: %s (%d of %d nodes)", timeout, what, len(nodes)-left, len(nodes))
		}
		if time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			lo, down := len(p.nodes), 0
			for _, x := range p.nodes {
				if !p.stopped[x.name] {
					lo = min(lo, aliveCount(x))
					down += downCount(x)
				}
			}
			p.progress("%s: %d of %d nodes (fewest peers seen alive %d, down in all views %d)",
				what, len(nodes)-left, len(nodes), lo, down)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// falseDead counts members seen down by some node that were never stopped.
func (p *simPool) falseDead() int {
	k := 0
	for _, x := range p.nodes {
		if p.stopped[x.name] {
			continue
		}
		x.memMu.RLock()
		for name, e := range x.members {
			if e.down && !p.stopped[name] {
				k++
			}
		}
		x.memMu.RUnlock()
	}
	return k
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// slowed returns the LAN preset with every timing multiplied by k.
func slowed(k int) Tuning {
	t := LANTuning()
	d := time.Duration(k)
	t.ProbeInterval *= d
	t.ProbeTimeout *= d
	t.GossipInterval *= d
	t.GossipToTheDeadTime *= d
	t.PushPullInterval *= d
	t.TCPTimeout *= d
	t.DeadNodeReclaimTime *= d
	t.ReconnectInterval *= d
	t.ReconnectTimeout *= d
	t.MetaInterval *= d
	return t
}

func simulatePool(b *testing.B, n, sessions, slow int) {
	p := &simPool{tb: b, nw: gossiptest.NewNetwork(), tun: slowed(slow), start: time.Now(),
		log: os.Getenv("SIM_PROGRESS") != "", stopped: make(map[string]bool)}
	wait := 5 * time.Minute

	// Bootstrap: n nodes, each joining through the first.
	for i := range n {
		p.add(fmt.Sprintf("n%03d", i))
		if (i+1)%25 == 0 {
			p.progress("%d nodes started", i+1)
		}
	}
	_, bootstrap := p.waitAll("bootstrap: every node sees all alive", p.nodes, wait,
		func(x *testNode) bool { return aliveCount(x) == n-1 })
	p.progress("bootstrap converged in %v", bootstrap.Round(time.Millisecond))

	// Idle gossip: membership only, nothing changing, after the join
	// broadcasts have been retransmitted (RetransmitMult rounds of log N
	// gossip intervals, well within the settle time). Measured in 5 s
	// windows: the mean and the quietest window (suspicions refuted on a
	// starved machine add broadcasts to the mean).
	time.Sleep(time.Duration(slow) * 10 * time.Second)
	p0, pb0, sb0 := p.nw.Traffic()
	cpu0 := cpuTime()
	const windows, window = 4, 5 * time.Second
	idle := windows * window
	quietest := uint64(1<<63 - 1)
	last := pb0 + sb0
	for range windows {
		time.Sleep(window)
		_, pb, sb := p.nw.Traffic()
		quietest = min(quietest, pb+sb-last)
		last = pb + sb
	}
	p1, pb1, sb1 := p.nw.Traffic()
	idleCPU := cpuTime() - cpu0
	idleRate := float64((pb1-pb0)+(sb1-sb0)) / idle.Seconds() // bytes/s, whole pool
	p.progress("idle window done: %.0f B/node/s", idleRate/float64(n))

	// One more node joins the settled pool.
	old := p.nodes
	joiner := p.add(fmt.Sprintf("n%03d", n))
	_, joined := p.waitAll("join: every node sees "+joiner.name+" alive", old, wait,
		func(x *testNode) bool { a, _ := view(x, joiner.name); return a })
	_, _ = p.waitAll("join: the new node sees every node", []*testNode{joiner}, wait,
		func(x *testNode) bool { return aliveCount(x) == n })
	p.progress("join converged in %v", joined.Round(time.Millisecond))

	// Claims spread round-robin over the nodes, then wait for the forwards.
	h0 := heapAfterGC().HeapAlloc
	_, pb2, sb2 := p.nw.Traffic()
	claimStart := time.Now()
	if rate := envInt("SIM_CLAIM_RATE", 0); rate > 0 {
		// Paced: rate claims per second over the pool, round-robin.
		for j := range sessions {
			p.nodes[j%len(p.nodes)].Claim(fmt.Sprintf("s%07d", j), []string{"t"}, "")
			if j%1000 == 999 {
				time.Sleep(time.Until(claimStart.Add(time.Duration(j+1) * time.Second / time.Duration(rate))))
			}
			if j%100_000 == 99_999 {
				p.progress("%d claims made", j+1)
			}
		}
	} else {
		var wg sync.WaitGroup
		for i, x := range p.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := i; j < sessions; j += len(p.nodes) {
					x.Claim(fmt.Sprintf("s%07d", j), []string{"t"}, "")
				}
			}()
		}
		wg.Wait()
	}
	p.progress("%d claims made", sessions)
	p.waitAll("claims: forward queues drain", p.nodes, 3*wait, func(x *testNode) bool { return x.queueLen() == 0 })
	_, pb3, sb3 := p.nw.Traffic()
	claimTime := time.Since(claimStart)
	// Bytes of the claims: the traffic of the claim phase less the idle
	// gossip of the same pool over the same time.
	claimBytes := float64((pb3-pb2)+(sb3-sb2)) - idleRate*float64(len(p.nodes))/float64(n)*claimTime.Seconds()
	h1 := heapAfterGC().HeapAlloc
	held, maxHeld := 0, 0
	for _, x := range p.nodes {
		x.recMu.RLock()
		k := x.records.len()
		x.recMu.RUnlock()
		held += k
		maxHeld = max(maxHeld, k)
	}
	p.progress("claims placed: %d records held in all", held)

	// Crash: one node closes without leaving.
	victim := p.nodes[n/2]
	rest := append(append([]*testNode{}, p.nodes[:n/2]...), p.nodes[n/2+1:]...)
	p.stopped[victim.name] = true
	_ = victim.Close()
	deadFirst, deadAll := p.waitAll("crash: every node sees "+victim.name+" dead", rest, wait,
		func(x *testNode) bool { _, d := view(x, victim.name); return d })
	p.progress("crash seen by all in %v", deadAll.Round(time.Millisecond))
	falseDead := p.falseDead()

	// Close every node at once: a node's Close waits for a push/pull in
	// flight (up to TCPTimeout), and the tests' cleanups would close them
	// one after another.
	var cw sync.WaitGroup
	for _, x := range p.nodes {
		cw.Add(1)
		go func() {
			defer cw.Done()
			_ = x.Close()
		}()
	}
	cw.Wait()

	secs := idle.Seconds()
	m := len(p.nodes)
	b.ReportMetric(bootstrap.Seconds(), "bootstrap_s")
	b.ReportMetric(joined.Seconds(), "join_s")
	b.ReportMetric(deadFirst.Seconds(), "dead_first_s")
	b.ReportMetric(deadAll.Seconds(), "dead_all_s")
	b.ReportMetric(float64(p1-p0)/secs/float64(n), "idle_packets/node/s")
	b.ReportMetric(float64((pb1-pb0)+(sb1-sb0))/secs/float64(n), "idle_B/node/s")
	b.ReportMetric(float64(quietest)/window.Seconds()/float64(n), "quiet_B/node/s")
	b.ReportMetric(idleCPU.Seconds()*1000/secs/float64(n), "idle_cpu_ms/node/s")
	b.ReportMetric(claimBytes/float64(sessions), "claim_B/claim")
	b.ReportMetric(claimTime.Seconds(), "claims_s")
	b.ReportMetric(float64(held)/float64(m), "recs/node")
	b.ReportMetric(float64(maxHeld), "recs_max")
	b.ReportMetric(float64(held)/float64(sessions), "copies/session")
	b.ReportMetric(float64(int64(h1-h0))/float64(m)/(1<<20), "ownership_heap_MiB/node")
	b.ReportMetric(float64(int64(h1-h0))/float64(held), "heap_B/record")
	b.ReportMetric(float64(sessions), "sessions")
	b.ReportMetric(float64(falseDead), "false_dead")
	b.ReportMetric(float64(slow), "slow")
}
