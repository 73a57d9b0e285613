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
	_ memberlist.Delegate      = delegate{}
	_ memberlist.EventDelegate = events{}
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

// GetBroadcasts returns nothing: ownership records are not gossiped to
// every node (ADR 0026); they travel by direct messages (forward.go).
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState is, for a join, a digest of the records this node holds, not
// the records themselves (digest.go, ADR 0030); for a periodic exchange a
// constant-size summary (summary.go, ADR 0035), unless a live member does
// not advertise summaries.
func (d delegate) LocalState(join bool) []byte {
	if !join && d.c.speaksSummaries() {
		return d.c.localSummary()
	}
	return d.c.localDigest()
}

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
