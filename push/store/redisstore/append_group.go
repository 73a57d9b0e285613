package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/redis/go-redis/v9"
)

// Group commit of concurrent appends (ADR 0032).
//
// Every Append is one append script call, and each used to be its own round
// trip on its own pooled connection: a write and a read system call, a pool
// checkout and two socket deadlines per publish. The committer sends the
// calls that are waiting as one pipeline instead: one write and one read for
// all of them. It never waits for company: an append that finds nothing in
// flight and nothing queued is sent at once from its caller's goroutine,
// exactly as before; appends that arrive while a call or batch is in flight
// queue, and the committer's goroutine sends them together as the next batch
// the moment the reply of the previous one is in (classic group commit). One
// batch is in flight at a time; Redis runs scripts one at a time anyway, so
// a second connection would add system calls, not throughput.
//
// Each call stays its own script with its own result: one call's script
// error (say WRONGTYPE on a key that is not a stream) fails that call only.
// A batch that fails as a whole (connection lost, deadline) fails each of
// its calls with that error. With a Cluster client the pipeline is split by
// go-redis per node (every call's keys share one hash slot), and MOVED/ASK
// are followed there as for any pipeline.
//
// Context. A caller whose context ends while its call is queued gets the
// context's error and its call is never sent. A queued caller whose context
// ends after its call was sent gets the context's error at once and the
// outcome is unknown (the batch goes on for the others and its reply for
// this call is dropped): the same ambiguity as a lost reply, resolved the
// same way, by retrying with the same idempotency key. A batch's network
// deadline is the latest of its calls' deadlines. A call sent alone from its
// caller's goroutine is the call Append made before group commit: go-redis
// bounds it by its context's deadline (every call has one, OpTimeout by
// default); a cancellation without a deadline is not seen mid-read.
//
// Bounds. A batch carries at most maxBatch calls and, unless it is a single
// call, about maxBatchBytes of payload. At most maxQueue calls wait unsent;
// a caller beyond that waits for room (or for its context), which is the
// back-pressure a Redis that cannot keep up puts on publishers.

// Defaults of the group commit bounds.
const (
	// DefaultAppendBatch is the largest number of append calls sent in one
	// round trip.
	DefaultAppendBatch = 64
	// DefaultAppendQueue bounds the append calls waiting to be sent.
	DefaultAppendQueue = 1024
	// MaxAppendBatchBytes caps a batch's approximate payload (event data,
	// keys, arguments); a single call larger than this still goes alone.
	MaxAppendBatchBytes = 1 << 20
)

// Call states: queued → sent (in a batch by the committer), queued →
// direct (handed back to its caller to send alone), or queued → abandoned
// by its caller.
const (
	callQueued int32 = iota
	callSent
	callAbandoned
	callDirect
)

// appendCall is one Append's script call waiting for, or riding in, a batch.
type appendCall struct {
	ctx   context.Context // the caller's, bounded by opCtx: it has a deadline
	keys  []string
	args  []any
	size  int
	state atomic.Int32

	// Written by the committer before done is closed; read by the caller
	// after done only.
	raw  []any
	err  error
	done chan struct{}
}

// committer batches append calls (see above). Its goroutine is started by
// newCommitter and stopped by close.
type committer struct {
	client   redis.UniversalClient
	maxBatch int

	slots chan struct{} // one per queued call: the queue bound
	wake  chan struct{} // capacity 1
	stop  chan struct{}
	done  chan struct{}

	mu     sync.Mutex
	queue  []*appendCall
	busy   bool // a batch (or a lone call) is in flight
	closed bool

	batches atomic.Int64 // round trips the committer's goroutine made
}

