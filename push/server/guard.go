package server

import (
	"context"
	"errors"
)

// Guard is the protection layers as the server consumes them (package
// resilience implements it through an adapter in cmd/herald); nil means no
// guard. Errors it returns are refusals: they may carry a retry hint
// through a RetryAfterSeconds() int method.
type Guard interface {
	// Publish admits one publish by tenant to topic (layer 1); done records
	// the outcome of the append.
	Publish(tenant, topic string) (done func(error), err error)
	// Admit admits a new stream from a client IP (layer 2); live marks the
	// end of its handshake and replay, done the end of the stream.
	Admit(clientIP string) (live, done func(), err error)
	// Replay waits, bounded, for one of the node's replay slots (layer 3).
	Replay(ctx context.Context) (release func(), err error)
	// Request admits one non-stream request from a client IP (layer 2:
	// requests in flight per IP); done ends it.
	Request(clientIP string) (done func(), err error)
}

// retryAfterOf returns a refusal's retry hint in seconds (at least 1).
func retryAfterOf(err error) int {
	var ra interface{ RetryAfterSeconds() int }
	if errors.As(err, &ra) {
		return max(1, ra.RetryAfterSeconds())
	}
	return 1
}

func nop()         {}
func nopErr(error) {}
func nopRelease()  {}
