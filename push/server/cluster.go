package server

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push/hub"
)

// Cluster is the membership and session-ownership view the server consumes.
// package cluster implements it (through an adapter in cmd/herald); a nil
// Cluster means a single node, where sessions are still tracked locally so
// a reconnect to the same node takes its old stream over.
type Cluster interface {
	// Claim records that this node now serves session and returns the new
	// record; an older claim anywhere in the cluster is revoked (the owner
	// is told through Server.Revoke).
	Claim(session string, topics []string, trace string) SessionRecord
	// Release records that the stream of (session, incarnation) ended.
	Release(session string, incarnation uint64)
	// Lookup returns the latest record of session this node holds, without
	// asking peers (it may not hold it: ADR 0022).
	Lookup(session string) (SessionRecord, bool)
	// Find returns the latest record of session in the cluster, asking the
	// nodes that hold it.
	Find(ctx context.Context, session string) (SessionRecord, bool)
	// Disconnect asks the owner of session, on any node, to close it.
	Disconnect(ctx context.Context, session string) (SessionRecord, error)
	// Presence lists the live sessions subscribed to topic, as their
	// owners report them (eventually consistent).
	Presence(ctx context.Context, topic string) []SessionRecord
	// Members lists the cluster's nodes, self included.
	Members() []Member
	// Local returns this node.
	Local() Member
	// SetLoad publishes this node's stream count and target.
	SetLoad(streams, target int)
}

// Errors a Cluster returns from Disconnect.
var (
	ErrUnknownSession   = errors.New("no such session")
	ErrOwnerUnreachable = errors.New("the session's owner cannot be reached")
)

// SessionRecord says which node serves a session.
type SessionRecord struct {
	Session     string    `json:"session"`
	Node        string    `json:"node"`
	Region      string    `json:"region"`
	Incarnation uint64    `json:"incarnation"`
	Topics      []string  `json:"topics"`
	Since       time.Time `json:"since"`
	// Trace is the W3C traceparent of the session's span (for links from
	// the next connection of the same session).
	Trace string `json:"-"`
	Ended bool   `json:"ended"`
}

// Member is one node as the cluster sees it.
type Member struct {
	Name    string `json:"name"`
	Region  string `json:"region"`
	Zone    string `json:"zone,omitempty"`
	URL     string `json:"url,omitempty"`
	Version string `json:"version,omitempty"`
	// State is alive, draining, suspect, dead or left.
	State   string `json:"state"`
	Streams int    `json:"streams"`
	Target  int    `json:"target,omitempty"`
	Health  int    `json:"health"`
}

// Stream end reasons (also used as metric labels).
const (
	EndClient    = "client"
	EndSlow      = "slow"
	EndDrain     = "drain"
	EndTakeover  = "takeover"
	EndAdmin     = "admin"
	EndRebalance = "rebalance"
	EndEvacuate  = "evacuate" // the region is evacuated: herald.moved names where to go
	EndShutdown  = "shutdown"
	EndAuth      = "auth" // the credential expired: the client reconnects with a fresh one
	EndError     = "error"
)

// kick ends one local stream from outside its goroutine.
type kick struct {
	once   sync.Once
	ch     chan struct{}
	reason string
	retry  time.Duration // final retry: sent before closing; 0 = none
}

func newKick() *kick { return &kick{ch: make(chan struct{})} }

// fire closes the stream with reason; the first call wins.
func (k *kick) fire(reason string, retry time.Duration) bool {
	fired := false
	k.once.Do(func() {
		k.reason, k.retry = reason, retry
		close(k.ch)
		fired = true
	})
	return fired
}

// localStream is a live stream on this node, by session.
type localStream struct {
	session     string
	incarnation uint64
	topics      []string
	since       time.Time
	kick        *kick
	trace       string // traceparent of the stream's session span
	sub         atomic.Pointer[hub.Subscriber]
	// wrote is when the stream last wrote (Unix ns), for the heartbeat
	// to pass over busy streams without waking them.
	wrote atomic.Int64
}

