package main

import (
	"context"
	"errors"

	"github.com/heraldpush/herald/cluster"
	"github.com/heraldpush/herald/push/node"
)

// clusterView adapts *cluster.Cluster to the node.Cluster interface the
// push server consumes (push knows nothing of package cluster).
type clusterView struct{ c *cluster.Cluster }

var _ node.Cluster = clusterView{}

func toSessionRecord(r cluster.Record) node.SessionRecord {
	return node.SessionRecord{
		Session: r.Session, Node: r.Node, Region: r.Region, Incarnation: r.Incarnation,
		Topics: r.Topics, Since: r.Since, Trace: r.Trace, Ended: r.Ended,
	}
}

func toMember(m cluster.Member) node.Member {
	return node.Member{
		Name: m.Name, Region: m.Region, Zone: m.Zone, URL: m.URL, Version: m.Version,
		State: m.State, Streams: m.Streams, Target: m.Target, Health: m.Health,
	}
}

func (v clusterView) Claim(session string, topics []string, trace string) node.SessionRecord {
	return toSessionRecord(v.c.Claim(session, topics, trace))
}

func (v clusterView) Release(session string, incarnation uint64) { v.c.Release(session, incarnation) }

func (v clusterView) Lookup(session string) (node.SessionRecord, bool) {
	r, ok := v.c.Lookup(session)
	return toSessionRecord(r), ok
}

func (v clusterView) Find(ctx context.Context, session string) (node.SessionRecord, bool) {
	r, ok, _ := v.c.Find(ctx, session)
	return toSessionRecord(r), ok
}

func (v clusterView) Disconnect(ctx context.Context, session string) (node.SessionRecord, error) {
	r, err := v.c.Disconnect(ctx, session)
	switch {
	case errors.Is(err, cluster.ErrUnknownSession):
		return node.SessionRecord{}, node.ErrUnknownSession
	case err != nil:
		return node.SessionRecord{}, errors.Join(node.ErrOwnerUnreachable, err)
	}
	return toSessionRecord(r), nil
}

func (v clusterView) Presence(ctx context.Context, topic string) []node.SessionRecord {
	recs := v.c.PresenceAll(ctx, topic)
	out := make([]node.SessionRecord, len(recs))
	for i, r := range recs {
		out[i] = toSessionRecord(r)
	}
	return out
}

func (v clusterView) Members() []node.Member {
	ms := v.c.Members()
	out := make([]node.Member, len(ms))
	for i, m := range ms {
		out[i] = toMember(m)
	}
	return out
}

func (v clusterView) Local() node.Member { return toMember(v.c.Local()) }

func (v clusterView) SetLoad(streams, target int) { v.c.SetLoad(streams, target) }

// fedView adapts *cluster.Federation to node.Federation.
type fedView struct{ f *cluster.Federation }

var _ node.Federation = fedView{}

func (v fedView) Alternates() []string { return v.f.Alternates() }

func (v fedView) Regions() []node.RegionStatus {
	rs := v.f.Regions()
	out := make([]node.RegionStatus, len(rs))
	for i, r := range rs {
		out[i] = node.RegionStatus{Name: r.Name, State: r.State, URLs: r.URLs, Serving: r.Serving, Seen: r.Seen}
	}
	return out
}

func (v fedView) SetState(state string)         { v.f.SetState(state) }
func (v fedView) SetSeen(seen map[string]int64) { v.f.SetSeen(seen) }
