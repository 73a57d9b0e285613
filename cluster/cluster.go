package cluster

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Cluster is this node's membership in a region's LAN pool: node metadata,
// failure detection and the gossiped session-ownership table. Build it with
// New, stop it with Leave (graceful) and Close. All methods are safe for
// concurrent use.
//
// Goroutines, each started by goFunc, counted in wg and stopped by stopCh:
// the event loop (applies everything memberlist hands over, sweeps expired
// records, reconciles membership), the revocation notifier (calls
// OnRevoke), the meta loop (UpdateNode), the sync loop (prompt push/pull
// with a member that came back), the forward loop (records to their home
// nodes, takeover notices, rehoming) and the join loop (seeds and dead
// members); plus short-lived senders of queries and answers.
//
// Lock order: recMu, then memMu, then revMu or metaMu; fwdMu and qMu are
// taken last.
type Cluster struct {
	pool
	cfg Config
	mlp atomic.Pointer[memberlist.Memberlist]

	inbox        chan inboxItem
	queuedStates atomic.Int32
	syncReq      chan string
	revokeKick   chan struct{}

	// Records waiting to be forwarded, per destination node (forward.go).
	fwdMu       sync.Mutex
	fwd         map[string][]fwdItem
	fwdLen      int
	fwdInflight int // records of batches being sent
	fwdKick     chan struct{}
	// rehomed is the ring the forward loop last rehomed for (forward.go);
	// shared and read-only.
	rehomed atomic.Pointer[[]string]

	// Queries waiting for answers (Find, PresenceAll), by id.
	qMu       sync.Mutex
	qSeq      uint64
	queries   map[uint64]chan []Record
	answering chan struct{} // bounds answers in flight
	// exchanging bounds bucket digest requests and answers in flight
	// (summary.go).
	exchanging chan struct{}

	metaMu sync.Mutex
	meta   nodeMeta

	memMu   sync.RWMutex
	members map[string]*memberEntry // peers, not self
	// liveGen counts changes of the set of live members (the ring); the
	// sweep re-checks which records this node is home of only when it
	// moved since sweptGen (owned by the event loop).
	liveGen  uint64
	sweptGen uint64
	// ringCache is ring()'s answer for liveGen (nil: recompute); shared
	// and read-only.
	ringCache []string

	recMu   sync.RWMutex
	records table
	byTopic map[string]*sidSet // topic -> live sessions served here (ownOn)
	intern  interner

	revMu   sync.Mutex
	pending []Revocation // bounded by the claims served (entServed): each is revoked at most once

	st counters
}

const (
	// maxQueuedStates bounds push/pull states waiting in the inbox, so
	// their memory is bounded (each up to maxStateMsg).
	maxQueuedStates = 4
	// syncQueue bounds prompt push/pull requests; one sync with any node of
	// the other side of a healed partition is enough, so drops are harmless.
	syncQueue = 4
	// noticeQueue bounds pending direct takeover notices.
	noticeQueue = 256
	// noticeAttempts bounds retries of one notice (every ProbeInterval): by
	// then an unreachable owner has been declared dead.
	noticeAttempts = 20
	// reconcileInterval is how often the member table is compared with
	// memberlist's, repairing any dropped callback.
	reconcileInterval = time.Second
)