// streamTable tracks this node's live streams by session id.
type streamTable struct {
	mu   sync.Mutex
	next uint64 // local incarnations when there is no cluster
	by   map[string]*localStream
	// ended remembers the session-span trace of recently ended streams
	// (bounded, oldest forgotten first) so that a reconnect to this node
	// links to its previous connection even without a cluster.
	ended      map[string]string
	endedOrder []string
}

// maxEndedTraces bounds streamTable.ended.
const maxEndedTraces = 10000

func newStreamTable() *streamTable {
	return &streamTable{by: make(map[string]*localStream), ended: make(map[string]string)}
}

// endedTrace returns the trace of the session's last stream on this node.
func (t *streamTable) endedTrace(session string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ls := t.by[session]; ls != nil {
		return ls.trace
	}
	return t.ended[session]
}

// add registers ls; an older stream of the same session on this node is
// kicked (same-node takeover). A newer one wins and ls is kicked instead.
func (t *streamTable) add(ls *localStream) {
	t.mu.Lock()
	old := t.by[ls.session]
	if old != nil && old.incarnation > ls.incarnation {
		t.mu.Unlock()
		ls.kick.fire(EndTakeover, 0)
		return
	}
	t.by[ls.session] = ls
	t.mu.Unlock()
	if old != nil {
		old.kick.fire(EndTakeover, 0)
	}
}

func (t *streamTable) remove(ls *localStream) {
	t.mu.Lock()
	if t.by[ls.session] == ls {
		delete(t.by, ls.session)
	}
	if ls.trace != "" {
		if _, ok := t.ended[ls.session]; !ok {
			t.endedOrder = append(t.endedOrder, ls.session)
		}
		t.ended[ls.session] = ls.trace
		for len(t.endedOrder) > maxEndedTraces {
			delete(t.ended, t.endedOrder[0])
			t.endedOrder = t.endedOrder[1:]
		}
	}
	t.mu.Unlock()
}

func (t *streamTable) nextIncarnation() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next = max(t.next+1, uint64(time.Now().UnixNano()))
	return t.next
}

// revoke kicks the stream of session if its incarnation is at most inc.
func (t *streamTable) revoke(session string, inc uint64, reason string) bool {
	t.mu.Lock()
	ls := t.by[session]
	t.mu.Unlock()
	if ls == nil || ls.incarnation > inc {
		return false
	}
	return ls.kick.fire(reason, 0)
}

func (t *streamTable) snapshot() []*localStream {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*localStream, 0, len(t.by))
	for _, ls := range t.by {
		out = append(out, ls)
	}
	return out
}

// Revoke closes this node's stream of session when its incarnation is at
// most incarnation: another node took the session over ("takeover") or an
// operator disconnected it ("admin"). It reports whether a stream closed.
func (s *Server) Revoke(session string, incarnation uint64, reason string) bool {
	ok := s.table.revoke(session, incarnation, reason)
	if ok {
		s.cfg.Telemetry.Metrics().OwnershipChange(context.Background(), observability.OwnershipRevoke)
	}
	return ok
}

// QueueDepth is the number of events queued on this node's live streams.
func (s *Server) QueueDepth() int {
	n := 0
	for _, ls := range s.table.snapshot() {
		if sub := ls.sub.Load(); sub != nil {
			n += sub.Len()
		}
	}
	return n
}

// Draining reports whether Drain has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// Drain is the lame-duck step of a graceful stop: readiness fails, new
// streams are redirected or shed, and every open stream gets a final short
// `retry:` and is closed, the closes spread evenly over window so that the
// clients' reconnects reach the survivors at a steady rate. It returns when
// every stream has ended or ctx is done. Publishes are not affected (the
// caller stops the listener, which lets requests in flight complete).
func (s *Server) Drain(ctx context.Context, window time.Duration) error {
	s.draining.Store(true)
	streams := s.table.snapshot()
	rand.Shuffle(len(streams), func(i, j int) { streams[i], streams[j] = streams[j], streams[i] })
	s.log.Info("draining", "streams", len(streams), "window", window.String())
	if err := s.spreadKicks(ctx, streams, window, EndDrain); err != nil {
		return err
	}
	// Streams that raced the snapshot (accepted just before draining).
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		rest := s.table.snapshot()
		for _, ls := range rest {
			ls.kick.fire(EndDrain, s.finalRetry())
		}
		if s.streams.Load() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// spreadKicks closes streams evenly over window.
func (s *Server) spreadKicks(ctx context.Context, streams []*localStream, window time.Duration, reason string) error {
	if len(streams) == 0 {
		return nil
	}
	step := window / time.Duration(len(streams))
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for i, ls := range streams {
		if d := time.Until(start.Add(time.Duration(i) * step)); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.closing:
				return nil
			case <-t.C:
			}
		}
		ls.kick.fire(reason, s.finalRetry())
	}
	return nil
}

