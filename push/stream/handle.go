package stream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push/hub"
)

// Stream end reasons (also used as metric labels).
const (
	EndClient    = "client"
	EndSlow      = "slow"
	EndDrain     = "drain"
	EndTakeover  = "takeover"
	EndAdmin     = "admin"
	EndRebalance = "rebalance"
	EndEvacuate  = "evacuate" // the region is evacuated: herald.moved names where to go
	EndShutdown  = "shutdown"
	EndAuth      = "auth" // the credential expired: the client reconnects with a fresh one
	EndError     = "error"
	// EndResubscribe: the client changed the stream's topics on the open
	// connection; the transport opens the new stream at once.
	EndResubscribe = "resubscribe"
)

// Kick ends one stream from outside its goroutine.
type Kick struct {
	once   sync.Once
	ch     chan struct{}
	reason string
	retry  time.Duration // final reconnection delay sent before closing; 0 = none
}

// NewKick returns an unfired kick.
func NewKick() *Kick { return &Kick{ch: make(chan struct{})} }

// Fire closes the stream with reason, after a final reconnection delay of
// retry (0: none); the first call wins and reports true.
func (k *Kick) Fire(reason string, retry time.Duration) bool {
	fired := false
	k.once.Do(func() {
		k.reason, k.retry = reason, retry
		close(k.ch)
		fired = true
	})
	return fired
}

// Done is closed when the kick fires.
func (k *Kick) Done() <-chan struct{} { return k.ch }

// Reason and Retry are what the first Fire gave; read them after Done.
func (k *Kick) Reason() string { return k.reason }

// Retry is the final reconnection delay the first Fire gave.
func (k *Kick) Retry() time.Duration { return k.retry }

// Handle is a live stream as the node sees it, by session: what it needs
// to list, wake and end the stream from outside.
type Handle struct {
	Session     string
	Incarnation uint64
	Topics      []string
	Since       time.Time
	// Transport is the stream's transport ("sse", "ws").
	Transport string
	Kick      *Kick
	// Trace is the traceparent of the stream's session span.
	Trace string
	sub   atomic.Pointer[hub.Subscriber]
	// wrote is when the stream last wrote (Unix ns), for the heartbeat
	// to pass over busy streams without waking them.
	wrote atomic.Int64
}

// Subscriber is the stream's live queue, nil until it goes live.
func (h *Handle) Subscriber() *hub.Subscriber { return h.sub.Load() }

// Quiet reports whether the stream wrote nothing since before (Unix ns).
func (h *Handle) Quiet(before int64) bool { return h.wrote.Load() <= before }
