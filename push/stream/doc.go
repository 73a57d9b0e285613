// Package stream is one subscriber's stream, apart from the transport that
// carries it: the resume plan, the replay, the seam to the live queue, the
// live loop and its write coalescing. A transport (SSE, WebSocket) supplies
// a Writer that frames what the stream writes; the node (package
// push/node) admits streams, tracks them and ends them from outside.
//
// Guarantees: per stream (topic, origin), events are written in offset
// order with no gap and no duplicate — on one connection and across
// reconnects that present the last received id as their cursor — for as
// long as retention covers the cursor. Where that cannot hold (cursor older
// than retention, events the client read no longer exist after a Redis
// rollback or failover, cursor ahead of the stream), the client receives
// one herald.reset naming every affected stream and the offsets lost, then
// continues. A new epoch that forked at or after the client's position
// (a Redis restart or failover that lost nothing it read) is followed with
// no reset (push.Resume, ADR 0024); an event of a lineage the stream has
// left is dropped, never a reason to reset. Every stream starts with a herald.hello, so a
// client that drops before its first data event still resumes from where
// it connected. An id is the same cursor on every transport.
//
// The seam between replay and live: the stream replays history from the
// client's position, then registers with the hub, then reads the store once
// more from its position (closing the window between replay and
// registration), then serves queued live events, dropping offsets it
// already wrote and filling any offset jump from the store.
//
// Plan is pure: from a cursor and the stores' descriptions of the streams
// it decides, per stream, what to replay, what to reset and where to start.
//
// Concurrency: a Stream is owned by one goroutine (its handler's); it alone
// touches the cursor and the Writer. Other goroutines reach it only through
// its Handle (kick, wake).
package stream
