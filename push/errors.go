package push

import "errors"

// Sentinel errors of the push domain. Wrap with %w; callers test with errors.Is.
// The HTTP layer maps each to a status and a stable JSON error code.
var (
	// ErrInvalidTopic: a topic name outside the grammar (see ValidateTopic).
	ErrInvalidTopic = errors.New("invalid topic")
	// ErrInvalidEvent: an event type outside the grammar, or data that is not
	// UTF-8, contains NUL, or exceeds the size cap.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrMalformedCursor: a Last-Event-ID that does not decode as a Herald cursor.
	ErrMalformedCursor = errors.New("malformed cursor")
	// ErrForeignCursor: a well-formed cursor minted for a different topic set.
	ErrForeignCursor = errors.New("cursor belongs to a different topic set")
	// ErrUnavailable: the store cannot be reached or did not confirm. The
	// write may or may not have happened (a reply can be lost after Redis
	// applied it): retry with the same idempotency key.
	ErrUnavailable = errors.New("store unavailable")
	// ErrClosed: the component was shut down.
	ErrClosed = errors.New("closed")
	// ErrReadOnly: an append to a read-only store (a replica of another
	// region's events).
	ErrReadOnly = errors.New("store is read-only")
)
