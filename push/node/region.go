package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/stream"
)

// ErrEvacuating refuses a publish while the region is being evacuated.
var ErrEvacuating = errors.New("this region is being evacuated; publish to another region")

// OriginStatus is this node's view of one origin's events.
type OriginStatus struct {
	Origin string `json:"origin"`
	Local  bool   `json:"local"`
	// LagSeconds is the age of the newest heartbeat of the origin read from
	// this region's copy (replication lag plus at most one beat interval);
	// -1 when unknown.
	LagSeconds float64 `json:"lag_seconds"`
	// Seq is the newest heartbeat sequence read.
	Seq int64 `json:"seq"`
	// LinkUp reports the replica's link to the origin's primary.
	LinkUp bool   `json:"link_up"`
	Error  string `json:"error,omitempty"`
}

// regionState is the region loop's view, read by handlers.
type regionState struct {
	mu      sync.Mutex
	origins map[string]OriginStatus
	evac    push.Evacuation
	// evacuating is set while an active evacuation order is applied;
	// cancel stops its goroutine.
	evacuating bool
	cancel     context.CancelFunc
	links      map[string]bool
	// downSince is when the region loop first saw a remote origin's
	// replica link down (absent while it is up).
	downSince map[string]time.Time
}

// signalsOf returns the region signals of a store, looking through
// wrappers that expose Unwrap.
func signalsOf(st push.Store) push.RegionSignals { return storeAs[push.RegionSignals](st) }

// linkerOf returns the replica link of a store, looking through wrappers.
func linkerOf(st push.Store) push.ReplicaLinker { return storeAs[push.ReplicaLinker](st) }

// storeAs returns st, or the first store it wraps (Unwrap), that is a T.
func storeAs[T any](st push.Store) T {
	for st != nil {
		if v, ok := st.(T); ok {
			return v
		}
		u, ok := st.(interface{ Unwrap() push.Store })
		if !ok {
			break
		}
		st = u.Unwrap()
	}
	var zero T
	return zero
}

// Alternates returns the endpoints of other serving regions.
func (n *Node) Alternates() []string {
	if f := n.d.Federation; f != nil {
		return f.Alternates()
	}
	return nil
}

// Evacuating reports whether this node is applying an evacuation order.
func (n *Node) Evacuating() bool { return n.evacuating.Load() }

// Origins returns this node's view of every origin (lag, link, heartbeat).
func (n *Node) Origins() []OriginStatus {
	n.region.mu.Lock()
	defer n.region.mu.Unlock()
	out := make([]OriginStatus, 0, len(n.origins))
	for _, o := range n.origins {
		st, ok := n.region.origins[o]
		if !ok {
			st = OriginStatus{Origin: o, Local: o == n.store.Origin(), LagSeconds: -1}
		}
		out = append(out, st)
	}
	return out
}

// ReplicationLag returns, per remote origin, the measured lag (origins
// whose lag is unknown are absent).
func (n *Node) ReplicationLag() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, o := range n.Origins() {
		if !o.Local && o.LagSeconds >= 0 {
			out[o.Origin] = time.Duration(o.LagSeconds * float64(time.Second))
		}
	}
	return out
}

