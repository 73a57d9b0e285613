// Package hub fans announced events out to a node's local subscribers.
//
// The hub is a push.Sink: a store announces appended events to it, and it
// enqueues each on the bounded queue of every local subscriber of the event's
// topic. It is sharded by topic (a fixed array of shards, each with its own
// lock), so publishes on different topics never contend.
//
// Guarantees:
//   - Per stream, events reach each subscriber queue in offset order, without
//     duplicates. The hub tracks the last offset it dispatched per stream. A
//     jump (an announcement was lost) is dispatched as is and a resync is
//     scheduled: Deliver runs on the store's announcing goroutine and must
//     never call back into the store, so each subscriber fills the jump from
//     its own position. Resync (store reconnect, periodic backstop, jumps)
//     runs on the hub's goroutine, compares positions with the store and
//     dispatches what the hub missed.
//   - Fan-out never blocks: a subscriber whose queue is full (events or bytes)
//     is cut off with ReasonSlow; its connection ends and the client resumes
//     from its cursor. The publisher and the other subscribers never wait.
//     So is one whose connection's writes (bracketed by Writing and Wrote)
//     have stalled for longer than MaxLag while events waited; time its
//     goroutine waits for a CPU does not count (ADR 0034).
//   - The SSE body of an event (event and data lines) is encoded once per
//     event and shared by every subscriber.
//   - A subscriber is woken at most once per take of its queue. A dispatch
//     that must wake more than PacedFanOut subscribers hands them to the
//     hub's waker, which wakes them in waves and yields between waves, so
//     goroutines the network readies meanwhile (the next announcement, a
//     publish) are not queued behind the whole fan-out (docs/adr/0010).
//   - Heads answers a watched topic's positions only while they are as good
//     as the stores' for a stream that starts at the head: every listener
//     is synced (push.SyncedListener) and no resync is pending; otherwise
//     it declines and the caller asks the stores (docs/adr/0029).
//
// Concurrency: all methods are safe for concurrent use. Deliver for one stream
// must not be called concurrently with itself (stores announce each stream
// from one goroutine, or under the stream's append lock). The hub owns two
// goroutines (resync and the waker), stopped by Close.
package hub
