package node

import (
	"context"
	"errors"
	"time"
)

// Cluster is the membership and session-ownership view the node consumes.
// package cluster implements it (through an adapter in cmd/herald); a nil
// Cluster means a single node, where sessions are still tracked locally so
// a reconnect to the same node takes its old stream over.
type Cluster interface {
	// Claim records that this node now serves session and returns the new
	// record; an older claim anywhere in the cluster is revoked (the owner
	// is told through Node.Revoke).
	Claim(session string, topics []string, trace string) SessionRecord
	// Release records that the stream of (session, incarnation) ended.
	Release(session string, incarnation uint64)
	// Lookup returns the latest record of session this node holds, without
	// asking peers (it may not hold it: ADR 0026).
	Lookup(session string) (SessionRecord, bool)
	// Find returns the latest record of session in the cluster, asking the
	// nodes that hold it.
	Find(ctx context.Context, session string) (SessionRecord, bool)
	// Disconnect asks the owner of session, on any node, to close it.
	Disconnect(ctx context.Context, session string) (SessionRecord, error)
	// Presence lists the live sessions subscribed to topic, as their
	// owners report them (ADR 0026).
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

// Guard is the protection layers a stream passes at connect (package
// resilience implements them through an adapter in cmd/herald); nil means
// no guard. Errors it returns are refusals: they may carry a retry hint
// through a RetryAfterSeconds() int method (RetryAfter).
type Guard interface {
	// Admit admits a new stream from a client IP (layer 2); live marks the
	// end of its handshake and replay, done the end of the stream.
	Admit(clientIP string) (live, done func(), err error)
	// Replay waits, bounded, for one of the node's replay slots (layer 3).
	Replay(ctx context.Context) (release func(), err error)
}

// RetryAfter returns a refusal's retry hint in seconds (at least 1).
func RetryAfter(err error) int {
	var ra interface{ RetryAfterSeconds() int }
	if errors.As(err, &ra) {
		return max(1, ra.RetryAfterSeconds())
	}
	return 1
}
