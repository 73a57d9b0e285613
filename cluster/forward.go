package cluster

import (
	"context"
	"sort"
	"time"
)

// Records reach their home nodes, and takeover notices the previous owner,
// by direct reliable messages (memberlist SendReliable, TCP): each change is
// queued per destination (bounded by Tuning.MaxQueuedBroadcasts; drops are
// counted and repaired by push/pull and rehoming) and the forward loop sends
// each destination's queue as one batch, so a burst of connects costs one
// connection per home node per flush rather than one per claim. A failed
// batch is retried every ProbeInterval while the destination is a live
// member, at most noticeAttempts times.

const (
	// forwardDelay gathers the claims of a connect burst into one batch.
	forwardDelay = 5 * time.Millisecond
	// batchBudget keeps a batch under maxSmallMsg.
	batchBudget = maxSmallMsg - 4<<10
	// maxAnswerRecs caps the records in one query answer (presence lists
	// at most 1,000 sessions; a node answers with its first 512 by id).
	maxAnswerRecs = 512
	// maxAnswering bounds answers being sent concurrently; beyond it a
	// query is dropped and the asker times out.
	maxAnswering = 16
)

// fwdItem is a record waiting in the forward queue: its session key and
// entry by value (88 bytes, nothing allocated per record), encoded from
// there when its batch is sent.
type fwdItem struct {
	k sid
	e entry
}

// record is the full Record (for JSON batches to older nodes).
func (it *fwdItem) record() Record { return it.e.record(it.k.String()) }

// forwardLocked queues it for dest. Caller holds recMu, which keeps the
// records of one session queued in increasing order.
func (c *Cluster) forwardLocked(dest string, it fwdItem) {
	c.fwdMu.Lock()
	if c.fwdLen >= c.cfg.Tuning.MaxQueuedBroadcasts {
		c.fwdMu.Unlock()
		c.st.queueDrops.Add(1)
		return
	}
	c.fwd[dest] = append(c.fwd[dest], it)
	c.fwdLen++
	c.fwdMu.Unlock()
	c.st.queued.Add(1)
	select {
	case c.fwdKick <- struct{}{}:
	default:
	}
}

// sendHomesLocked queues it for each home of its session (owned by its
// owner) other than self.
func (c *Cluster) sendHomesLocked(it fwdItem, ring []string) {
	var buf [4]scored
	for _, h := range homeSetAt(it.k.fnv(), it.e.who.node, ring, c.cfg.HomeReplicas, buf[:0]) {
		if h.name != c.cfg.NodeName {
			c.forwardLocked(h.name, it)
		}
	}
}

// sendFormerHomesLocked queues it, a record that superseded this node's
// own live claim of its session, for the homes the session had under this
// node's ownership that are homes no more (nor the new owner): the new
// owner sends the record to its own homes only, and the former homes
// would keep the superseded record until the ring changes. They drop
// their copy on receipt (applyLocked). The old owner always hears of a
// takeover: the new owner or a common home sends it a notice, or it is a
// home of the new record itself.
func (c *Cluster) sendFormerHomesLocked(it fwdItem, ring []string) {
	self, owner, r := c.cfg.NodeName, it.e.who.node, c.cfg.HomeReplicas
	var buf [4]scored
	sh := it.k.fnv()
	for _, h := range homeSetAt(sh, self, ring, r, buf[:0]) {
		if h.name != owner && !homeAt(sh, h.name, owner, ring, r) {
			c.forwardLocked(h.name, it)
		}
	}
}

// noticeLocked queues it for node, the previous owner of its session.
func (c *Cluster) noticeLocked(node string, it fwdItem) {
	if node == c.cfg.NodeName {
		return
	}
	c.st.noticesSent.Add(1)
	c.forwardLocked(node, it)
}

// forwardLoop sends queued records, retries failed batches and rehomes own
// records when the member list changes.
func (c *Cluster) forwardLoop() {
	tick := time.NewTicker(c.cfg.Tuning.ProbeInterval)
	defer tick.Stop()
	attempts := make(map[string]int)
	lastRing := *c.rehomed.Load()
	lastID := ringID(lastRing)
	for {
		select {
		case <-c.stopCh:
			return
		case <-c.fwdKick:
			select {
			case <-c.stopCh:
				return
			case <-time.After(forwardDelay):
			}
		case <-tick.C:
		}
		c.flushForwards(attempts)
		if ring := c.ring(); ringID(ring) != lastID {
			c.rehome(lastRing, ring)
			lastRing, lastID = ring, ringID(ring)
		}
	}
}

