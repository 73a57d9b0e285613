package main

import (
	"context"
	"errors"

	"github.com/heraldpush/herald/cluster"
	"github.com/heraldpush/herald/push/server"
)

// clusterView adapts *cluster.Cluster to the server.Cluster interface the
// push server consumes (push knows nothing of package cluster).
type clusterView struct{ c *cluster.Cluster }

var _ server.Cluster = clusterView{}

func toSessionRecord(r cluster.Record) server.SessionRecord {
	return server.SessionRecord{
		Session: r.Session, Node: r.Node, Region: r.Region, Incarnation: r.Incarnation,
		Topics: r.Topics, Since: r.Since, Trace: r.Trace, Ended: r.Ended,
	}
}

func toMember(m cluster.Member) server.Member {
	return server.Member{
		Name: m.Name, Region: m.Region, Zone: m.Zone, URL: m.URL, Version: m.Version,
		State: m.State, Streams: m.Streams, Target: m.Target, Health: m.Health,
	}
}

func (v clusterView) Claim(session string, topics []string, trace string) server.SessionRecord {
	return toSessionRecord(v.c.Claim(session, topics, trace))
}

func (v clusterView) Release(session string, incarnation uint64) { v.c.Release(session, incarnation) }

func (v clusterView) Lookup(session string) (server.SessionRecord, bool) {
	r, ok := v.c.Lookup(session)
	return toSessionRecord(r), ok
}

func (v clusterView) Find(ctx context.Context, session string) (server.SessionRecord, bool) {
	r, ok, _ := v.c.Find(ctx, session)
	return toSessionRecord(r), ok
}

func (v clusterView) Disconnect(ctx context.Context, session string) (server.SessionRecord, error) {
	r, err := v.c.Disconnect(ctx, session)
	switch {
	case errors.Is(err, cluster.ErrUnknownSession):
		return server.SessionRecord{}, server.ErrUnknownSession
	case err != nil:
		return server.SessionRecord{}, errors.Join(server.ErrOwnerUnreachable, err)
	}
	return toSessionRecord(r), nil
}

func (v clusterView) Presence(ctx context.Context, topic string) []server.SessionRecord {
	recs := v.c.PresenceAll(ctx, topic)
	out := make([]server.SessionRecord, len(recs))
	for i, r := range recs {
		out[i] = toSessionRecord(r)
	}
	return out
}

func (v clusterView) Members() []server.Member {
	ms := v.c.Members()
	out := make([]server.Member, len(ms))
	for i, m := range ms {
		out[i] = toMember(m)
	}
	return out
}

func (v clusterView) Local() server.Member { return toMember(v.c.Local()) }

func (v clusterView) SetLoad(streams, target int) { v.c.SetLoad(streams, target) }

// fedView adapts *cluster.Federation to server.Federation.
type fedView struct{ f *cluster.Federation }

var _ server.Federation = fedView{}

func (v fedView) Alternates() []string { return v.f.Alternates() }

func (v fedView) Regions() []server.RegionStatus {
	rs := v.f.Regions()
	out := make([]server.RegionStatus, len(rs))
	for i, r := range rs {
		out[i] = server.RegionStatus{Name: r.Name, State: r.State, URLs: r.URLs, Serving: r.Serving, Seen: r.Seen}
	}
	return out
}

func (v fedView) SetState(state string)         { v.f.SetState(state) }
func (v fedView) SetSeen(seen map[string]int64) { v.f.SetSeen(seen) }
