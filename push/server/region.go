package server

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/heraldpush/herald/push"
)

// Federation is the view of the other regions: their client-facing
// endpoints and how far their replicas of each origin have got (the WAN
// pool, cluster.Federation, adapted by the caller).
type Federation interface {
	// Alternates are the client-facing base URLs of other regions that
	// are serving now, in order of preference.
	Alternates() []string
	// Regions lists every known region, this one included.
	Regions() []RegionStatus
	// SetState advertises this node's state ("alive", "evacuating").
	SetState(state string)
	// SetSeen advertises, per origin, the heartbeat sequence this node has
	// read from its copy of that origin's store.
	SetSeen(seen map[string]int64)
}

// RegionStatus is one region as the federation sees it.
type RegionStatus struct {
	Name    string           `json:"name"`
	State   string           `json:"state"` // alive, evacuating, draining, down
	URLs    []string         `json:"urls,omitempty"`
	Serving int              `json:"serving"`
	Seen    map[string]int64 `json:"seen,omitempty"`
}

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
func signalsOf(st push.Store) push.RegionSignals {
	for st != nil {
		if rs, ok := st.(push.RegionSignals); ok {
			return rs
		}
		u, ok := st.(interface{ Unwrap() push.Store })
		if !ok {
			return nil
		}
		st = u.Unwrap()
	}
	return nil
}

func linkerOf(st push.Store) push.ReplicaLinker {
	for st != nil {
		if l, ok := st.(push.ReplicaLinker); ok {
			return l
		}
		u, ok := st.(interface{ Unwrap() push.Store })
		if !ok {
			return nil
		}
		st = u.Unwrap()
	}
	return nil
}

// alternates returns the endpoints of other serving regions.
func (s *Server) alternates() []string {
	if f := s.cfg.Federation; f != nil {
		return f.Alternates()
	}
	return nil
}

// Evacuating reports whether this node is applying an evacuation order.
func (s *Server) Evacuating() bool { return s.evacuating.Load() }

// Origins returns this node's view of every origin (lag, link, heartbeat).
func (s *Server) Origins() []OriginStatus {
	s.region.mu.Lock()
	defer s.region.mu.Unlock()
	out := make([]OriginStatus, 0, len(s.origins))
	for _, o := range s.origins {
		st, ok := s.region.origins[o]
		if !ok {
			st = OriginStatus{Origin: o, Local: o == s.store.Origin(), LagSeconds: -1}
		}
		out = append(out, st)
	}
	return out
}

// ReplicationLag returns, per remote origin, the measured lag (origins
// whose lag is unknown are absent).
func (s *Server) ReplicationLag() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, o := range s.Origins() {
		if !o.Local && o.LagSeconds >= 0 {
			out[o.Origin] = time.Duration(o.LagSeconds * float64(time.Second))
		}
	}
	return out
}

// regionLoop beats, measures every remote origin, and applies evacuation
// orders, every RegionInterval.
func (s *Server) regionLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.RegionInterval)
	defer t.Stop()
	for {
		s.regionTick()
		select {
		case <-s.closing:
			s.region.mu.Lock()
			if s.region.cancel != nil {
				s.region.cancel()
			}
			s.region.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

func (s *Server) regionTick() {
	now := time.Now()
	local := s.store.Origin()
	seen := map[string]int64{}
	status := map[string]OriginStatus{}
	resync := false
	for _, origin := range s.origins {
		st := s.stores[origin]
		os := OriginStatus{Origin: origin, Local: origin == local, LagSeconds: -1, LinkUp: true}
		sig := signalsOf(st)
		if sig == nil {
			status[origin] = os
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RegionInterval)
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
			s.region.mu.Lock()
			was, known := s.region.links[origin]
			s.region.links[origin] = os.LinkUp
			if os.LinkUp {
				delete(s.region.downSince, origin)
			} else if _, ok := s.region.downSince[origin]; !ok {
				s.region.downSince[origin] = now
			}
			s.region.mu.Unlock()
			// A replica that re-synced from its primary (after a link
			// loss, or its primary's restart) got data without the
			// Pub/Sub announcements: compare positions now.
			if known && !was && os.LinkUp {
				resync = true
			}
		}
		status[origin] = os
	}
	s.region.mu.Lock()
	s.region.origins = status
	s.region.mu.Unlock()
	if resync {
		s.hub.Resync()
	}
	if f := s.cfg.Federation; f != nil {
		f.SetSeen(seen)
	}
	s.applyEvacuation()
}

// applyEvacuation reads the region's evacuation order and starts or stops
// evacuating accordingly.
func (s *Server) applyEvacuation() {
	sig := signalsOf(s.store)
	if sig == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RegionInterval)
	o, err := sig.Evacuation(ctx)
	cancel()
	if err != nil {
		return
	}
	s.setEvacuation(o)
}

// setEvacuation applies an order newer than the one applied.
func (s *Server) setEvacuation(o push.Evacuation) {
	s.region.mu.Lock()
	defer s.region.mu.Unlock()
	if o.ID <= s.region.evac.ID {
		return
	}
	s.region.evac = o
	switch {
	case o.Active && !s.region.evacuating:
		ctx, cancel := context.WithCancel(context.Background())
		s.region.evacuating, s.region.cancel = true, cancel
		s.evacuating.Store(true)
		if f := s.cfg.Federation; f != nil {
			f.SetState("evacuating")
		}
		s.log.Warn("evacuating region", "region", s.cfg.Region, "order", o.ID, "by", o.By)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.evacuate(ctx)
		}()
	case !o.Active && s.region.evacuating:
		s.region.cancel()
		s.region.evacuating, s.region.cancel = false, nil
		s.evacuating.Store(false)
		if f := s.cfg.Federation; f != nil {
			f.SetState("alive")
		}
		s.log.Warn("evacuation called off: serving again", "region", s.cfg.Region, "order", o.ID, "by", o.By)
	}
}

