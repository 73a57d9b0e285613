package cluster

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Record is the ownership record of one session: which node serves it, since
// when, and on which topics. Records are kept by the owner and the session's
// home nodes (ADR 0026); every holder converges to the
// highest record per session (see Newer).
type Record struct {
	Session string
	Node    string // owner node name
	Region  string // owner node region
	// Incarnation orders claims of one session: max(previous+1, claim time
	// in unix nanoseconds). Ties (same value on two nodes) are broken by node
	// name, the greater name winning.
	Incarnation uint64
	// Topics the session is subscribed to. A record learned from a gossip
	// broadcast may carry a prefix of them only when the full list did not
	// fit one UDP packet; push/pull state then brings the full list.
	Topics []string
	Since  time.Time // claim time on the owner's clock
	// Trace is opaque to this package, e.g. the W3C traceparent of the
	// session span, so that a reconnect elsewhere can link to it.
	Trace string
	// Ended marks a tombstone: the stream ended (Release). Tombstones stay
	// readable through Lookup for DeadGrace after EndedAt.
	Ended   bool
	EndedAt time.Time
}

func (r Record) clone() Record {
	if r.Topics != nil {
		r.Topics = append([]string(nil), r.Topics...)
	}
	return r
}

// Newer reports whether a supersedes b (same session assumed): higher
// incarnation, then greater node name, then a tombstone over a live record
// of the same claim.
func Newer(a, b Record) bool { return compareRecords(a, b) > 0 }

func compareRecords(a, b Record) int {
	if c := cmp.Compare(a.Incarnation, b.Incarnation); c != 0 {
		return c
	}
	if c := strings.Compare(a.Node, b.Node); c != 0 {
		return c
	}
	switch {
	case a.Ended == b.Ended:
		return 0
	case a.Ended:
		return 1
	default:
		return -1
	}
}

// Revocation tells the owner of a session to stop serving it.
type Revocation struct {
	Session     string
	Incarnation uint64 // the revoked (old) claim
	Reason      string // ReasonTakeover or ReasonAdmin
	By          string // node that claimed the session or asked for the disconnect
}

// Revocation reasons.
const (
	ReasonTakeover = "takeover"
	ReasonAdmin    = "admin"
)

// ValidateClaim reports whether Claim would accept these arguments: a
// session id of 1..MaxSessionLen printable bytes, at most MaxTopics topics of
// 1..MaxTopicLen printable bytes, a trace of at most MaxTraceLen printable
// bytes.
func ValidateClaim(session string, topics []string, trace string) error {
	for _, err := range []error{validateSession(session), validateTopics(topics), validateTrace(trace)} {
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidClaim, err)
		}
	}
	return nil
}

// Claim records that this node now serves session and sends the record to
// the session's home nodes (ADR 0026). The incarnation is max(known
// incarnation+1, now in unix ns), so a reconnect orders after the previous
// claim as long as clocks are closer than the reconnect delay. If this node
// already served the session under an older claim, OnRevoke fires for that
// one (same-node takeover). A home node that held a live record of another
// owner sends that owner the new claim (TCP), whose OnRevoke then fires; if
// this node knew the previous owner itself, it sends the notice too.
// Arguments that fail ValidateClaim claim nothing and return a zero Record.
func (c *Cluster) Claim(session string, topics []string, trace string) Record {
	if err := ValidateClaim(session, topics, trace); err != nil {
		c.st.invalidClaims.Add(1)
		c.log.Warn("claim refused", "session", clip(session), "err", err)
		return Record{}
	}
	self := c.cfg.NodeName
	now := time.Now()
	ns := now.UnixNano()
	rec := Record{
		Session: session, Node: self, Region: c.cfg.Region, Incarnation: uint64(max(ns, 1)),
		Since: time.Unix(0, ns), Trace: trace,
	}
	if len(topics) > 0 {
		rec.Topics = append([]string(nil), topics...)
	}
	ring := c.ring()
	c.recMu.Lock()
	defer c.recMu.Unlock()
	notify := ""
	if e := c.records.get(session); e != nil {
		rec.Incarnation = max(rec.Incarnation, e.inc+1)
		if !e.ended() && e.who.node != self {
			notify = e.who.node
		}
	}
	k := sidOf(session)
	if old, ok := c.servedLocked(k); ok {
		c.revokeLocked(Revocation{Session: session, Incarnation: old, Reason: ReasonTakeover, By: self})
	}
	it := c.storeLocked(rec, false, now)
	c.records.getK(k).flags |= entServed
	c.sendHomesLocked(it, ring)
	if notify != "" && !homeAt(k.fnv(), notify, self, ring, c.cfg.HomeReplicas) {
		c.noticeLocked(notify, it)
	}
	return rec // the stored entry shares none of rec's memory
}

