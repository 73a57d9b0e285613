// Package server is Herald's public HTTP API on gin: publish, history, health
// and the SSE stream endpoint.
//
// Stream guarantees (GET /v1/stream): per stream (topic, origin), events are
// written in offset order with no gap and no duplicate — on one connection and
// across reconnects that present the last received `id:` as Last-Event-ID —
// for as long as retention covers the cursor. Where that cannot hold (cursor
// older than retention, epoch changed, cursor ahead of the stream), the client
// receives one `herald.reset` event naming every affected stream and the
// offsets lost, then continues live. Every connection starts with
// `retry:` and a `herald.hello` event, so a client that drops before its first
// data event still resumes from where it connected.
//
// The seam between replay and live: the handler replays history from the
// client's position, then registers with the hub, then reads the store once
// more from its position (closing the window between replay and
// registration), then serves queued live events, dropping offsets it already
// wrote and filling any offset jump from the store.
//
// Concurrency: one goroutine per stream (the handler's); it alone owns the
// connection's cursor and writer. Heartbeats come from one shared ticker.
package server
