package node

import (
	"context"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/stream"
)

// admit decides where a new stream goes when this node is draining or over
// its connection target: "" to serve it here, else the base URL of a peer
// to redirect to ("-" to shed without a peer).
func (n *Node) admit() string {
	// A closed server takes no new stream: one opened now would be ended
	// at once, and its client would come straight back.
	if n.evacuating.Load() || n.closed.Err() != nil {
		return "-"
	}
	draining := n.draining.Load()
	over := n.cfg.ConnectionTarget > 0 && int(n.streams.Load()) >= n.cfg.ConnectionTarget
	if !draining && !over {
		return ""
	}
	if n.d.Cluster == nil || !n.cfg.Redirect {
		return "-"
	}
	if p, ok := n.peer(); ok {
		return p
	}
	if draining {
		return "-"
	}
	return "" // over target but nowhere better: serve it
}

// peer picks the least loaded alive peer in this region with room, or none.
func (n *Node) peer() (string, bool) {
	self := n.d.Cluster.Local()
	best, bestLoad := "", 2.0
	for _, m := range n.d.Cluster.Members() {
		if m.Name == self.Name || m.State != "alive" || m.URL == "" || m.Region != self.Region {
			continue
		}
		load := float64(m.Streams)
		if m.Target > 0 {
			load /= float64(m.Target)
		} else {
			load = 0.5
		}
		if load < 1 && load < bestLoad {
			best, bestLoad = m.URL, load
		}
	}
	return best, best != ""
}

// clusterLoop publishes this node's load and rebalances after joins.
func (n *Node) clusterLoop() {
	defer n.wg.Done()
	cl := n.d.Cluster
	t := time.NewTicker(n.cfg.LoadInterval)
	defer t.Stop()
	known := map[string]bool{}
	for _, m := range cl.Members() {
		known[m.Name] = true
	}
	for {
		select {
		case <-n.closing:
			return
		case <-t.C:
		}
		cl.SetLoad(int(n.streams.Load()), n.cfg.ConnectionTarget)
		members := cl.Members()
		joined := false
		for _, m := range members {
			if !known[m.Name] && m.State == "alive" {
				joined = true
			}
		}
		clear(known)
		for _, m := range members {
			if m.State == "alive" || m.State == "draining" {
				known[m.Name] = true
			}
		}
		if joined && n.cfg.RebalanceWindow > 0 && !n.draining.Load() {
			n.rebalance(members)
		}
	}
}

// rebalance sheds this node's excess over the region's average, spread over
// the rebalance window, when it is above the average by more than 10%.
func (n *Node) rebalance(members []Member) {
	self := n.d.Cluster.Local()
	total, alive := 0, 0
	for _, m := range members {
		if m.State != "alive" || m.Region != self.Region {
			continue
		}
		total += m.Streams
		alive++
	}
	if alive < 2 {
		return
	}
	mine := int(n.streams.Load())
	avg := float64(total-self.Streams+mine) / float64(alive)
	excess := mine - int(avg)
	if float64(mine) <= avg*1.1 || excess <= 0 {
		return
	}
	streams := n.table.snapshot()
	rand.Shuffle(len(streams), func(i, j int) { streams[i], streams[j] = streams[j], streams[i] })
	streams = streams[:min(excess, len(streams))]
	n.log.Info("rebalancing after a join", "streams", mine, "average", int(avg), "shedding", len(streams),
		"window", n.cfg.RebalanceWindow.String())
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RebalanceWindow+time.Second)
		defer cancel()
		_ = n.spreadKicks(ctx, streams, n.cfg.RebalanceWindow, stream.EndRebalance)
	}()
}

// shedLookupTimeout bounds the store lookup of the heads the hub does not
// know, when a fresh stream is turned away.
const shedLookupTimeout = 250 * time.Millisecond

// shedCursor is the cursor a fresh stream (fresh: no Last-Event-ID, not
// from=earliest) gets when it is turned away (ADR 0020): its topics' heads
// as of this attempt, carrying cur's session and binding. Its retry sends
// it back and starts there, not at the head of the moment it is admitted,
// so it misses nothing published in between. "" for other streams: they
// retry with their own cursor (or replay the whole history).
//
// Heads come from the hub, which knows them for every topic with local
// subscribers at no cost; a head the hub may lag by events still being
// announced only means the retry replays those too. Heads it does not
// know are looked up in the store when lookup is set (one bounded Info per
// origin); an origin whose heads stay unknown is left out of the cursor,
// and its streams start at the head at admission, as without a cursor.
func (n *Node) shedCursor(ctx context.Context, cur *push.Cursor, fresh, lookup bool) string {
	if !fresh {
		return ""
	}
	topics := cur.Topics()
	var (
		known []string        // origins whose every head is known
		heads []push.Position // by known origin, then topic
		pos   = make([]push.Position, len(topics))
	)
	for _, o := range cur.Origins() {
		var missing []string
		for ti, t := range topics {
			p, ok := n.hub.Head(t, o)
			if !ok {
				missing = append(missing, t)
			}
			pos[ti] = p
		}
		if len(missing) > 0 {
			if !lookup {
				continue
			}
			lctx, cancel := context.WithTimeout(ctx, shedLookupTimeout)
			infos, err := n.stores[o].Info(lctx, missing)
			cancel()
			if err != nil {
				continue
			}
			found := 0
			for _, in := range infos {
				if ti, ok := slices.BinarySearch(topics, in.Topic); ok && slices.Contains(missing, in.Topic) {
					pos[ti] = push.Position{Epoch: in.Epoch, Offset: in.Last}
					found++
				}
			}
			if found < len(missing) {
				continue // the store did not answer for every topic
			}
		}
		known = append(known, o)
		heads = append(heads, pos...)
	}
	if len(known) == 0 {
		return ""
	}
	sc, err := push.NewCursor(topics, known)
	if err != nil {
		return ""
	}
	for i := range sc.Len() {
		k := sc.Key(i)
		ti, _ := slices.BinarySearch(topics, k.Topic)
		sc.SetAt(i, heads[slices.Index(known, k.Origin)*len(topics)+ti])
	}
	sc.SetSession(cur.Session(), cur.Binding())
	return sc.String()
}