// New validates cfg, creates the memberlist instance, starts the Cluster's
// goroutines and makes one attempt to join the seeds. Failing to reach the
// seeds is not an error: it is logged and retried every RejoinInterval.
func New(cfg Config) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := cfg.Tuning
	c := &Cluster{
		pool:       newPool("cluster", cfg.Logger.With("component", "cluster", "node", cfg.NodeName)),
		cfg:        cfg,
		inbox:      make(chan inboxItem, t.InboxSize),
		syncReq:    make(chan string, syncQueue),
		revokeKick: make(chan struct{}, 1),
		fwd:        make(map[string][]fwdItem),
		fwdKick:    make(chan struct{}, 1),
		queries:    make(map[uint64]chan []Record),
		answering:  make(chan struct{}, maxAnswering),
		exchanging: make(chan struct{}, maxExchanging),
		meta: nodeMeta{V: 1, W: wireBinaryBatches | wireSummaries, Region: cfg.Region, Zone: cfg.Zone, URL: cfg.HTTPURL,
			Version: cfg.Version, State: metaAlive},
		members: make(map[string]*memberEntry),
		records: newTable(),
		byTopic: make(map[string]*sidSet),
	}
	c.rehomed.Store(&[]string{cfg.NodeName})
	if err := c.meta.checkSize(); err != nil {
		c.cancel()
		return nil, err
	}
	mc, err := cfg.memberlist(memberlist.DefaultLANConfig(), c.log)
	if err != nil {
		c.cancel()
		return nil, fmt.Errorf("%w: Keys: %w", ErrConfig, err)
	}
	// No LZW: what this pool sends in bulk (push/pull digests of random
	// hashes, forwarded record batches) gains little from it, and each
	// compressed message costs memberlist several growing copies on both
	// sides (issue 25: most of a push/pull's garbage). Peers still
	// decompress what older nodes send compressed.
	mc.EnableCompression = false
	mc.Delegate = delegate{c}
	mc.Events = events{c}
	ml, err := memberlist.Create(mc)
	if err != nil {
		c.cancel()
		return nil, fmt.Errorf("cluster: starting memberlist for node %q: %w", cfg.NodeName, err)
	}
	c.started(ml, cfg.joiner("", &c.st.joinAttempts, &c.st.joinFailures))
	c.mlp.Store(ml)

	metaLoop := func() { c.metaLoop(cfg.Tuning.MetaInterval, c.updateMeta) }
	for _, f := range []func(){c.eventLoop, c.notifyLoop, metaLoop, c.syncLoop, c.forwardLoop} {
		c.goFunc(f)
	}
	if len(cfg.Join) > 0 {
		c.joinSeeds()
	}
	c.goFunc(c.joinLoop)
	c.log.Info("cluster member started", "gossip_addr", c.localAddr, "region", cfg.Region,
		"label", cfg.Label, "encrypted", len(cfg.Keys) > 0, "seeds", len(cfg.Join))
	return c, nil
}

// Leave announces a graceful departure: state "draining"/"leaving" in
// metadata (so peers report StateLeft rather than StateDead), then
// memberlist's Leave, waiting at most timeout for it to be gossiped. Close
// must still be called. Records this node owns are kept by peers for
// DeadGrace; release them first (drain) so that peers see tombstones.
func (c *Cluster) Leave(timeout time.Duration) error {
	return c.leave(timeout, func() {
		c.metaMu.Lock()
		c.meta.State = metaLeaving
		c.metaMu.Unlock()
	})
}

// Close shuts memberlist down (without Leave: peers see a crash) and stops
// every goroutine of the Cluster, waiting for them. Idempotent.
func (c *Cluster) Close() error { return c.close() }

// inboxItem is what a memberlist callback hands to the event loop: always a
// copy, never memberlist's own memory.
type inboxItem struct {
	kind int
	data []byte // itemMsg, itemState
	node nodeInfo
}

const (
	itemMsg = iota
	itemState
	itemJoin
	itemUpdate
	itemLeave
)

type nodeInfo struct {
	name string
	addr string
	meta []byte
}

func nodeInfoOf(n *memberlist.Node) nodeInfo {
	return nodeInfo{name: n.Name, addr: n.Address(), meta: bytes.Clone(n.Meta)}
}

// enqueue hands it to the event loop without blocking; a full inbox drops
// it and counts the drop (membership is repaired by reconcile, records by
// push/pull).
func (c *Cluster) enqueue(it inboxItem) bool {
	select {
	case c.inbox <- it:
		return true
	default:
		c.st.inboxDrops.Add(1)
		return false
	}
}

// eventLoop is the single consumer of the inbox; it also sweeps expired
// records and reconciles membership.
func (c *Cluster) eventLoop() {
	every := min(max(c.cfg.DeadGrace/10, 50*time.Millisecond), 5*time.Second)
	sweep := time.NewTicker(every)
	defer sweep.Stop()
	recon := time.NewTicker(reconcileInterval)
	defer recon.Stop()
	for {
		select {
		case <-c.stopCh:
			return
		case it := <-c.inbox:
			c.handle(it, time.Now())
		case now := <-sweep.C:
			c.sweep(now)
		case now := <-recon.C:
			c.reconcile(now)
		}
	}
}

