package redisstore

import "errors"

// Sentinel errors of this package. Redis failures are not here: they wrap
// push.ErrUnavailable (and their cause), and use after Close returns
// push.ErrClosed.
var (
	// ErrBadURL is wrapped by every ParseURL error.
	ErrBadURL = errors.New("redisstore: bad redis URL")
)
