package cluster

import "errors"

// Errors returned by this package. Wrapped with %w; test with errors.Is.
var (
	// ErrConfig reports an invalid Config; the message names the field.
	ErrConfig = errors.New("cluster: invalid config")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("cluster: closed")
	// ErrUnknownSession is returned by Disconnect when no live ownership
	// record is known for the session (never claimed, released, or expired).
	ErrUnknownSession = errors.New("cluster: unknown session")
	// ErrOwnerUnreachable is returned by Disconnect when the owning node is
	// not a live member or the request could not be delivered to it.
	ErrOwnerUnreachable = errors.New("cluster: session owner unreachable")
	// ErrInvalidClaim is returned by ValidateClaim for a session id, topic
	// list or trace outside the documented limits.
	ErrInvalidClaim = errors.New("cluster: invalid claim")
	// ErrMalformed reports a gossip message that failed to decode or
	// validate. Such messages are counted (Stats.Invalid) and dropped.
	ErrMalformed = errors.New("cluster: malformed message")
)