// Release records that the stream of claim (session, incarnation) ended: if
// it is still the latest record, it becomes a tombstone (sent to the homes, kept
// DeadGrace, then forgotten). Releasing a claim that was superseded only
// forgets it locally. Idempotent.
func (c *Cluster) Release(session string, incarnation uint64) {
	now := time.Now()
	c.recMu.Lock()
	defer c.recMu.Unlock()
	e := c.records.get(session)
	if e != nil && e.served() && e.inc == incarnation {
		e.flags &^= entServed
	}
	if e == nil || e.who.node != c.cfg.NodeName || e.inc != incarnation || e.ended() {
		return
	}
	c.tombstoneLocked(session, e, now)
}

// tombstoneLocked turns this node's own record e into a tombstone and
// sends it to the session's homes.
func (c *Cluster) tombstoneLocked(session string, e *entry, now time.Time) {
	r := e.record(session)
	r.Ended, r.EndedAt = true, time.Unix(0, now.UnixNano())
	c.sendHomesLocked(c.storeLocked(r, e.partial(), now), c.ring())
}

// Lookup returns the latest record this node holds for session, tombstones
// included (Ended): its own claims and the sessions it is a home node of.
// It asks no peer; Find does.
func (c *Cluster) Lookup(session string) (Record, bool) {
	c.recMu.RLock()
	defer c.recMu.RUnlock()
	e := c.records.get(session)
	if e == nil {
		return Record{}, false
	}
	return e.record(session), true
}

// Presence returns the live records (not Ended) this node holds whose
// Topics contain topic, sorted by session: its own and those it is a home
// node of. PresenceAll asks every member. It scans every record held here
// (only own records are indexed by topic, to keep homed records small).
func (c *Cluster) Presence(topic string) []Record {
	c.recMu.RLock()
	defer c.recMu.RUnlock()
	var out []Record
	for k, e := range c.records.all() {
		if !e.ended() && slices.Contains(e.topics(), topic) {
			out = append(out, e.record(k.String()))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Session < out[j].Session })
	return out
}

// Disconnect asks the owner of session to stop serving it (an admin
// action). If this node owns it, OnRevoke fires here with ReasonAdmin;
// otherwise a reliable (TCP) message is sent to the owner, whose OnRevoke
// fires on receipt. A nil error means the request was delivered, not that
// the stream has closed yet. Errors: ErrUnknownSession when no live record
// is known, ErrOwnerUnreachable when the owner is not a live member or the
// message failed, ctx's error when ctx ends first.
func (c *Cluster) Disconnect(ctx context.Context, session string) (Record, error) {
	self := c.cfg.NodeName
	rec, ok, err := c.Find(ctx, session)
	if err != nil {
		return Record{}, fmt.Errorf("cluster: disconnect %q: %w", clip(session), err)
	}
	if !ok || rec.Ended {
		return Record{}, fmt.Errorf("%w: %q", ErrUnknownSession, clip(session))
	}
	c.recMu.Lock()
	if rec.Node == self {
		inc, owned := c.servedLocked(sidOf(session))
		if owned {
			c.adminRevokeLocked(session, inc, self)
		}
		c.recMu.Unlock()
		if !owned {
			return rec, fmt.Errorf("%w: %q is no longer served here", ErrUnknownSession, clip(session))
		}
		return rec, nil
	}
	c.recMu.Unlock()

	node := c.liveNode(rec.Node)
	if node == nil {
		return rec, fmt.Errorf("%w: owner %q of session %q is not a live member", ErrOwnerUnreachable, rec.Node, clip(session))
	}
	msg := encodeDisconnect(self, session, rec.Incarnation)
	done := make(chan error, 1)
	if !c.goFunc(func() { done <- c.ml.SendReliable(node, msg) }) {
		return rec, ErrClosed
	}
	select {
	case err := <-done:
		if err != nil {
			return rec, fmt.Errorf("%w: sending to %q: %w", ErrOwnerUnreachable, rec.Node, err)
		}
		return rec, nil
	case <-ctx.Done():
		return rec, fmt.Errorf("cluster: disconnect %q: %w", clip(session), ctx.Err())
	}
}

