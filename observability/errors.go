package observability

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these, so
// callers can test them with errors.Is.
var (
	// ErrInvalidConfig reports a Config (or an OTEL_* variable it defers to)
	// that Setup cannot use; the message names the value.
	ErrInvalidConfig = errors.New("observability: invalid config")
)
