// Package cluster is Herald's membership layer: one hashicorp/memberlist LAN
// pool per region, node metadata (region, zone, public URL, version,
// alive/draining state, load), and a gossiped table of session-ownership
// records used for takeover on reconnect, cluster-wide presence and admin
// disconnect. It knows nothing of HTTP or of the push server: the server
// calls Claim/Release around each stream and closes the stream when
// Config.OnRevoke tells it to.
//
// # Membership
//
// Failure detection is memberlist's SWIM with Lifeguard, tuned by Tuning
// (preset LANTuning: a crashed node is declared dead in about 2–3 s with
// three nodes). Seeds given as DNS names are re-resolved every
// RejoinInterval and any resolved address that is not a member is joined
// (a Kubernetes headless service). Members seen dead are re-joined every
// ReconnectInterval for ReconnectTimeout, because memberlist never probes a
// dead member again and the two sides of a healed partition would otherwise
// stay apart. Gossip is encrypted with Keys (required unless Dev) and
// scoped by Label ("herald/"+Region by default): a node with another key or
// label cannot join and cannot change the pool's members or records.
// Member states are alive, draining, dead and left; memberlist v0.7.0 gives
// no suspicion event, so "suspect" is never reported, and its NotifyLeave
// does not tell a crash from a departure, so Leave first gossips
// "leaving" in the node metadata.
//
// # Ownership records and their order
//
// A Record says that node N serves session S since T on topics X. Claim
// gives it the incarnation max(previous known incarnation+1, now in unix
// nanoseconds); records of one session are ordered by incarnation, then by
// node name (the greater wins a tie), then a tombstone (Ended) over the live
// record of the same claim. Every node keeps, per session, the highest record
// it has seen, so all nodes converge to the same record.
//
// Clock assumption: a reconnect is ordered after the claim it replaces as
// long as the claiming node's clock is not behind the previous owner's by
// more than the time between the two claims (reconnects take hundreds of
// milliseconds; NTP keeps LAN clocks within a few milliseconds). When the
// new node already knows the previous claim, the +1 rule orders it
// regardless of clocks. A node whose clock runs ahead can win against a
// later claim made elsewhere by a node that had not yet heard of its claim;
// the order is still total, so all nodes agree on the winner and exactly one
// of the two claims is revoked.
//
// Records travel three ways:
//   - broadcasts: every change is queued in memberlist's TransmitLimitedQueue
//     (named by session, so a newer record replaces an older one still
//     queued) and relayed once by each node that finds it new. memberlist
//     delivers a broadcast 1–3 times; duplicates are recognised by
//     (session, incarnation, node, ended) and counted. A broadcast must fit
//     one UDP packet (~1400 bytes minus label and encryption overhead): a
//     record with many topics is broadcast with a prefix of its topics and
//     marked partial; the full record follows by push/pull.
//   - push/pull: memberlist's periodic full-state exchange (PushPullInterval),
//     on every join, and promptly with a member that comes back from dead.
//     A node sends its own records and those of owners it sees alive, so the
//     records of a dead node are not passed around once it is dead.
//   - direct notice: a Claim that takes a session over from another live
//     node also sends the record to that node over TCP (SendReliable),
//     retried every ProbeInterval while the owner is a live member, so
//     revocation does not depend on UDP gossip.
//
// Each node is the authority on its own claims: a live record naming this
// node for a claim it does not serve (e.g. learned after a restart under the
// same name) is replaced by a tombstone and gossiped.
//
// # Guarantees
//
//   - Revocation: when a node learns, by any path above, a record that
//     supersedes a claim it serves, OnRevoke fires once for that claim
//     (ReasonTakeover), including for a newer claim on the same node.
//     Admin Disconnect fires ReasonAdmin on the owner.
//   - Bounds on a session being served by two nodes: with both nodes
//     connected, the direct notice and the broadcast arrive within a TCP round
//     trip or one GossipInterval. If the previous owner was cut off and
//     declared dead, it learns at its first push/pull after it rejoins — the
//     rejoin is itself a push/pull (its own reconnect, a peer's reconnect, or
//     the peer's prompt sync when the member comes back) — so the stale stream
//     is revoked no later than one ProbeInterval after the rejoin (measured
//     ~0.6 s after the heal, before peers even list it alive again). If a cut
//     was too short for anyone to be declared dead and the new owner never
//     knew the old claim, the next periodic push/pull (at most
//     PushPullInterval, 10 s in the preset) settles it.
//   - Presence is eventually consistent: a claim appears elsewhere within a
//     gossip round or two; records of a dead or departed node stay readable
//     for DeadGrace (a reconnect can still read the previous owner and Trace)
//     and then disappear from Presence and Lookup; tombstones likewise.
//   - Malformed, oversized or unknown-version messages are counted and
//     dropped (the decoder is fuzzed); they never panic or change state.
//
// # Concurrency contract
//
// All methods of Cluster are safe for concurrent use. memberlist callbacks
// never block: they copy what they are given and hand it to one event loop
// through a bounded inbox (drops counted in Stats.InboxDrops; membership is
// repaired from memberlist every second, records by push/pull). The event
// loop is the only writer of the member table and applies all received
// records; Claim, Release and Disconnect write records under the same lock.
// OnRevoke is called serially from one goroutine owned by the Cluster, never
// from a memberlist callback; pending revocations are bounded by the number
// of claims this node serves. Metadata changes (SetLoad) are coalesced and
// re-gossiped at most every MetaInterval; SetDraining is gossiped at once.
// Every goroutine is started through one helper, counted, and stopped by
// Close, which waits for them.
//
// # Scope
//
// One LAN pool per region (Cluster); the default Label keeps pools of
// different regions apart. Regions federate over a separate WAN pool
// (Federation: its own key, label "herald-wan" and WANTuning timings) that
// carries only per-node region, client-facing URL, state and replication
// progress ("seen" heartbeats per origin); session records never cross it. The record table is one map under one lock (claims happen at
// connection rate, not event rate); a push/pull state is capped at 16 MiB
// (about 80k records), beyond which the rest waits for broadcasts and later
// exchanges (Stats.StateTruncated).
package cluster