// onDisconnect handles an admin request for a session this node may own.
func (c *Cluster) onDisconnect(m message) {
	c.st.disconnectsReceived.Add(1)
	c.recMu.Lock()
	defer c.recMu.Unlock()
	inc, ok := c.servedLocked(sidOf(m.session))
	if !ok {
		c.log.Debug("disconnect for a session not served here", "session", m.session, "from", m.from)
		return
	}
	c.adminRevokeLocked(m.session, inc, m.from)
}

// adminRevokeLocked revokes claim (session, inc) served here and turns its
// record into a tombstone at once, so that presence drops it without
// waiting for the application's Release (which then does nothing).
func (c *Cluster) adminRevokeLocked(session string, inc uint64, by string) {
	c.unserveLocked(sidOf(session))
	c.revokeLocked(Revocation{Session: session, Incarnation: inc, Reason: ReasonAdmin, By: by})
	if e := c.records.get(session); e != nil && e.who.node == c.cfg.NodeName && e.inc == inc && !e.ended() {
		c.tombstoneLocked(session, e, time.Now())
	}
}

// applyLocked merges a received record (a forwarded batch, a notice or a
// push/pull state; none is relayed). ring is the current live ring. It
// returns whether the table changed.
//
// Order of checks:
//  1. A record that supersedes a claim this node serves revokes that claim,
//     whatever else happens to the record: the revocation depends on
//     incarnation order only.
//  2. Older or identical records are dropped (counted stale / duplicate);
//     an older live claim of another node is answered with the newer record
//     held here, sent to that node (it learns it lost the session). An
//     identical claim with the full topic list replaces a trimmed one.
//  3. A newer record that supersedes a live claim of a third node held here
//     is sent to that node as a takeover notice; one that supersedes this
//     node's own live claim is sent to the homes that claim had and the
//     new one has not (sendFormerHomesLocked: homes move with the owner,
//     ADR 0037), which drop their copy at step 6.
//  4. Records of an owner down for more than DeadGrace, and tombstones older
//     than DeadGrace, are not stored (no resurrection of forgotten records
//     by a peer that still had them); they still remove what they supersede.
//  5. A live record naming this node for a claim it does not serve (e.g.
//     from before a restart) is replaced by a tombstone: each node is the
//     authority on its own claims.
//  6. Other nodes' records are stored only by the session's home nodes
//     under the record's owner (ADR 0026, 0037); elsewhere they are
//     dropped after steps 1–3, and a copy held here is deleted.
func (c *Cluster) applyLocked(r Record, partial bool, ring []string, now time.Time) bool {
	self := c.cfg.NodeName
	k := sidOf(r.Session)
	if inc, ok := c.servedLocked(k); ok && !(r.Node == self && r.Incarnation == inc) &&
		compareRecords(r, Record{Node: self, Incarnation: inc}) > 0 {
		c.unserveLocked(k)
		c.revokeLocked(Revocation{Session: r.Session, Incarnation: inc, Reason: ReasonTakeover, By: r.Node})
	}
	cur := c.records.getK(k)
	exists := cur != nil
	if exists {
		switch d := compareRecords(r, cur.key()); {
		case d < 0:
			c.st.stale.Add(1)
			if !r.Ended && r.Node != self && r.Node != cur.who.node {
				c.noticeLocked(r.Node, fwdItem{k, *cur})
			}
			return false
		case d == 0:
			if cur.partial() && !partial {
				c.storeLocked(r, false, now)
				return true
			}
			c.st.duplicates.Add(1)
			return false
		}
		if !cur.ended() && cur.who.node != r.Node {
			it := fwdItem{k, c.intern.entry(r, partial, now)}
			if cur.who.node != self {
				c.noticeLocked(cur.who.node, it)
			} else {
				c.sendFormerHomesLocked(it, ring)
			}
		}
	}
	if (r.Ended && now.Sub(r.EndedAt) > c.cfg.DeadGrace) || (r.Node != self && c.ownerExpired(r.Node, now)) {
		c.st.stale.Add(1)
		if exists {
			c.deleteLocked(k)
		}
		return exists
	}
	if r.Node == self && !r.Ended {
		if inc, ok := c.servedLocked(k); !ok || inc != r.Incarnation {
			c.st.corrections.Add(1)
			c.storeLocked(r, partial, now)
			c.tombstoneLocked(r.Session, c.records.getK(k), now)
			return true
		}
	}
	if r.Node != self && !c.isHome(k, r.Node, ring) {
		c.st.notHome.Add(1)
		if exists {
			c.deleteLocked(k)
		}
		return exists
	}
	c.storeLocked(r, partial, now)
	return true
}

