// Package ingest turns newline-delimited JSON (NDJSON) bodies from log
// shippers into event drafts: one event per line, the topic either fixed by
// the caller or rendered per line from a template over the line's fields
// ("logs.{app}.{level}"), and an optional deduplication key per line (a
// configured field's value or a hash of the line) so that a shipper that
// retries a whole batch does not publish its lines twice within the
// store's idempotency window.
//
// Guarantees. Reader never buffers more than one line (at most
// MaxLineBytes) whatever the body; a line that is too long, not JSON, or
// whose topic cannot be rendered is reported as that line's error and
// reading goes on with the next line. Every accepted line is exactly one
// JSON value in valid UTF-8 without duplicate object member names (the
// strict reading: two parsers never disagree on which fields a line has).
//
// Concurrency. Template and Profile are immutable once built and safe for
// concurrent use; a Reader and a Parser belong to one request.
package ingest