// flushForwards sends every queued batch. Batches for a member that is not
// live are dropped (it learns at its rejoin push/pull); failed batches are
// re-queued for the next tick.
func (c *Cluster) flushForwards(attempts map[string]int) {
	c.fwdMu.Lock()
	batch := c.fwd
	c.fwd = make(map[string][]fwdItem, len(batch))
	c.fwdInflight += c.fwdLen
	c.fwdLen = 0
	c.fwdMu.Unlock()
	for dest, recs := range batch {
		err := c.sendRecords(dest, recs)
		c.fwdMu.Lock()
		c.fwdInflight -= len(recs)
		c.fwdMu.Unlock()
		if err != nil {
			c.st.noticeFailures.Add(1)
			attempts[dest]++
			if attempts[dest] < noticeAttempts && c.liveNode(dest) != nil {
				c.requeue(dest, recs)
			} else {
				c.st.noticeDrops.Add(uint64(len(recs)))
				delete(attempts, dest)
			}
			c.log.Debug("forwarding records failed", "to", dest, "records", len(recs), "attempt", attempts[dest], "err", err)
			continue
		}
		delete(attempts, dest)
	}
}

func (c *Cluster) requeue(dest string, recs []fwdItem) {
	c.fwdMu.Lock()
	defer c.fwdMu.Unlock()
	if c.fwdLen+len(recs) > c.cfg.Tuning.MaxQueuedBroadcasts {
		c.st.queueDrops.Add(uint64(len(recs)))
		return
	}
	c.fwd[dest] = append(recs, c.fwd[dest]...)
	c.fwdLen += len(recs)
}

// errNotLive is returned by sendRecords for a destination that is not a
// live member.
var errNotLive = &sendError{"destination is not a live member"}

type sendError struct{ s string }

func (e *sendError) Error() string { return "cluster: " + e.s }

// batchEncoder returns how to encode record batches for member name:
// msgBatch if it advertises it, else JSON msgState (a node from before
// msgBatch, during a rolling upgrade).
func (c *Cluster) batchEncoder(name string) func(string, []fwdItem, int) ([]byte, int) {
	c.memMu.RLock()
	e := c.members[name]
	binary := e != nil && e.meta.W&wireBinaryBatches != 0
	c.memMu.RUnlock()
	if binary {
		return encodeItems
	}
	return encodeItemsJSON
}

// encodeItemsJSON encodes queued items as a JSON msgState within budget,
// converting at most a batch's worth of them to Records.
func encodeItemsJSON(from string, items []fwdItem, budget int) ([]byte, int) {
	const most = maxAnswerRecs // 512 JSON records (< 250 B each) fill a batch
	n := min(len(items), most)
	recs, parts := make([]Record, n), make([]bool, n)
	for i := range n {
		recs[i], parts[i] = items[i].record(), items[i].e.partial()
	}
	msg, left := encodeStateJSON(from, recs, parts, budget)
	return msg, len(items) - (n - left)
}

// sendRecords sends items to dest as batches under batchBudget: msgBatch,
// or JSON msgState to a member that does not advertise msgBatch.
func (c *Cluster) sendRecords(dest string, items []fwdItem) error {
	node := c.liveNode(dest)
	if node == nil {
		return errNotLive
	}
	encode := c.batchEncoder(dest)
	for len(items) > 0 {
		msg, left := encode(c.cfg.NodeName, items, batchBudget)
		n := len(items) - left
		if n == 0 { // one record over budget cannot happen: a record is < 80 KiB
			n = 1
			msg, _ = encode(c.cfg.NodeName, items[:1], 0)
		}
		if err := c.ml.SendReliable(node, msg); err != nil {
			return err
		}
		c.st.sent.Add(uint64(n))
		items = items[n:]
	}
	return nil
}

// rehome sends this node's own records (live and tombstones) to the homes
// they gained between the rings old and cur, so that the new homes can
// answer for them. It runs on the forward loop, outside the queue bound:
// its size is bounded by the claims this node serves.
//
// c.rehomed is set to cur first: until then, the digest merge leaves the
// own records of members that joined since the last rehoming to this
// rehoming instead of queueing them too (a joining node received every
// record twice).
func (c *Cluster) rehome(old, cur []string) {
	self, r := c.cfg.NodeName, c.cfg.HomeReplicas
	c.rehomed.Store(&cur)
	out := make(map[string][]fwdItem)
	var buf [4]scored
	c.recMu.RLock()
	for s, e := range c.records.all() {
		if e.who.node != self {
			continue
		}
		sh := s.fnv()
		for _, h := range homeSetAt(sh, self, cur, r, buf[:0]) {
			if !homeAt(sh, h.name, self, old, r) {
				out[h.name] = append(out[h.name], fwdItem{s, *e})
			}
		}
	}
	c.recMu.RUnlock()
	for dest, recs := range out {
		if err := c.sendRecords(dest, recs); err != nil {
			c.st.noticeFailures.Add(1)
			c.log.Debug("rehoming records failed", "to", dest, "records", len(recs), "err", err)
			continue
		}
		c.st.rehomed.Add(uint64(len(recs)))
	}
}