// ownerExpired reports whether node has been dead or gone for longer than
// DeadGrace. Caller holds recMu.
func (c *Cluster) ownerExpired(node string, now time.Time) bool {
	c.memMu.RLock()
	defer c.memMu.RUnlock()
	e := c.members[node]
	return e != nil && e.down && now.Sub(e.downSince) > c.cfg.DeadGrace
}

// mergeState applies full records: a forwarded batch, or the push/pull
// state of a peer from before digests (ADR 0030).
func (c *Cluster) mergeState(m message, now time.Time) {
	c.st.merges.Add(1)
	ring := c.ring()
	c.recMu.Lock()
	defer c.recMu.Unlock()
	m.each(func(r Record, partial bool) { c.applyLocked(r, partial, ring, now) })
}

// sweep forgets expired records and members. Own live records are never
// expired while served; an own live record no longer served (admin
// disconnect without Release) becomes a tombstone. Records this node is no
// longer home of are dropped, checked only when the live members changed
// since the last sweep: every record is stored under the ring of its
// arrival (applyLocked, on this same event loop), and placing a session
// costs a hash per member, so checking every record at every sweep cost
// O(records × members) under the record lock — 40 ms every 3 s for a node
// of a 200-member pool holding 10,000 of 1M sessions (BenchmarkSweep; 0.4
// ms without it).
func (c *Cluster) sweep(now time.Time) {
	self, grace := c.cfg.NodeName, c.cfg.DeadGrace
	ring := c.ring()
	c.recMu.Lock()
	c.memMu.RLock()
	gen := c.liveGen
	checkHomes := gen != c.sweptGen
	var drop []sid
	orphaned := 0
	var correct []sid
	for s, e := range c.records.all() {
		switch {
		case e.ended():
			if now.Sub(time.Unix(0, e.at)) > grace {
				drop = append(drop, s)
			}
		case e.who.node == self:
			if !e.served() {
				correct = append(correct, s)
			}
		default:
			m := c.members[e.who.node]
			if (m == nil && now.Sub(time.Unix(0, e.at)) > grace) || (m != nil && m.down && now.Sub(m.downSince) > grace) {
				drop = append(drop, s)
				orphaned++
			} else if checkHomes && !c.isHome(s, e.who.node, ring) {
				drop = append(drop, s) // rehomed: the owner sent it to its new homes
			}
		}
	}
	c.memMu.RUnlock()
	c.sweptGen = gen
	for _, s := range drop {
		c.deleteLocked(s)
	}
	for _, s := range correct {
		c.tombstoneLocked(s.String(), c.records.getK(s), now)
	}
	c.recMu.Unlock()
	c.st.expired.Add(uint64(len(drop)))
	if orphaned > 0 && c.cfg.OnExpire != nil {
		c.cfg.OnExpire(orphaned)
	}

	c.memMu.Lock()
	for name, e := range c.members {
		keep := c.cfg.Tuning.ReconnectTimeout
		if e.left {
			keep = 2 * grace
		}
		if e.down && now.Sub(e.downSince) > keep {
			delete(c.members, name)
		}
	}
	c.memMu.Unlock()
}