func newCommitter(client redis.UniversalClient, maxBatch, maxQueue int) *committer {
	c := &committer{
		client: client, maxBatch: maxBatch,
		slots: make(chan struct{}, maxQueue),
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go c.run()
	return c
}

// do runs one append script call through the committer and returns its
// reply. ctx must have a deadline (Store.opCtx gives it one).
func (c *committer) do(ctx context.Context, keys []string, args []any, size int) ([]any, error) {
	c.mu.Lock()
	if !c.busy && len(c.queue) == 0 && !c.closed {
		// Nothing in flight, nothing waiting: send it now, from this
		// goroutine, as Append did before group commit.
		c.busy = true
		c.mu.Unlock()
		raw, err := appendScript.Run(ctx, c.client, keys, args...).Slice()
		c.idle()
		return raw, err
	}
	c.mu.Unlock()
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.stop:
		return nil, push.ErrClosed
	}
	call := &appendCall{ctx: ctx, keys: keys, args: args, size: size, done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.slots
		return nil, push.ErrClosed
	}
	c.queue = append(c.queue, call)
	// Wake the committer only when nothing is in flight. While a call or
	// batch is, whoever ends it (idle, or the committer's own loop) finds
	// the queue non-empty and sends it; a wake now would run the
	// committer's goroutine for nothing (take refuses while busy), one
	// scheduler round trip per queued publish.
	wake := !c.busy
	c.mu.Unlock()
	if wake {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	select {
	case <-call.done:
		if call.state.Load() == callDirect {
			return c.direct(ctx, call)
		}
		return call.raw, call.err
	case <-ctx.Done():
		if call.state.CompareAndSwap(callQueued, callAbandoned) {
			return nil, ctx.Err() // never sent
		}
		if call.state.Load() == callDirect {
			// Handed back but not sent: give the turn on, unsent. done is
			// closed right after the state is set, without blocking.
			<-call.done
			c.idle()
			return nil, ctx.Err()
		}
		select { // sent: its reply may have landed in the same instant
		case <-call.done:
			return call.raw, call.err
		default:
		}
		return nil, fmt.Errorf("%w (the append was sent; its outcome is unknown)", ctx.Err())
	}
}

// direct sends a call handed back by idle from its caller's goroutine, as
// a lone call, and then gives the turn on.
func (c *committer) direct(ctx context.Context, call *appendCall) ([]any, error) {
	raw, err := appendScript.Run(ctx, c.client, call.keys, call.args...).Slice()
	c.idle()
	return raw, err
}

// idle ends the call or batch in flight and passes the turn on: a single
// call queued meanwhile goes back to its own caller, which sends it alone
// (busy stays set for it); two or more go to the committer's goroutine as
// the next batch.
//
// A batch of one gains no system call over a lone call, and sent by the
// committer it costs two goroutine hand-offs more: the committer is woken
// to send it and woken again by the reply, then wakes the caller; sent by
// its caller, the reply wakes the caller directly. Below saturation, where
// a publish rarely overlaps more than one other, a batch of one is common.
func (c *committer) idle() {
	c.mu.Lock()
	c.busy = false
	var solo *appendCall
	if len(c.queue) == 1 && !c.closed {
		call := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[:0]
		<-c.slots
		if call.state.CompareAndSwap(callQueued, callDirect) {
			c.busy = true
			solo = call
		} // else abandoned while queued: never sent, dropped here
	}
	pending := len(c.queue) > 0
	c.mu.Unlock()
	if solo != nil {
		close(solo.done)
		return
	}
	if pending {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func (c *committer) run() {
	defer close(c.done)
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			c.mu.Lock()
			c.closed = true
			rest := c.queue
			c.queue = nil
			c.mu.Unlock()
			for _, call := range rest {
				<-c.slots
				if call.state.CompareAndSwap(callQueued, callSent) {
					call.err = push.ErrClosed
					close(call.done)
				}
			}
			return
		}
		// Until the queue is empty or close was called (the select above
		// then fails what is left).
		for !c.stopping() {
			batch, ok := c.take()
			if !ok {
				break // idle, or a lone call in flight: its idle wakes us
			}
			if len(batch) > 0 {
				c.send(batch)
			}
			c.idle()
		}
	}
}

func (c *committer) stopping() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// take marks a batch in flight and removes it from the queue: up to maxBatch
// calls and about MaxAppendBatchBytes, at least one call, skipping (and
// dropping) calls whose callers gave up; every call taken is marked sent
// before it is. ok is false, and nothing taken, when the queue is empty or
// a batch is already in flight.
func (c *committer) take() (batch []*appendCall, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy || len(c.queue) == 0 {
		return nil, false
	}
	c.busy = true
	bytes, n := 0, 0
	for n < len(c.queue) && len(batch) < c.maxBatch {
		call := c.queue[n]
		if len(batch) > 0 && bytes+call.size > MaxAppendBatchBytes {
			break
		}
		n++
		<-c.slots
		if !call.state.CompareAndSwap(callQueued, callSent) {
			continue // abandoned while queued: never sent
		}
		batch = append(batch, call)
		bytes += call.size
	}
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	return batch, true
}

// send runs one batch and completes its calls.
func (c *committer) send(batch []*appendCall) {
	// The batch outlives any one caller's cancellation, but not the latest
	// deadline among its calls; values (trace context) come from the first.
	deadline := time.Time{}
	for _, call := range batch {
		if d, ok := call.ctx.Deadline(); ok && d.After(deadline) {
			deadline = d
		}
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(batch[0].ctx), deadline)
	defer cancel()
	c.batches.Add(1)
	if len(batch) == 1 {
		call := batch[0]
		call.raw, call.err = appendScript.Run(ctx, c.client, call.keys, call.args...).Slice()
		close(call.done)
		return
	}
	cmds := c.pipeline(ctx, batch, appendScript.EvalSha)
	var retry []*appendCall
	for i, cmd := range cmds {
		if isNoScriptErr(cmd.Err()) {
			retry = append(retry, batch[i])
			continue
		}
		batch[i].raw, batch[i].err = cmd.Slice()
	}
	if len(retry) > 0 {
		// The script cache was flushed (restart, failover, SCRIPT FLUSH):
		// send those calls again with the script's body, which loads it.
		for i, cmd := range c.pipeline(ctx, retry, appendScript.Eval) {
			retry[i].raw, retry[i].err = cmd.Slice()
		}
	}
	for _, call := range batch {
		close(call.done)
	}
}

func (c *committer) pipeline(ctx context.Context, batch []*appendCall, eval evalFunc) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(batch))
	// Per-call errors are on the commands; the pipeline's own error is the
	// first of them.
	_, _ = c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, call := range batch {
			cmds[i] = eval(ctx, p, call.keys, call.args...)
		}
		return nil
	})
	return cmds
}

// close stops the committer: calls still queued fail with push.ErrClosed,
// unsent; a batch in flight completes first. Idempotent.
func (c *committer) close() {
	c.mu.Lock()
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.mu.Unlock()
	<-c.done
}

func isNoScriptErr(err error) bool {
	return err != nil && (redis.HasErrorPrefix(err, "NOSCRIPT") || errors.Is(err, redis.ErrNoScript))
}
