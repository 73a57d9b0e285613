// Package redisstore is Herald's durable push.Store on Redis Streams, for a
// single node, a Sentinel-managed primary or a Redis Cluster (any go-redis
// UniversalClient; Redis 7.0 or later).
//
// Layout and epoch rule: see scripts.go. In short, one stream, one meta hash
// and expiring idempotency keys per (topic, origin), all in one cluster
// slot; one Lua script per Append; one read-only Lua script per Read and per
// topic of Info; notifications over Pub/Sub carrying the whole event.
// Concurrent Appends share round trips (group commit, ADR 0032): one that
// finds none in flight is sent at once; those arriving meanwhile go out
// together as the next pipeline, each its own script with its own result.
//
// Guarantees (the push.Store contract, checked by push/store/storetest, plus
// Redis-specific tests):
//   - Offsets are contiguous per topic from 1 (after a meta loss they
//     continue above the stream's last id, under a new epoch). The drafts of
//     one Append are one script: appended together, in order.
//   - (epoch, offset) is never reused for a different event. The epoch is
//     tied to the primary's run_id, which changes on every restart and with
//     every failover (a promoted replica is another process), that is
//     whenever Redis may have lost acknowledged writes (RDB rollback, AOF
//     tail loss, promotion of a lagging replica). This is conservative: a
//     clean restart that lost nothing also changes the epoch, so readers get
//     an explicit reset instead of ever risking a silent gap. The
//     replication id is not used: a primary changes it when its first
//     replica attaches, which would reset every reader for nothing. Reads on
//     a replica report the replicated epoch unchanged.
//   - An acknowledged Append is in Redis (with Redis's own durability: AOF
//     fsync policy and asynchronous replication decide what survives a
//     crash; what does not survive shows as an epoch change).
//   - Idempotency: a key seen within IdempotencyWindow returns the original
//     (epoch, offset, time) with Duplicate set and writes nothing. The epoch
//     returned is the one the event was written under.
//   - Retention: MaxLen is exact below ExactTrimBelow and approximate (whole
//     stream nodes) from it on. MaxAge: reads hide expired entries at once;
//     appends trim them physically (binary search over offsets, then XTRIM
//     MINID), at most every max(MaxAge/100, 10ms). Idle streams expire after
//     IdleTTL.
//   - Errors from Redis (connection, timeout, LOADING, READONLY, script)
//     wrap push.ErrUnavailable, and also the cause, so errors.Is works for
//     both push.ErrUnavailable and context.DeadlineExceeded.
//   - Listener: every appended event is published by the append script
//     itself, in offset order per stream. A Listener owns one Pub/Sub
//     connection and one receive goroutine. Watch returns after Redis
//     confirmed the subscription. After any connection loss, Resync is
//     called once the subscriptions are confirmed again on the new
//     connection (so nothing published after the Resync can be missed), and
//     also every ResyncInterval as a backstop. A connection that stops
//     answering pings is replaced.
//
// Concurrency: all methods are safe for concurrent use. A writable store
// owns one goroutine, the append committer, stopped by Close. An Append
// whose context ends while it is queued is never sent; one whose context
// ends after it was sent returns at once and its outcome is unknown (retry
// with the same idempotency key). Sinks are called
// from the listener's goroutine only, one call at a time, and must not
// block. Close stops every listener and waits for its goroutine.
package redisstore
