package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/stream"
)

// Deps are the parts a Node is built on.
type Deps struct {
	// Store holds the local origin's events.
	Store push.Store
	// Remotes are the read-only stores of the other origin regions (the
	// local replica of each remote region's primary).
	Remotes []push.Store
	// Hub fans live events out; it must be fed by Store and every Remote.
	Hub *hub.Hub
	// Cluster is the membership and session-ownership view; nil runs a
	// single node (sessions are then tracked on this node only).
	Cluster Cluster
	// Federation is the view of the other regions; nil runs a single region.
	Federation Federation
	// Guard is the protection layers; nil means unguarded.
	Guard Guard
	// Sessions binds session ids to principals (ADR 0014); nil means a
	// random key, recognised by this Node only.
	Sessions *push.SessionBinder
	// Telemetry records traces and metrics; nil records nothing.
	Telemetry *observability.Telemetry
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Node holds this node's streams.
type Node struct {
	cfg     Config
	scfg    stream.Config
	d       Deps
	log     *slog.Logger
	store   push.Store
	stores  map[string]push.Store // by origin, the local one included
	origins []string
	hub     *hub.Hub
	binder  *push.SessionBinder
	env     *stream.Env
	stats   stream.Counters

	closing chan struct{}
	// closed is done when closing is closed (streams watch it with
	// context.AfterFunc instead of a select case).
	closed     context.Context
	markClosed context.CancelFunc
	once       sync.Once
	wg         sync.WaitGroup

	table    *table
	draining atomic.Bool
	// evacuating is set while the region's evacuation order is applied;
	// publishing counts publishes in flight (evacuation waits for them).
	evacuating atomic.Bool
	publishing atomic.Int64
	region     regionState

	streams   atomic.Int64
	connected atomic.Uint64
}

// New builds a Node over d and starts its loops; Close stops them.
func New(cfg Config, scfg stream.Config, d Deps) (*Node, error) {
	if d.Store == nil || d.Hub == nil {
		return nil, errors.New("node: Store and Hub are required")
	}
	cfg, scfg = cfg.WithDefaults(), scfg.WithDefaults()
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	stores := map[string]push.Store{d.Store.Origin(): d.Store}
	origins := []string{d.Store.Origin()}
	for _, r := range d.Remotes {
		if r == nil {
			return nil, errors.New("node: nil remote store")
		}
		if _, dup := stores[r.Origin()]; dup {
			return nil, fmt.Errorf("node: two stores for origin %q", r.Origin())
		}
		stores[r.Origin()] = r
		origins = append(origins, r.Origin())
	}
	if _, err := push.NewCursor([]string{"t"}, origins); err != nil {
		return nil, fmt.Errorf("node: regions: %w", err)
	}
	n := &Node{
		cfg: cfg, scfg: scfg, d: d,
		log:     d.Logger.With("component", "http"),
		store:   d.Store,
		stores:  stores,
		origins: origins,
		hub:     d.Hub,
		binder:  d.Sessions,
		closing: make(chan struct{}),
		table:   newTable(),
	}
	if n.binder == nil {
		n.binder = push.RandomSessionBinder()
	}
	n.closed, n.markClosed = context.WithCancel(context.Background())
	n.region.links = make(map[string]bool)
	n.region.downSince = make(map[string]time.Time)
	n.env = &stream.Env{
		Config: scfg, Local: d.Store.Origin(), Stores: stores, Hub: d.Hub, Telemetry: d.Telemetry,
		Counters: &n.stats, Overload: new(stream.Overload), Closed: n.closed, Alternates: n.Alternates,
	}
	n.wg.Add(1)
	go n.heartbeat()
	if d.Cluster != nil {
		n.wg.Add(1)
		go n.clusterLoop()
	}
	n.wg.Add(1)
	go n.regionLoop()
	return n, nil
}

// Close ends every open stream (clients reconnect and resume) and stops
// the node's loops. It does not close the stores or the hub.
func (n *Node) Close() error {
	n.once.Do(func() {
		close(n.closing)
		n.markClosed()
	})
	n.wg.Wait()
	return nil
}

// Done is closed when Close begins.
func (n *Node) Done() <-chan struct{} { return n.closing }

// Closed reports whether Close has begun.
func (n *Node) Closed() bool { return n.closed.Err() != nil }

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Region is this node's region.
func (n *Node) Region() string { return n.cfg.Region }

// Config is the node's configuration, defaults filled in.
func (n *Node) Config() Config { return n.cfg }

// StreamConfig is the streams' configuration, defaults filled in.
func (n *Node) StreamConfig() stream.Config { return n.scfg }

// Store is the local origin's store.
func (n *Node) Store() push.Store { return n.store }

// Origins lists every origin: the local one first, then the remotes.
func (n *Node) OriginNames() []string { return n.origins }

// Streams is the number of streams open now.
func (n *Node) Streams() int64 { return n.streams.Load() }

// Stats are cumulative counters of the node's streams.
type Stats struct {
	Streams   int64  `json:"streams"`   // open now
	Connected uint64 `json:"connected"` // streams accepted
	Resets    uint64 `json:"resets"`    // herald.reset events sent
	Replayed  uint64 `json:"replayed"`  // events written from history
	Delivered uint64 `json:"delivered"` // events written in total
	// LagCutoffs counts streams that ended because their writes had stalled
	// for longer than the queue's MaxLag since their oldest queued event
	// arrived, found when the stream got to run (ADR 0034).
	LagCutoffs uint64 `json:"lag_cutoffs"`
	// SlowCutoffs counts subscribers the hub cut off because their queue
	// overflowed (events or bytes).
	SlowCutoffs uint64 `json:"slow_cutoffs"`
	// SlowEnded counts streams that ended as slow for any reason: queue
	// lag or overflow, or a write that missed its deadline.
	SlowEnded uint64 `json:"slow_ended"`
	// Writes counts live-loop writes that carried queued events; Delivered
	// over Writes is how many events a write carries (batching).
	Writes uint64 `json:"writes"`
	// Holds counts writes held back by coalescing (stream.coalesce_window).
	Holds uint64 `json:"holds"`
}

// Stats returns the stream counters.
func (n *Node) Stats() Stats {
	return Stats{
		Streams:     n.streams.Load(),
		Connected:   n.connected.Load(),
		Resets:      n.stats.Resets.Load(),
		Replayed:    n.stats.Replayed.Load(),
		Delivered:   n.stats.Delivered.Load(),
		LagCutoffs:  n.stats.LagCutoffs.Load(),
		SlowCutoffs: n.hub.Stats().SlowCutoffs,
		SlowEnded:   n.stats.SlowEnded.Load(),
		Writes:      n.stats.Writes.Load(),
		Holds:       n.stats.Holds.Load(),
	}
}

// heartbeatWave is how many streams the heartbeat wakes before it yields.
const heartbeatWave = 256

func (n *Node) heartbeat() {
	defer n.wg.Done()
	t := time.NewTicker(n.scfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-n.closing:
			return
		case <-t.C:
			// One pass over the live streams, waking each that wrote
			// nothing for half an interval: a keep-alive needs no channel
			// of its own in the per-delivery select (a channel shared by
			// every stream was contended on each pass), and a busy stream
			// needs no keep-alive. The pass yields after every
			// heartbeatWave wakes, so the streams it wakes do not queue the
			// publish path behind all of them (see hub.PacedFanOut).
			quiet := time.Now().Add(-n.scfg.Heartbeat / 2).UnixNano()
			woken := 0
			for _, h := range n.table.snapshot() {
				if sub := h.Subscriber(); sub != nil && h.Quiet(quiet) {
					sub.Wake()
					if woken++; woken%heartbeatWave == 0 {
						runtime.Gosched()
					}
				}
			}
		}
	}
}