// Find returns the latest record of session in the pool: this node's own
// view, the answers of the session's home nodes and, when they name a live
// owner that was not asked, the owner's own. Members that do not answer
// before ctx ends are left out; err is ctx's error only when nothing was
// found.
func (c *Cluster) Find(ctx context.Context, session string) (Record, bool, error) {
	best, ok := c.Lookup(session)
	asked := map[string]bool{c.cfg.NodeName: true}
	var targets []string
	for _, h := range homesOf(session, c.ring(), c.lookupSlots()) {
		if !asked[h] {
			asked[h] = true
			targets = append(targets, h)
		}
	}
	merge := func(recs []Record) {
		for _, r := range recs {
			if r.Session == session && (!ok || compareRecords(r, best) > 0) {
				best, ok = r, true
			}
		}
	}
	recs, err := c.ask(ctx, targets, query{session: session})
	merge(recs)
	if ok && !asked[best.Node] && c.liveNode(best.Node) != nil {
		recs, err2 := c.ask(ctx, []string{best.Node}, query{session: session})
		merge(recs)
		err = cmpErr(err, err2)
	}
	if !ok && err != nil {
		return Record{}, false, err
	}
	return best, ok, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// PresenceAll returns the live sessions on topic across the pool, sorted by
// session: each live member answers for the sessions it serves (at most
// maxAnswerRecs each). Members that do not answer before ctx ends are left
// out.
func (c *Cluster) PresenceAll(ctx context.Context, topic string) []Record {
	best := make(map[string]Record)
	for _, r := range c.ownOn(topic) {
		best[r.Session] = r
	}
	var peers []string
	for _, m := range c.ring() {
		if m != c.cfg.NodeName {
			peers = append(peers, m)
		}
	}
	recs, _ := c.ask(ctx, peers, query{topic: topic})
	for _, r := range recs {
		if cur, ok := best[r.Session]; !ok || compareRecords(r, cur) > 0 {
			best[r.Session] = r
		}
	}
	out := make([]Record, 0, len(best))
	for _, r := range best {
		if !r.Ended {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Session < out[j].Session })
	return out
}

// ownOn returns this node's own live records on topic, at most
// maxAnswerRecs, lowest session ids first.
func (c *Cluster) ownOn(topic string) []Record {
	c.recMu.RLock()
	defer c.recMu.RUnlock()
	var out []Record
	set := c.byTopic[topic]
	if set == nil {
		return nil
	}
	for s := range set.all() {
		if e := c.records.getK(s); e != nil && !e.ended() && e.who.node == c.cfg.NodeName {
			out = append(out, e.record(s.String()))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Session < out[j].Session })
	if len(out) > maxAnswerRecs {
		out = out[:maxAnswerRecs]
	}
	return out
}

// query asks for one session's record or for the sessions a node serves on
// a topic.
type query struct {
	session string
	topic   string
}

// ask sends q to each of nodes and gathers the records they answer with
// until all answered or ctx ends.
func (c *Cluster) ask(ctx context.Context, nodes []string, q query) ([]Record, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	ch := make(chan []Record, len(nodes))
	c.qMu.Lock()
	c.qSeq++
	id := c.qSeq
	c.queries[id] = ch
	c.qMu.Unlock()
	defer func() {
		c.qMu.Lock()
		delete(c.queries, id)
		c.qMu.Unlock()
	}()
	c.st.queries.Add(1)
	msg := encodeQuery(c.cfg.NodeName, id, q)
	want := 0
	for _, n := range nodes {
		node := c.liveNode(n)
		if node == nil {
			continue
		}
		if c.goFunc(func() {
			if err := c.ml.SendReliable(node, msg); err != nil {
				c.log.Debug("query failed", "to", n, "err", err)
			}
		}) {
			want++
		}
	}
	var out []Record
	for range want {
		select {
		case recs := <-ch:
			out = append(out, recs...)
		case <-ctx.Done():
			return out, ctx.Err()
		case <-c.stopCh:
			return out, ErrClosed
		}
	}
	return out, nil
}

// onQuery answers a query from a peer; never blocks the event loop.
func (c *Cluster) onQuery(m message) {
	var recs []Record
	if m.session != "" {
		if r, ok := c.Lookup(m.session); ok {
			recs = []Record{r}
		}
	} else {
		recs = c.ownOn(m.topic)
	}
	node := c.liveNode(m.from)
	if node == nil {
		return
	}
	select {
	case c.answering <- struct{}{}:
	default:
		c.st.queryDrops.Add(1)
		return
	}
	msg := encodeAnswer(c.cfg.NodeName, m.qid, recs)
	if !c.goFunc(func() {
		defer func() { <-c.answering }()
		if err := c.ml.SendReliable(node, msg); err != nil {
			c.log.Debug("answer failed", "to", m.from, "err", err)
		}
	}) {
		<-c.answering
	}
	c.st.answered.Add(1)
}

// onAnswer hands an answer to the waiting ask, if it is still waiting.
func (c *Cluster) onAnswer(m message) {
	c.qMu.Lock()
	ch := c.queries[m.qid]
	c.qMu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- m.recs:
	default:
	}
}