// regionLoop beats, measures every remote origin, and applies evacuation
// orders, every RegionInterval.
func (n *Node) regionLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Interval)
	defer t.Stop()
	for {
		n.regionTick()
		select {
		case <-n.closing:
			n.region.mu.Lock()
			if n.region.cancel != nil {
				n.region.cancel()
			}
			n.region.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

func (n *Node) regionTick() {
	now := time.Now()
	local := n.store.Origin()
	seen := map[string]int64{}
	status := map[string]OriginStatus{}
	resync := false
	for _, origin := range n.origins {
		st := n.stores[origin]
		os := OriginStatus{Origin: origin, Local: origin == local, LagSeconds: -1, LinkUp: true}
		sig := signalsOf(st)
		if sig == nil {
			status[origin] = os
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Interval)
		var hb push.Heartbeat
		var err error
		if os.Local {
			hb, err = sig.Beat(ctx, now)
		} else {
			hb, err = sig.LastBeat(ctx)
			if l := linkerOf(st); l != nil && err == nil {
				os.LinkUp, err = l.LinkUp(ctx)
			}
		}
		cancel()
		if err != nil {
			os.Error = err.Error()
			os.LinkUp = false
		}
		if !hb.Time.IsZero() {
			os.Seq = hb.Seq
			seen[origin] = hb.Seq
			if os.Local {
				os.LagSeconds = 0
			} else {
				os.LagSeconds = max(0, now.Sub(hb.Time).Seconds())
			}
		}
		if !os.Local {
			n.region.mu.Lock()
			was, known := n.region.links[origin]
			n.region.links[origin] = os.LinkUp
			if os.LinkUp {
				delete(n.region.downSince, origin)
			} else if _, ok := n.region.downSince[origin]; !ok {
				n.region.downSince[origin] = now
			}
			n.region.mu.Unlock()
			// A replica that re-synced from its primary (after a link
			// loss, or its primary's restart) got data without the
			// Pub/Sub announcements: compare positions now.
			if known && !was && os.LinkUp {
				resync = true
			}
		}
		status[origin] = os
	}
	n.region.mu.Lock()
	n.region.origins = status
	n.region.mu.Unlock()
	if resync {
		n.hub.Resync()
	}
	if f := n.d.Federation; f != nil {
		f.SetSeen(seen)
	}
	n.applyEvacuation()
}

// applyEvacuation reads the region's evacuation order and starts or stops
// evacuating accordingly.
func (n *Node) applyEvacuation() {
	sig := signalsOf(n.store)
	if sig == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Interval)
	o, err := sig.Evacuation(ctx)
	cancel()
	if err != nil {
		return
	}
	n.setEvacuation(o)
}

// setEvacuation applies an order newer than the one applied.
func (n *Node) setEvacuation(o push.Evacuation) {
	n.region.mu.Lock()
	defer n.region.mu.Unlock()
	if o.ID <= n.region.evac.ID {
		return
	}
	n.region.evac = o
	switch {
	case o.Active && !n.region.evacuating:
		ctx, cancel := context.WithCancel(context.Background())
		n.region.evacuating, n.region.cancel = true, cancel
		n.evacuating.Store(true)
		if f := n.d.Federation; f != nil {
			f.SetState("evacuating")
		}
		n.log.Warn("evacuating region", "region", n.cfg.Region, "order", o.ID, "by", o.By)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.evacuate(ctx)
		}()
	case !o.Active && n.region.evacuating:
		n.region.cancel()
		n.region.evacuating, n.region.cancel = false, nil
		n.evacuating.Store(false)
		if f := n.d.Federation; f != nil {
			f.SetState("alive")
		}
		n.log.Warn("evacuation called off: serving again", "region", n.cfg.Region, "order", o.ID, "by", o.By)
	}
}

