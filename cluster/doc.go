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
// Records are not replicated to every node (ADR 0026): a session's record
// is held by its owner and by its home nodes, the Config.HomeReplicas live
// members other than the owner with the highest rendezvous score for the
// session (placement.go, ADR 0037); a takeover moves the homes with the
// owner.
// Records travel four ways:
//   - forwards: every claim and release is queued for the session's homes
//     and sent in per-destination batches over TCP (SendReliable) by the
//     forward loop, retried while the destination is live (forward.go).
//   - notices: a node that stores a claim superseding a live claim of a
//     third node sends that node the new record; a node that receives a
//     claim older than the record it holds sends the newer one to the
//     stale claim's owner. Both go through the same batches.
//   - push/pull: memberlist's periodic state exchange (PushPullInterval),
//     on every join, and promptly with a member that comes back from dead,
//     carries a digest (19 bytes a record: session hash, incarnation, owner,
//     tombstone) of a node's own records and the records it is home of, of
//     owners it sees alive; each side forwards the full records where it
//     holds a newer one, where its own claim is older, or where the peer is
//     a home missing its record (digest.go, ADR 0030). Periodic exchanges
//     carry instead a constant-size summary (per peer, 128 bucket sums over
//     the records both should hold); only the buckets that differ have
//     their digests asked for by reliable message and merged the same way
//     (summary.go, ADR 0035). Joins, and every exchange while a live member
//     does not advertise summaries, still carry the full digest.
//   - rehoming: when the live ring changes, each owner sends its records to
//     the homes they gained; a node drops records it is no longer home of.
//     A takeover moves a session's homes with its owner: the old owner
//     sends the new record to its former homes, which drop theirs.
//
// Reads: Lookup answers from this node's records; Find asks the top
// HomeReplicas+1 members (the homes whoever owns the session) and
// the owner they name; PresenceAll asks every member for the sessions it
// serves (queries and answers over TCP, bounded in flight).
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
//     connected, the claim reaches the home and the home's notice the owner
//     within two TCP round trips plus the forward loop's 5 ms batching. If the previous owner was cut off and
//     declared dead, it learns at its first push/pull after it rejoins — the
//     rejoin is itself a push/pull (its own reconnect, a peer's reconnect, or
//     the peer's prompt sync when the member comes back) — so the stale stream
//     is revoked no later than one ProbeInterval after the rejoin (measured
//     ~0.6 s after the heal, before peers even list it alive again). If a cut
//     was too short for anyone to be declared dead and the new owner never
//     knew the old claim, the next periodic push/pull (at most
//     PushPullInterval, 10 s in the preset, plus a bucket request's round
//     trip) settles it.
//   - PresenceAll is what the owners serve when asked; Find sees a claim as
//     soon as its home has it. Records of a dead or departed node stay on
//     their homes for DeadGrace and then disappear; tombstones likewise.
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
// connection rate, not event rate), each record stored compact (entry.go);
// a push/pull digest is capped at 16 MiB (about 880k records: a node's own
// and homed records), beyond which the rest waits for forwards and later
// exchanges (Stats.StateTruncated).
package cluster
