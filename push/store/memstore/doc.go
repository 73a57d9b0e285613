// Package memstore is Herald's embedded push.Store: history kept in process
// memory, for a first try, single-node development and tests. It is NOT
// durable: every event is lost when the process exits, and Durable reports
// false so the server can say so loudly.
//
// Guarantees (the push.Store contract, checked by push/store/storetest):
//   - Offsets are contiguous from 1 per topic; the drafts of one Append are
//     appended atomically and in order.
//   - Each topic gets a random epoch (16 hex characters from crypto/rand) the
//     first time it is written in this process. Nothing is ever lost while
//     the process lives, so the epoch never changes; a new process starts new
//     epochs, so (epoch, offset) is never reused for a different event.
//   - Retention: a topic keeps at most min(Retention.MaxLen, Config.MaxEvents)
//     events (exactly) and drops events older than Retention.MaxAge, on
//     append and on read. Config.MaxEvents is a hard cap that applies even
//     when the policy sets no length bound. Config.MaxBytes bounds the whole
//     store: past it, Append fails with push.ErrUnavailable (nothing is
//     evicted, so nothing acknowledged is lost while the process lives).
//   - Idempotency keys are remembered per topic for IdempotencyWindow, at
//     most MaxIdempotencyKeys per topic (the oldest are forgotten first).
//   - Listeners: Deliver is called synchronously by the appending goroutine,
//     under the topic's lock, in offset order, before Append returns. Sinks
//     must therefore not block (the push.Sink contract) and must not call
//     back into the store. Resync is never needed: nothing can be lost
//     between append and announcement.
//
// Concurrency: all methods are safe for concurrent use. Topics live in a
// fixed array of shards, each with its own lock; each topic has its own lock,
// so appends to different topics do not contend. Lock order: shard, then
// topic, then the watch shard.
//
// Events returned by Read and announced to sinks share their Data with the
// store: callers must treat them as read-only.
package memstore