func (c *Cluster) handle(it inboxItem, now time.Time) {
	switch it.kind {
	case itemJoin, itemUpdate:
		c.onAlive(it.node, now)
	case itemLeave:
		c.onDown(it.node.name, now)
	case itemState:
		c.queuedStates.Add(-1)
		m, err := decodeMessage(it.data)
		switch {
		case err == nil && m.kind == msgSummary:
			c.mergeSummary(m.sum)
		case err == nil && m.kind == msgDigest:
			c.mergeDigest(m.dig, nil)
		case err == nil && m.kind == msgState: // a peer from before digests (ADR 0030)
			c.mergeState(m, now)
		default:
			c.st.invalid.Add(1)
			c.log.Debug("dropping malformed push/pull state", "err", err, "bytes", len(it.data))
		}
	case itemMsg:
		m, err := decodeMessage(it.data)
		if err != nil {
			c.st.invalid.Add(1)
			c.log.Debug("dropping malformed gossip message", "err", err, "bytes", len(it.data))
			return
		}
		switch m.kind {
		case msgRecord:
			c.st.received.Add(1)
			ring := c.ring()
			c.recMu.Lock()
			c.applyLocked(m.rec, m.partial, ring, now)
			c.recMu.Unlock()
		case msgDisconnect:
			c.onDisconnect(m)
		case msgState, msgBatch:
			c.st.received.Add(uint64(m.count()))
			c.mergeState(m, now)
		case msgQuery:
			c.onQuery(m)
		case msgAnswer:
			c.onAnswer(m)
		case msgDigestReq:
			c.onDigestReq(m)
		case msgBucketDigest:
			c.mergeDigest(m.dig, &m.mask)
		default: // msgDigest, msgSummary: push/pull only
			c.st.invalid.Add(1)
		}
	}
}

// onAlive records that memberlist sees name alive (join, update or
// reconcile). A member that comes back from dead triggers a prompt
// push/pull with it, so that ownership taken over while it was gone reaches
// it (and revokes its stale streams) within one TCP round trip.
func (c *Cluster) onAlive(n nodeInfo, now time.Time) {
	if n.name == c.cfg.NodeName {
		return
	}
	meta, ok := decodeMeta(n.meta)
	if !ok {
		if n.meta != nil {
			c.st.invalid.Add(1)
		}
		meta = nodeMeta{V: 1, State: metaAlive}
	}
	c.memMu.Lock()
	e := c.members[n.name]
	fresh, back := e == nil, e != nil && e.down
	if fresh {
		e = &memberEntry{name: n.name}
		c.members[n.name] = e
	}
	e.addr, e.meta, e.raw = n.addr, meta, n.meta
	e.down, e.left, e.downSince = false, false, time.Time{}
	if fresh || back {
		c.liveGen++
		c.ringCache = nil
	}
	c.memMu.Unlock()
	switch {
	case back:
		c.log.Info("member is back", "member", n.name, "addr", n.addr)
		if n.addr != "" {
			c.requestSync(n.addr)
		}
	case fresh:
		c.log.Info("member joined", "member", n.name, "addr", n.addr, "region", meta.Region)
	}
}

// onDown records that memberlist declared name dead or departed. Node.State
// is not consulted (it is stale in memberlist v0.7.0's NotifyLeave); a
// member whose last metadata said "leaving" is reported as left.
func (c *Cluster) onDown(name string, now time.Time) {
	if name == c.cfg.NodeName {
		return
	}
	c.memMu.Lock()
	e := c.members[name]
	if e == nil {
		e = &memberEntry{name: name}
		c.members[name] = e
	} else if e.down {
		c.memMu.Unlock()
		return
	}
	e.down, e.left, e.downSince = true, e.meta.State == metaLeaving, now
	c.liveGen++
	c.ringCache = nil
	st := e.state()
	c.memMu.Unlock()
	c.log.Info("member is down", "member", name, "state", st)
}

