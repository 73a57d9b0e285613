// Package push is Herald's event domain: the event model, topic and event-type
// grammar, the Store contract that history backends implement, retention
// policy, and the compact multi-stream resume cursor carried in the SSE `id:`.
//
// Streams. Every event belongs to one stream, identified by (topic, origin):
// the topic it was published to and the region whose store persisted it.
// Within a stream every event has a contiguous offset (1, 2, 3, …) and the
// stream has an epoch: an opaque string that changes whenever the backend may
// have lost acknowledged data. The pair (epoch, offset) is never reused for a
// different event, so a reader that compares its last (epoch, offset) with the
// stream's can always tell "exact resume", "trimmed" and "history lost" apart.
//
// Order. Events are ordered per stream only. Two topics, or one topic's events
// from two origins, have no defined relative order.
//
// Concurrency. Values in this package are immutable after construction unless
// a type documents otherwise; Cursor is owned by one connection goroutine.
package push