// evacuate moves this node's clients to other regions: publishes are
// refused already (so the origin's head stops moving), then the other
// regions' replicas are given time to reach this origin's head, then the
// streams are closed over the evacuation window, each with herald.moved
// naming the alternate endpoints.
func (n *Node) evacuate(ctx context.Context) {
	// Publishes admitted before the order finish first.
	for deadline := time.Now().Add(5 * time.Second); n.publishing.Load() > 0 && time.Now().Before(deadline); {
		if !sleepCtx(ctx, 10*time.Millisecond) {
			return
		}
	}
	if err := n.awaitReplication(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("evacuation: replicas did not all catch up; moving clients anyway", "err", err)
	}
	streams := n.table.snapshot()
	rand.Shuffle(len(streams), func(i, j int) { streams[i], streams[j] = streams[j], streams[i] })
	n.log.Info("evacuation: closing streams", "streams", len(streams), "window", n.cfg.EvacuationWindow.String())
	_ = n.spreadKicks(ctx, streams, n.cfg.EvacuationWindow, stream.EndEvacuate)
	// Streams that raced the order.
	for ctx.Err() == nil {
		for _, ls := range n.table.snapshot() {
			ls.Kick.Fire(stream.EndEvacuate, n.finalRetry())
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// awaitReplication writes a heartbeat and waits until every other serving
// region reports having read it from its replica of this origin: every
// event acknowledged here before is then readable there.
func (n *Node) awaitReplication(ctx context.Context) error {
	f := n.d.Federation
	sig := signalsOf(n.store)
	if f == nil || sig == nil {
		return nil
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	hb, err := sig.Beat(bctx, time.Now())
	cancel()
	if err != nil {
		return err
	}
	local := n.store.Origin()
	deadline := time.Now().Add(n.cfg.EvacuationCatchUp)
	for {
		var behind []string
		for _, r := range f.Regions() {
			if r.Name == n.cfg.Region || r.Serving == 0 {
				continue
			}
			if r.Seen[local] < hb.Seq {
				behind = append(behind, r.Name)
			}
		}
		if len(behind) == 0 {
			n.log.Info("evacuation: every serving region has this region's events", "seq", hb.Seq)
			return nil
		}
		if time.Now().After(deadline) {
			sort.Strings(behind)
			return fmt.Errorf("regions behind: %s", strings.Join(behind, ","))
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// BeginPublish admits a publish unless the region is being evacuated
// (ErrEvacuating); the returned func ends it.
func (n *Node) BeginPublish() (func(), error) {
	n.publishing.Add(1)
	if n.evacuating.Load() {
		n.publishing.Add(-1)
		return nil, ErrEvacuating
	}
	return func() { n.publishing.Add(-1) }, nil
}

// Evacuation returns the evacuation order in force.
func (n *Node) Evacuation() push.Evacuation {
	n.region.mu.Lock()
	defer n.region.mu.Unlock()
	return n.region.evac
}

// Evacuate records a region-wide evacuation order (or calls one off) in
// the region's store, by by, and applies it here at once; every node of
// the region applies it within a region interval.
func (n *Node) Evacuate(ctx context.Context, active bool, by string) (push.Evacuation, error) {
	sig := signalsOf(n.store)
	if sig == nil {
		return push.Evacuation{}, ErrNoRegionSignals
	}
	if by == "" {
		by = n.cfg.Name
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	o, err := sig.SetEvacuation(ctx, push.Evacuation{ID: time.Now().UnixNano(), Active: active, By: by})
	cancel()
	if err != nil {
		return push.Evacuation{}, err
	}
	n.setEvacuation(o)
	return o, nil
}

// ErrNoRegionSignals: the local store carries no region signals (an
// in-memory store), so there is no evacuation order to set.
var ErrNoRegionSignals = errors.New("this store carries no region signals")

// resyncGraceFactor × Config.ReplicaWait is how long after its replica's
// link went down a remote origin counts as resyncing (replicaResyncing).
const resyncGraceFactor = 15

// replicaResyncing reports whether origin's replica in this region is
// re-syncing from its primary: its link is down now, and went down less
// than resyncGraceFactor × ReplicaWait ago (a replica restarted, or its
// primary did, and a full sync is under way). Such a replica may hold no
// data or an old lineage for a while; what it shows then says nothing of
// what the client has. A link down longer than that is an outage, and the
// replica's data is what the region has.
func (n *Node) replicaResyncing(ctx context.Context, origin string) bool {
	l := linkerOf(n.stores[origin])
	if l == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	up, err := l.LinkUp(ctx)
	cancel()
	if err == nil && up {
		return false
	}
	n.region.mu.Lock()
	since, ok := n.region.downSince[origin]
	n.region.mu.Unlock()
	return !ok || time.Since(since) < resyncGraceFactor*n.cfg.ReplicaWait
}

// resyncingOrigin returns a remote origin whose replica does not know the
// client's epoch and is re-syncing (replicaResyncing) or has not received
// its origin's heartbeats up to the resume (replicaBehindSince), or "".
func (n *Node) resyncingOrigin(ctx context.Context, cur *push.Cursor, r stream.Resume, infos []push.StreamInfo, since time.Time) string {
	for origin := range stream.Unverified(cur, r, infos) {
		if n.replicaResyncing(ctx, origin) || n.replicaBehindSince(ctx, origin, since) {
			return origin
		}
	}
	return ""
}

// replicaBehindSince reports whether the replica of a remote origin has not
// yet received a heartbeat its origin wrote at or after since (the resume
// began): it may lack an epoch the client read before since, and a reset
// now would move the client back to an older lineage (ADR 0024). A replica
// whose newest beat is older than the resync grace is an outage, not a
// lag: its data is what the region has.
func (n *Node) replicaBehindSince(ctx context.Context, origin string, since time.Time) bool {
	sig := signalsOf(n.stores[origin])
	if sig == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	hb, err := sig.LastBeat(ctx)
	cancel()
	if err != nil || hb.Time.IsZero() {
		return false
	}
	return hb.Time.Before(since) && time.Since(hb.Time) < resyncGraceFactor*n.cfg.ReplicaWait
}

// Federation is the view of the other regions, nil in a single region.
func (n *Node) Federation() Federation { return n.d.Federation }
