// Package server is the HTTP edge of a Herald node, on gin: routes, thin
// handlers for publish, NDJSON ingest for log shippers (package
// push/ingest parses it), history, topic info and the SSE stream, the
// cluster and region admin API, the SSE transport (framing, per-write
// deadlines, browser-safe refusals) and the one table that maps errors to
// HTTP answers.
//
// Streams themselves live in package push/stream (resume plan, replay,
// live loop, coalescing) and package push/node (admission, the stream
// table, drain, rebalance, evacuation); a transport here implements
// node.Transport and hands a parsed, authorised node.Request to
// node.Node.Open.
//
// A browser EventSource gives up for good on any non-200 answer, so every
// refusal of a new stream (admission, protection layers, a replica
// re-syncing) is a 200 with a jittered `retry:` (and, for a fresh stream,
// its position as `id:`); clients that send the Herald-Client header get
// 503 + Retry-After with the same information in a JSON body.
package server
