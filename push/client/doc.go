// Package client is the Go SDK for Herald: a resuming subscriber (Stream) and
// a retrying publisher (Publisher) for Herald's HTTP API.
//
// Stream guarantees:
//   - Events reach the handler in the order the server sent them, each one
//     only after its terminating blank line arrived: an event cut off by a
//     dropped connection is never delivered, and resuming replays it.
//   - An event counts as consumed only when the handler returns nil for it;
//     only then does LastEventID move past it. Delivery is at-least-once: a
//     reconnect may replay events the server sent after the last id the
//     client saw, and handlers should be idempotent.
//   - Reconnects resume from the last event ID (header Last-Event-ID) across
//     all configured endpoints, with full-jitter exponential backoff that
//     uses the server's "retry:" as its base and honours Retry-After.
//   - Herald's control events (herald.hello, herald.reset) are delivered like
//     any other event; ParseHello and ParseReset decode them. A herald.reset
//     is the server saying that events were lost; the stream continues.
//
// Publisher guarantees: every retry of one Publish (or PublishBatch) call
// carries the same idempotency key, so a publish that the server applied but
// whose response was lost is not applied twice, as long as the retry falls
// within the server's idempotency window.
//
// Errors: server rejections are *APIError values (status, stable code,
// message). 4xx statuses other than 408 and 429 are permanent: the Stream
// stops and the Publisher does not retry.
//
// Concurrency: a Stream runs in the goroutine that calls Run; at most one Run
// may be active per Stream, LastEventID may be called from any goroutine.
// The handler and the OnConnect/OnDisconnect callbacks run synchronously on
// Run's goroutine and delay reading while they run. A Publisher is safe for
// concurrent use. Neither starts goroutines that outlive the call that
// started them, beyond the idle connections of the HTTP client; a Stream that
// owns its HTTP client closes them when Run returns.
package client