// Revoke closes this node's stream of session when its incarnation is at
// most incarnation: another node took the session over ("takeover") or an
// operator disconnected it ("admin"). It reports whether a stream closed.
func (n *Node) Revoke(session string, incarnation uint64, reason string) bool {
	ok := n.table.revoke(session, incarnation, reason)
	if ok {
		n.d.Telemetry.Metrics().OwnershipChange(context.Background(), observability.OwnershipRevoke)
	}
	return ok
}

// QueueDepth is the number of events queued on this node's live streams.
func (n *Node) QueueDepth() int {
	total := 0
	for _, h := range n.table.snapshot() {
		if sub := h.Subscriber(); sub != nil {
			total += sub.Len()
		}
	}
	return total
}

// Draining reports whether Drain has begun.
func (n *Node) Draining() bool { return n.draining.Load() }

// Drain is the lame-duck step of a graceful stop: readiness fails, new
// streams are redirected or shed, and every open stream gets a final short
// reconnection delay and is closed, the closes spread evenly over window so
// that the clients' reconnects reach the survivors at a steady rate. It
// returns when every stream has ended or ctx is done. Publishes are not
// affected (the caller stops the listener, which lets requests in flight
// complete).
func (n *Node) Drain(ctx context.Context, window time.Duration) error {
	n.draining.Store(true)
	streams := n.table.snapshot()
	rand.Shuffle(len(streams), func(i, j int) { streams[i], streams[j] = streams[j], streams[i] })
	n.log.Info("draining", "streams", len(streams), "window", window.String())
	if err := n.spreadKicks(ctx, streams, window, stream.EndDrain); err != nil {
		return err
	}
	// Streams that raced the snapshot (accepted just before draining).
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, h := range n.table.snapshot() {
			h.Kick.Fire(stream.EndDrain, n.finalRetry())
		}
		if n.streams.Load() == 0 {
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
func (n *Node) spreadKicks(ctx context.Context, streams []*stream.Handle, window time.Duration, reason string) error {
	if len(streams) == 0 {
		return nil
	}
	step := window / time.Duration(len(streams))
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for i, h := range streams {
		if d := time.Until(start.Add(time.Duration(i) * step)); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-n.closing:
				return nil
			case <-t.C:
			}
		}
		h.Kick.Fire(reason, n.finalRetry())
	}
	return nil
}

