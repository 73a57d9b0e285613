package cluster

import (
	"bytes"

	"github.com/hashicorp/memberlist"
)

// delegate implements memberlist.Delegate. Every method returns promptly:
// incoming data is copied and handed to the event loop through the bounded
// inbox (drops counted); outgoing data is read under short locks.
type delegate struct{ c *Cluster }

var (
	_ memberlist.Delegate       = delegate{}
	_ memberlist.EventDelegate  = events{}
	_ memberlist.Broadcast      = (*recordBroadcast)(nil)
	_ memberlist.NamedBroadcast = (*recordBroadcast)(nil)
)

func (d delegate) NodeMeta(limit int) []byte {
	d.c.metaMu.Lock()
	b := d.c.meta.encode()
	d.c.metaMu.Unlock()
	if len(b) > limit { // cannot happen: checked against MetaMaxSize in New
		return nil
	}
	return b
}

func (d delegate) NotifyMsg(b []byte) {
	if len(b) > maxSmallMsg {
		d.c.st.invalid.Add(1)
		return
	}
	d.c.enqueue(inboxItem{kind: itemMsg, data: bytes.Clone(b)})
}

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	msgs := d.c.queue.GetBroadcasts(overhead, limit)
	d.c.st.sent.Add(uint64(len(msgs)))
	return msgs
}

func (d delegate) LocalState(join bool) []byte { return d.c.localState() }

func (d delegate) MergeRemoteState(buf []byte, join bool) {
	c := d.c
	if len(buf) > maxStateMsg {
		c.st.invalid.Add(1)
		return
	}
	if c.queuedStates.Add(1) > maxQueuedStates {
		c.queuedStates.Add(-1)
		c.st.inboxDrops.Add(1)
		return
	}
	if !c.enqueue(inboxItem{kind: itemState, data: bytes.Clone(buf)}) {
		c.queuedStates.Add(-1)
	}
}

// events implements memberlist.EventDelegate.
type events struct{ c *Cluster }

func (e events) NotifyJoin(n *memberlist.Node) {
	e.c.enqueue(inboxItem{kind: itemJoin, node: nodeInfoOf(n)})
}

// NotifyLeave must not read n.State: memberlist v0.7.0 passes the embedded
// Node whose State is never updated. The event itself means dead or left.
func (e events) NotifyLeave(n *memberlist.Node) {
	e.c.enqueue(inboxItem{kind: itemLeave, node: nodeInfo{name: n.Name}})
}

func (e events) NotifyUpdate(n *memberlist.Node) {
	e.c.enqueue(inboxItem{kind: itemUpdate, node: nodeInfoOf(n)})
}

// recordBroadcast is one ownership record in memberlist's transmit-limited
// queue. Its name is the session id, so queuing a newer record for a session
// replaces the older one still queued (records are queued in increasing
// order per session, under recMu).
type recordBroadcast struct {
	name string
	msg  []byte
}

func (b *recordBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*recordBroadcast)
	return ok && ob.name == b.name
}
func (b *recordBroadcast) Name() string    { return b.name }
func (b *recordBroadcast) Message() []byte { return b.msg }
func (b *recordBroadcast) Finished()       {}

// broadcastLocked queues r for gossip and enforces MaxQueuedBroadcasts.
// Caller holds recMu, which keeps per-session queue order monotonic.
func (c *Cluster) broadcastLocked(r Record, partial bool) {
	msg, trimmed := encodeRecordMsg(c.cfg.NodeName, r, partial, c.bcastLimit)
	if trimmed {
		c.st.trimmed.Add(1)
	}
	if msg == nil {
		c.st.queueDrops.Add(1) // cannot fit a packet; push/pull carries it
		return
	}
	c.queue.QueueBroadcast(&recordBroadcast{name: r.Session, msg: msg})
	c.st.queued.Add(1)
	if limit := c.cfg.Tuning.MaxQueuedBroadcasts; c.queue.NumQueued() > limit {
		n := c.queue.NumQueued()
		c.queue.Prune(limit)
		if n > limit {
			c.st.queueDrops.Add(uint64(n - limit))
		}
	}
}
