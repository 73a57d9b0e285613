// Package node is a Herald node's side of its streams: the table of live
// streams by session, admission of new ones (connection target, redirects
// to less loaded peers, the protection layers' refusals), the connect
// phase that opens a stream through a transport, and what ends streams
// from outside: takeover, admin disconnect, drain, rebalance after a join,
// and region evacuation. It also runs the region loop (heartbeats,
// replication lag, evacuation orders).
//
// It consumes the cluster and the federation through the small Cluster and
// Federation interfaces declared here (package cluster implements them
// through adapters in cmd/herald), and the protection layers through
// Guard. Transports (package push/server: SSE, WebSocket) implement
// Transport; the stream itself is package push/stream.
//
// Concurrency: a Node is safe for concurrent use. It owns three
// goroutines (heartbeat, cluster loop, region loop) and the goroutines of
// a rebalance or an evacuation in progress; Close stops them all.
package node