// finalRetry is the reconnection delay sent to a stream closed by drain or
// rebalance: short and jittered, since the closes are already spread.
func (n *Node) finalRetry() time.Duration {
	lo := n.scfg.RetryMin / 4
	return lo + rand.N(n.scfg.RetryMin-lo+1)
}

// RetryDelay is a jittered reconnection delay within the stream
// configuration's RetryMin..RetryMax.
func (n *Node) RetryDelay() time.Duration {
	lo, hi := n.scfg.RetryMin.Milliseconds(), n.scfg.RetryMax.Milliseconds()
	if hi <= lo {
		return time.Duration(lo) * time.Millisecond
	}
	return time.Duration(lo+rand.Int64N(hi-lo+1)) * time.Millisecond
}

// ClusterQueryTimeout bounds the peers' answers to a session look-up or a
// presence query (ADR 0026); members that have not answered are left out.
const ClusterQueryTimeout = 2 * time.Second

// Lookup returns the latest known record of session: the cluster's (asking
// the nodes that hold it, within ClusterQueryTimeout), or this node's own
// without a cluster.
func (n *Node) Lookup(ctx context.Context, session string) (SessionRecord, bool) {
	if n.d.Cluster != nil {
		ctx, cancel := context.WithTimeout(ctx, ClusterQueryTimeout)
		defer cancel()
		return n.d.Cluster.Find(ctx, session)
	}
	for _, h := range n.table.snapshot() {
		if h.Session == session {
			return n.localRecord(h), true
		}
	}
	return SessionRecord{}, false
}

func (n *Node) localRecord(h *stream.Handle) SessionRecord {
	return SessionRecord{Session: h.Session, Node: n.cfg.Name, Region: n.cfg.Region,
		Incarnation: h.Incarnation, Topics: h.Topics, Since: h.Since}
}

// Disconnect closes session on whichever node serves it (ErrUnknownSession
// when none does).
func (n *Node) Disconnect(ctx context.Context, session string) (SessionRecord, error) {
	if n.d.Cluster != nil {
		return n.d.Cluster.Disconnect(ctx, session)
	}
	r, ok := n.Lookup(ctx, session)
	if !ok || !n.table.revoke(session, r.Incarnation, stream.EndAdmin) {
		return SessionRecord{}, ErrUnknownSession
	}
	return r, nil
}

// Presence lists the live sessions subscribed to topic, newest first: in a
// cluster, as each member's answer within ClusterQueryTimeout reports them.
func (n *Node) Presence(ctx context.Context, topic string) []SessionRecord {
	if n.d.Cluster != nil {
		ctx, cancel := context.WithTimeout(ctx, ClusterQueryTimeout)
		defer cancel()
		return presenceOf(n.d.Cluster.Presence(ctx, topic))
	}
	var recs []SessionRecord
	for _, h := range n.table.snapshot() {
		if slices.Contains(h.Topics, topic) {
			recs = append(recs, n.localRecord(h))
		}
	}
	return presenceOf(recs)
}

// presenceOf filters records to the live ones, newest first.
func presenceOf(recs []SessionRecord) []SessionRecord {
	out := slices.DeleteFunc(slices.Clone(recs), func(r SessionRecord) bool { return r.Ended })
	slices.SortFunc(out, func(a, b SessionRecord) int { return b.Since.Compare(a.Since) })
	return out
}

// Members returns this node's name and the cluster's members (this node
// alone without a cluster).
func (n *Node) Members() (self string, members []Member) {
	if n.d.Cluster == nil {
		m := Member{Name: n.cfg.Name, Region: n.cfg.Region, State: "alive", Streams: int(n.streams.Load()), Target: n.cfg.ConnectionTarget}
		if n.draining.Load() {
			m.State = "draining"
		}
		return m.Name, []Member{m}
	}
	return n.d.Cluster.Local().Name, n.d.Cluster.Members()
}
