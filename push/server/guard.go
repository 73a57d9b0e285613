package server

import "github.com/heraldpush/herald/push/node"

// Guard is the protection layers as the server consumes them (package
// resilience implements it through an adapter in cmd/herald); nil means no
// guard. Errors it returns are refusals: they may carry a retry hint
// through a RetryAfterSeconds() int method.
type Guard interface {
	// Admit and Replay guard new streams (layers 2 and 3; see node.Guard).
	node.Guard
	// Publish admits one publish by tenant to topic (layer 1); done records
	// the outcome of the append.
	Publish(tenant, topic string) (done func(error), err error)
	// Request admits one non-stream request from a client IP (layer 2:
	// requests in flight per IP); done ends it.
	Request(clientIP string) (done func(), err error)
}

// retryAfterOf returns a refusal's retry hint in seconds (at least 1).
func retryAfterOf(err error) int { return node.RetryAfter(err) }

func nopErr(error) {}
