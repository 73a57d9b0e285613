package push

import (
	"context"
	"time"
)

// Store persists events per stream and serves history. Implementations:
// push/store/redisstore (durable, Redis Streams) and push/store/memstore
// (embedded, not durable). All methods are safe for concurrent use.
//
// Contract every implementation keeps (tested by push/store/storetest):
//   - Append assigns contiguous offsets in call order per topic; the drafts of
//     one call are appended atomically and in order.
//   - An idempotency key seen within the window returns the original result
//     and appends nothing.
//   - (Epoch, Offset) is never reused for a different event: if the backend may
//     have lost acknowledged events, the epoch changes.
//   - A durable store records each stream's lineage (StreamInfo.Lineage):
//     the epochs the current one descends from, each with the head the
//     child found when it began, so that readers of an ancestor continue
//     through shared history and are told exactly which offsets no longer
//     exist (push.Resume, ADR 0024; storetest.RunLineage). An epoch is
//     reported only once something was written in it.
//   - Every appended event is announced to Listeners watching its topic, in
//     offset order per stream; announcements may be lost (Sink.Resync is then
//     called when the loss is known), never reordered.
type Store interface {
	// Origin is the region whose events this store holds.
	Origin() string
	// Append persists drafts to topic. On error nothing was acknowledged,
	// though some drafts may have been written (retry with idempotency keys).
	Append(ctx context.Context, topic string, drafts []Draft) ([]AppendResult, error)
	// Info describes the named topics' streams, in the same order.
	Info(ctx context.Context, topics []string) ([]StreamInfo, error)
	// Read returns up to limit events of topic with offset > after, ascending,
	// plus the stream's info taken atomically with them.
	Read(ctx context.Context, topic string, after uint64, limit int) ([]Event, StreamInfo, error)
	// Listen starts announcing appended events of watched topics to sink.
	Listen(sink Sink) (Listener, error)
	// Ping checks that the backend is reachable.
	Ping(ctx context.Context) error
	// Durable reports whether acknowledged events survive a process restart.
	Durable() bool
	Close() error
}

// Sink receives announcements. Its methods must not block: they are called
// from the store's notification goroutine.
type Sink interface {
	// Deliver announces an appended event. The sink may retain ev.
	Deliver(ev *Event)
	// Resync tells the sink announcements may have been lost (for example the
	// notification connection was re-established); the sink should compare its
	// positions with Info and fill gaps from Read.
	Resync()
}

// Listener controls which topics are announced to one Sink.
type Listener interface {
	// Watch starts announcements for topic. When it returns nil, every event
	// appended afterwards will be announced (or a Resync will follow).
	Watch(ctx context.Context, topic string) error
	// Unwatch stops announcements for topic.
	Unwatch(topic string)
	// Close stops all announcements and releases resources.
	Close() error
}

// SyncedListener is implemented by listeners whose announcements travel
// over a connection that can break (push/store/redisstore). A sink may
// answer from what the announcements told it, instead of asking the store,
// only while the listener is synced.
type SyncedListener interface {
	// Synced reports that the listener's connection has been up and heard
	// from within its health interval, and no announcement has been missed
	// since the last Resync it asked for (a broken connection makes it
	// false until the subscriptions are back and Resync was called). A
	// store that lost data or failed over is a new server: the connection
	// to the old one broke, so a synced listener's announcements are of
	// the store's current lineage.
	Synced() bool
}

// RegionSignals is implemented by stores that also carry their region's
// heartbeat and evacuation order next to its events (push/store/redisstore,
// push/store/memstore). On a replica of a remote region's store the reads
// see what that region wrote, as replicated so far.
type RegionSignals interface {
	// Beat records a heartbeat of the store's origin at t and returns it,
	// with a sequence number that grows with every beat. It fails on a
	// read-only store.
	Beat(ctx context.Context, t time.Time) (Heartbeat, error)
	// LastBeat returns the newest heartbeat this store holds (zero when
	// none was ever written).
	LastBeat(ctx context.Context) (Heartbeat, error)
	// Evacuation returns the region's evacuation order in force (zero
	// value: none was ever given).
	Evacuation(ctx context.Context) (Evacuation, error)
	// SetEvacuation records o unless an order with an equal or higher ID is
	// in force, and returns the order in force afterwards.
	SetEvacuation(ctx context.Context, o Evacuation) (Evacuation, error)
}

// ReplicaLinker is implemented by stores that can read from a replica of a
// remote region's primary: LinkUp reports whether the replication link to
// that primary is up now.
type ReplicaLinker interface {
	LinkUp(ctx context.Context) (bool, error)
}

// Heartbeat is one beat of an origin region. Seq orders beats: a reader
// that sees Seq >= n has received everything the origin acknowledged before
// beat n was written (one replication stream carries both).
type Heartbeat struct {
	Time time.Time `json:"time"`
	Seq  int64     `json:"seq"`
}

// Evacuation is a region-wide order: while Active, the region's nodes take
// no new streams or publishes and move their clients to other regions. The
// order with the highest ID wins (IDs are issue times in Unix nanoseconds).
type Evacuation struct {
	ID     int64  `json:"id"`
	Active bool   `json:"active"`
	By     string `json:"by,omitempty"`
}
