// Package hub fans announced events out to a node's local subscribers.
//
// The hub is a push.Sink: a store announces appended events to it, and it
// enqueues each on the bounded queue of every local subscriber of the event's
// topic. It is sharded by topic (a fixed array of shards, each with its own
// lock), so publishes on different topics never contend.
//
// Guarantees:
//   - Per stream, events reach each subscriber queue in offset order, without
//     duplicates. The hub tracks the last offset it dispatched per stream; a
//     jump (an announcement was lost) is filled from the store before the
//     later event is dispatched, and Resync (store reconnect, periodic
//     backstop) compares positions with the store and fills what is missing.
//   - Fan-out never blocks: a subscriber whose queue is full (events or bytes)
//     is cut off with ReasonSlow; its connection ends and the client resumes
//     from its cursor. The publisher and the other subscribers never wait.
//   - The SSE body of an event (event and data lines) is encoded once per
//     event and shared by every subscriber.
//
// Concurrency: all methods are safe for concurrent use. Deliver for one stream
// must not be called concurrently with itself (stores announce each stream
// from one goroutine, or under the stream's append lock). The hub owns one
// goroutine (resync), stopped by Close.
package hub
