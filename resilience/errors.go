package resilience

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Errors returned by this package.
var (
	// ErrBlocked matches every *Blocked with errors.Is, for callers that
	// map error kinds to responses without caring which layer refused.
	ErrBlocked = errors.New("resilience: blocked")
	// ErrClosed is returned by Reload after Close.
	ErrClosed = errors.New("resilience: guards closed")
)

// Layers, as found in Blocked.Layer and Event.Layer.
const (
	LayerIngress    = "ingress"
	LayerAdmission  = "admission"
	LayerReplay     = "replay"
	LayerDependency = "dependency"
)

// Reasons, as found in Blocked.Reason and Event.Reason.
const (
	ReasonTenantQPS     = "tenant_qps"     // ingress: the tenant's publish rate
	ReasonTopicQPS      = "topic_qps"      // ingress: the topic's publish rate
	ReasonRate          = "rate"           // admission: the node's connect rate (with warm-up)
	ReasonStreams       = "streams"        // admission: MaxStreams reached
	ReasonPerIP         = "per_ip"         // admission: MaxStreamsPerIP (streams) or MaxRequestsPerIP (requests) reached
	ReasonSystem        = "system"         // admission: CPU or load over the threshold
	ReasonStarved       = "starved"        // admission: this process's scheduling delay over MaxSchedDelay
	ReasonStarvedCaller = "starved_caller" // dependency events: a slow call excused by this process's scheduling delay
	ReasonReplayWait    = "replay_wait"    // replay: no slot within MaxWait
	ReasonBreakerOpen   = "breaker_open"   // dependency: the target's breaker is open
	ReasonErrorRatio    = "error_ratio"    // dependency events: the error-ratio rule
	ReasonSlowRatio     = "slow_ratio"     // dependency events: the slow-call rule
)

// Event kinds.
const (
	KindBlock    = "block"     // a call was refused
	KindTrip     = "trip"      // a breaker rule opened (from closed or half-open)
	KindHalfOpen = "half_open" // a breaker rule started probing
	KindRecover  = "recover"   // a breaker rule closed again
	KindExcused  = "excused"   // a slow dependency call not counted slow: the caller was starved
)

// Resources named in Blocked.Resource and counter keys for layers 1–3; layer
// 4 uses the dependency target's name.
const (
	ResourcePublish = "publish"
	ResourceConnect = "connect"
	ResourceRequest = "request" // a non-stream HTTP request
	ResourceReplay  = "replay"
)

// minRetryAfter is the smallest RetryAfter ever reported.
const minRetryAfter = 100 * time.Millisecond

// Blocked is the decision "refused by a protection layer". It is an error;
// the server maps it to a response (429/503 with Retry-After, or a
// browser-safe close with a `retry:` hint). Every field but Op is set.
type Blocked struct {
	// Layer is "ingress", "admission", "replay" or "dependency".
	Layer string
	// Resource is what was guarded: "publish", "connect", "replay", or the
	// dependency target (e.g. "primary", "replica:eu-west").
	Resource string
	// Reason is one of the Reason* constants.
	Reason string
	// Op is the refused dependency operation (Layer "dependency" only).
	Op string
	// RetryAfter is the earliest time a retry can be expected to pass: the
	// time until the rate limiter has a token again, the breaker's
	// remaining retry timeout, or the configured hint when nobody can know
	// (streams, per_ip, system, replay_wait). At least 100ms. It is the
	// same for everyone blocked at the same moment: add jitter before
	// handing it to many clients (Jittered).
	RetryAfter time.Duration
}

// Error implements error.
func (b *Blocked) Error() string {
	if b.Op != "" {
		return fmt.Sprintf("resilience: %s %s %s refused (%s), retry after %s", b.Layer, b.Resource, b.Op, b.Reason, b.RetryAfter)
	}
	return fmt.Sprintf("resilience: %s %s refused (%s), retry after %s", b.Layer, b.Resource, b.Reason, b.RetryAfter)
}

// Is makes errors.Is(err, ErrBlocked) true for every *Blocked.
func (b *Blocked) Is(target error) bool { return target == ErrBlocked }

// RetryAfterSeconds is RetryAfter rounded up to whole seconds, at least 1:
// the value for an HTTP Retry-After header.
func (b *Blocked) RetryAfterSeconds() int {
	s := int((b.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}

// Jittered returns RetryAfter stretched by a uniformly random factor in
// [1, 2), so that clients refused together do not come back together.
func (b *Blocked) Jittered() time.Duration {
	return b.RetryAfter + time.Duration(rand.Int64N(int64(b.RetryAfter)+1))
}

// Event reports a block or a breaker state change to Options.OnEvent.
type Event struct {
	Layer    string    // as in Blocked.Layer
	Resource string    // as in Blocked.Resource (no namespace prefix)
	Reason   string    // as in Blocked.Reason; for breaker transitions the rule: error_ratio or slow_ratio
	Kind     string    // block, trip, half_open or recover
	At       time.Time // when it happened
}