// evacuate moves this node's clients to other regions: publishes are
// refused already (so the origin's head stops moving), then the other
// regions' replicas are given time to reach this origin's head, then the
// streams are closed over the evacuation window, each with herald.moved
// naming the alternate endpoints.
func (s *Server) evacuate(ctx context.Context) {
	// Publishes admitted before the order finish first.
	for deadline := time.Now().Add(5 * time.Second); s.publishing.Load() > 0 && time.Now().Before(deadline); {
		if !sleepCtx(ctx, 10*time.Millisecond) {
			return
		}
	}
	if err := s.awaitReplication(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("evacuation: replicas did not all catch up; moving clients anyway", "err", err)
	}
	streams := s.table.snapshot()
	rand.Shuffle(len(streams), func(i, j int) { streams[i], streams[j] = streams[j], streams[i] })
	s.log.Info("evacuation: closing streams", "streams", len(streams), "window", s.cfg.EvacuationWindow.String())
	_ = s.spreadKicks(ctx, streams, s.cfg.EvacuationWindow, EndEvacuate)
	// Streams that raced the order.
	for ctx.Err() == nil {
		for _, ls := range s.table.snapshot() {
			ls.kick.fire(EndEvacuate, s.finalRetry())
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// awaitReplication writes a heartbeat and waits until every other serving
// region reports having read it from its replica of this origin: every
// event acknowledged here before is then readable there.
func (s *Server) awaitReplication(ctx context.Context) error {
	f := s.cfg.Federation
	sig := signalsOf(s.store)
	if f == nil || sig == nil {
		return nil
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	hb, err := sig.Beat(bctx, time.Now())
	cancel()
	if err != nil {
		return err
	}
	local := s.store.Origin()
	deadline := time.Now().Add(s.cfg.EvacuationCatchUp)
	for {
		var behind []string
		for _, r := range f.Regions() {
			if r.Name == s.cfg.Region || r.Serving == 0 {
				continue
			}
			if r.Seen[local] < hb.Seq {
				behind = append(behind, r.Name)
			}
		}
		if len(behind) == 0 {
			s.log.Info("evacuation: every serving region has this region's events", "seq", hb.Seq)
			return nil
		}
		if time.Now().After(deadline) {
			sort.Strings(behind)
			return &apiError{Status: http.StatusGatewayTimeout, Code: CodeUnavailable, Message: "regions behind: " + joinNames(behind)}
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func joinNames(ns []string) string {
	out := ""
	for i, n := range ns {
		if i > 0 {
			out += ","
		}
		out += n
	}
	return out
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

// beginPublish admits a publish unless the region is being evacuated; the
// returned func ends it.
func (s *Server) beginPublish() (func(), error) {
	s.publishing.Add(1)
	if s.evacuating.Load() {
		s.publishing.Add(-1)
		return nil, &apiError{Status: http.StatusServiceUnavailable, Code: CodeEvacuating,
			Message: "this region is being evacuated; publish to another region", RetryAfter: 1, Alternates: s.alternates()}
	}
	return func() { s.publishing.Add(-1) }, nil
}

type evacuateRequest struct {
	Active *bool  `json:"active"`
	By     string `json:"by"`
}

// handleEvacuate records a region-wide evacuation order (or calls one off)
// in the region's store; every node of the region applies it within a
// region interval.
func (s *Server) handleEvacuate(c *gin.Context) {
	var req evacuateRequest
	if err := s.decodeJSON(c, 4096, &req); err != nil {
		s.writeError(c, err)
		return
	}
	if req.Active == nil {
		s.writeError(c, errf(http.StatusBadRequest, CodeInvalidJSON, `give {"active": true} to evacuate or {"active": false} to call it off`))
		return
	}
	sig := signalsOf(s.store)
	if sig == nil {
		s.writeError(c, errf(http.StatusNotImplemented, CodeUnavailable, "this store carries no region signals"))
		return
	}
	by := req.By
	if by == "" {
		by = s.cfg.Node
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	o, err := sig.SetEvacuation(ctx, push.Evacuation{ID: time.Now().UnixNano(), Active: *req.Active, By: by})
	cancel()
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.setEvacuation(o)
	c.JSON(http.StatusAccepted, gin.H{"region": s.cfg.Region, "evacuation": o})
}

// handleRegion describes this region: the evacuation order in force, every
// origin's lag and the federation's view of the other regions.
func (s *Server) handleRegion(c *gin.Context) {
	s.region.mu.Lock()
	o := s.region.evac
	s.region.mu.Unlock()
	body := gin.H{"region": s.cfg.Region, "evacuating": s.evacuating.Load(), "evacuation": o, "origins": s.Origins()}
	if f := s.cfg.Federation; f != nil {
		body["regions"] = f.Regions()
		body["alternates"] = f.Alternates()
	}
	c.JSON(http.StatusOK, body)
}

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
func (s *Server) replicaResyncing(ctx context.Context, origin string) bool {
	l := linkerOf(s.stores[origin])
	if l == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	up, err := l.LinkUp(ctx)
	cancel()
	if err == nil && up {
		return false
	}
	s.region.mu.Lock()
	since, ok := s.region.downSince[origin]
	s.region.mu.Unlock()
	return !ok || time.Since(since) < resyncGraceFactor*s.cfg.ReplicaWait
}