// reconcile compares the member table with memberlist's and repairs any
// difference left by a dropped callback. Only Node.Name is read from
// memberlist's Members(): the other fields are rewritten by memberlist under
// its own lock, so reading them here would race. A member repaired this way
// keeps its last known address and metadata until its next update.
func (c *Cluster) reconcile(now time.Time) {
	live := make(map[string]bool)
	for _, n := range c.ml.Members() {
		live[n.Name] = true
	}
	delete(live, c.cfg.NodeName)
	var gone []string
	var back []nodeInfo
	c.memMu.RLock()
	for name, e := range c.members {
		if !e.down && !live[name] {
			gone = append(gone, name)
		}
	}
	for name := range live {
		switch e := c.members[name]; {
		case e == nil:
			back = append(back, nodeInfo{name: name})
		case e.down:
			back = append(back, nodeInfo{name: name, addr: e.addr, meta: e.raw})
		}
	}
	c.memMu.RUnlock()
	for _, name := range gone {
		c.onDown(name, now)
	}
	for _, n := range back {
		c.onAlive(n, now)
	}
	if len(gone)+len(back) > 0 {
		c.log.Warn("member table repaired from memberlist (callbacks were dropped)", "down", len(gone), "up", len(back))
	}
}

// requestSync asks the sync loop for a push/pull with addr; never blocks.
func (c *Cluster) requestSync(addr string) {
	select {
	case c.syncReq <- addr:
	default:
		c.st.syncDrops.Add(1)
	}
}

// syncLoop performs requested push/pulls (memberlist Join of one address:
// a full state exchange in both directions).
func (c *Cluster) syncLoop() {
	for {
		select {
		case <-c.stopCh:
			return
		case addr := <-c.syncReq:
			c.st.syncs.Add(1)
			if _, err := c.ml.Join([]string{addr}); err != nil {
				c.log.Debug("push/pull with returning member failed", "addr", addr, "err", err)
			}
		}
	}
}

// joinLoop re-joins seeds every RejoinInterval and dead members every
// ReconnectInterval.
func (c *Cluster) joinLoop() {
	seeds := time.NewTicker(c.cfg.RejoinInterval)
	defer seeds.Stop()
	dead := time.NewTicker(c.cfg.Tuning.ReconnectInterval)
	defer dead.Stop()
	for {
		select {
		case <-c.stopCh:
			return
		case <-seeds.C:
			if len(c.cfg.Join) > 0 {
				c.joinSeeds()
			}
		case <-dead.C:
			c.reconnectDead(time.Now())
		}
	}
}

// joinSeeds joins the seeds that are not live members (nor this node).
func (c *Cluster) joinSeeds() {
	known := map[string]bool{c.localAddr: true}
	c.memMu.RLock()
	for _, e := range c.members {
		if !e.down {
			known[e.addr] = true
		}
	}
	c.memMu.RUnlock()
	c.join.joinSeeds(c.ctx, known)
}

// reconnectDead tries to join members that died (not those that left) less
// than ReconnectTimeout ago.
func (c *Cluster) reconnectDead(now time.Time) {
	var addrs []string
	c.memMu.RLock()
	for _, e := range c.members {
		if e.down && !e.left && e.addr != "" && now.Sub(e.downSince) < c.cfg.Tuning.ReconnectTimeout {
			addrs = append(addrs, e.addr)
		}
	}
	c.memMu.RUnlock()
	c.join.reconnect(addrs)
}

// liveNode returns a memberlist.Node to reach name if it is a live member.
// It is built from the member table rather than taken from memberlist's
// Members(), whose nodes memberlist mutates concurrently.
func (c *Cluster) liveNode(name string) *memberlist.Node {
	c.memMu.RLock()
	e := c.members[name]
	var addr string
	if e != nil && !e.down {
		addr = e.addr
	}
	c.memMu.RUnlock()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	p, err := strconv.ParseUint(port, 10, 16)
	if ip == nil || err != nil {
		return nil
	}
	return &memberlist.Node{Name: name, Addr: ip, Port: uint16(p)}
}