// storeLocked stores r in compact form. Only live records this node serves
// are indexed by topic (ownOn answers PresenceAll with them).
// It returns the stored entry as a forward queue item.
func (c *Cluster) storeLocked(r Record, partial bool, now time.Time) fwdItem {
	k := sidOf(r.Session)
	if old := c.records.getK(k); old != nil {
		c.unindexLocked(k, old)
	}
	e := c.intern.entry(r, partial, now)
	if old := c.records.getK(k); old != nil && old.served() && !e.ended() && e.who.node == c.cfg.NodeName && e.inc == old.inc {
		e.flags |= entServed // the same claim again (a full copy of a trimmed one)
	}
	c.records.put(k, e)
	if e.ended() || e.who.node != c.cfg.NodeName {
		return fwdItem{k, e}
	}
	for _, t := range e.topics() {
		set := c.byTopic[t]
		if set == nil {
			set = new(sidSet)
			c.byTopic[t] = set
		}
		set.add(k)
	}
	return fwdItem{k, e}
}

func (c *Cluster) deleteLocked(k sid) {
	if old := c.records.getK(k); old != nil {
		c.unindexLocked(k, old)
		c.records.del(k)
	}
}

func (c *Cluster) unindexLocked(k sid, e *entry) {
	if e.ended() || e.who.node != c.cfg.NodeName {
		return
	}
	for _, t := range e.topics() {
		if set := c.byTopic[t]; set != nil {
			set.del(k)
			if set.len() == 0 {
				delete(c.byTopic, t)
			}
		}
	}
}

// servedLocked returns the incarnation of the claim of k this node
// serves, if any: its own live record, flagged entServed. Caller holds
// recMu.
func (c *Cluster) servedLocked(k sid) (uint64, bool) {
	if e := c.records.getK(k); e != nil && e.served() {
		return e.inc, true
	}
	return 0, false
}

// unserveLocked clears k's served flag (its claim is revoked or released).
func (c *Cluster) unserveLocked(k sid) {
	if e := c.records.getK(k); e != nil {
		e.flags &^= entServed
	}
}

// revokeLocked queues a revocation for the notifier; never blocks. The
// pending list is bounded by the number of claims this node serves, since
// every path that revokes clears the claim's served flag first.
func (c *Cluster) revokeLocked(r Revocation) {
	c.st.revocations.Add(1)
	if r.Reason == ReasonAdmin {
		c.st.revocationsAdmin.Add(1)
	} else {
		c.st.revocationsTakeover.Add(1)
	}
	c.log.Debug("revoking session", "session", r.Session, "incarnation", r.Incarnation, "reason", r.Reason, "by", r.By)
	c.revMu.Lock()
	c.pending = append(c.pending, r)
	c.revMu.Unlock()
	select {
	case c.revokeKick <- struct{}{}:
	default:
	}
}

// notifyLoop calls OnRevoke, serially, for queued revocations.
func (c *Cluster) notifyLoop() {
	for {
		select {
		case <-c.stopCh:
			return
		case <-c.revokeKick:
		}
		for {
			c.revMu.Lock()
			batch := c.pending
			c.pending = nil
			c.revMu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, r := range batch {
				if c.cfg.OnRevoke != nil {
					c.cfg.OnRevoke(r)
				}
			}
		}
	}
}