// finalRetry is the reconnection delay sent to a stream closed by drain or
// rebalance: short and jittered, since the closes are already spread.
func (s *Server) finalRetry() time.Duration {
	lo := s.cfg.RetryMin / 4
	return lo + rand.N(s.cfg.RetryMin-lo+1)
}

// admit decides where a new stream goes when this node is draining or over
// its connection target: "" to serve it here, else the base URL of a peer
// to redirect to ("-" to shed without a peer).
func (s *Server) admit() string {
	// A closed server takes no new stream: one opened now would be ended
	// at once, and its client would come straight back.
	if s.evacuating.Load() || s.closed.Err() != nil {
		return "-"
	}
	draining := s.draining.Load()
	over := s.cfg.Target > 0 && int(s.streams.Load()) >= s.cfg.Target
	if !draining && !over {
		return ""
	}
	if s.cfg.Cluster == nil || !s.cfg.Redirect {
		return "-"
	}
	if p, ok := s.peer(); ok {
		return p
	}
	if draining {
		return "-"
	}
	return "" // over target but nowhere better: serve it
}

// peer picks the least loaded alive peer in this region with room, or none.
func (s *Server) peer() (string, bool) {
	self := s.cfg.Cluster.Local()
	best, bestLoad := "", 2.0
	for _, m := range s.cfg.Cluster.Members() {
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
func (s *Server) clusterLoop() {
	defer s.wg.Done()
	cl := s.cfg.Cluster
	t := time.NewTicker(s.cfg.LoadInterval)
	defer t.Stop()
	known := map[string]bool{}
	for _, m := range cl.Members() {
		known[m.Name] = true
	}
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		cl.SetLoad(int(s.streams.Load()), s.cfg.Target)
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
		if joined && s.cfg.RebalanceWindow > 0 && !s.draining.Load() {
			s.rebalance(members)
		}
	}
}

// rebalance sheds this node's excess over the region's average, spread over
// the rebalance window, when it is above the average by more than 10%.
func (s *Server) rebalance(members []Member) {
	self := s.cfg.Cluster.Local()
	total, n := 0, 0
	for _, m := range members {
		if m.State != "alive" || m.Region != self.Region {
			continue
		}
		total += m.Streams
		n++
	}
	if n < 2 {
		return
	}
	mine := int(s.streams.Load())
	avg := float64(total-self.Streams+mine) / float64(n)
	excess := mine - int(avg)
	if float64(mine) <= avg*1.1 || excess <= 0 {
		return
	}
	streams := s.table.snapshot()
	rand.Shuffle(len(streams), func(i, j int) { streams[i], streams[j] = streams[j], streams[i] })
	streams = streams[:min(excess, len(streams))]
	s.log.Info("rebalancing after a join", "streams", mine, "average", int(avg), "shedding", len(streams),
		"window", s.cfg.RebalanceWindow.String())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RebalanceWindow+time.Second)
		defer cancel()
		_ = s.spreadKicks(ctx, streams, s.cfg.RebalanceWindow, EndRebalance)
	}()
}

// presenceOf filters records to the live ones, newest first.
func presenceOf(recs []SessionRecord) []SessionRecord {
	out := slices.DeleteFunc(slices.Clone(recs), func(r SessionRecord) bool { return r.Ended })
	slices.SortFunc(out, func(a, b SessionRecord) int { return b.Since.Compare(a.Since) })
	return out
}
