package resilience

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// Layer 3 — replay concurrency. A plain FIFO semaphore rather than a
// sentinel isolation rule: sentinel refuses at once when the cap is
// reached, while a replay should wait a little (MaxWait) for a slot,
// honour its context and be served in arrival order. The cap can change
// under Reload without losing track of running replays.

// errFull is the limiter's internal "no slot within the wait".
var errFull = errors.New("resilience: replay slots full")

// Replay takes a replay slot (layer 3), waiting up to ReplayConfig.MaxWait
// in FIFO order. It returns release, which frees the slot (idempotent), or
// a *Blocked with Layer "replay", Reason "replay_wait" and RetryAfter =
// max(MaxWait, 1s) when no slot came in time, or ctx's error when ctx ends
// first.
func (g *Guards) Replay(ctx context.Context) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	wait := g.cfg.Load().Replay.MaxWait
	release, err = g.replay.acquire(ctx, wait)
	if errors.Is(err, errFull) {
		return nil, g.block(LayerReplay, ResourceReplay, ReasonReplayWait, max(wait, time.Second))
	}
	return release, err
}

// limiter is a resizable FIFO counting semaphore. limit 0 means no limit.
type limiter struct {
	mu      sync.Mutex
	limit   int
	used    int
	waiters list.List // of chan struct{}, closed when granted
}

func newLimiter(limit int) *limiter { return &limiter{limit: limit} }

// acquire takes a slot, waiting at most wait; errFull when none came.
func (l *limiter) acquire(ctx context.Context, wait time.Duration) (func(), error) {
	l.mu.Lock()
	if l.limit == 0 || (l.used < l.limit && l.waiters.Len() == 0) {
		l.used++
		l.mu.Unlock()
		return l.releaser(), nil
	}
	if wait <= 0 {
		l.mu.Unlock()
		return nil, errFull
	}
	ready := make(chan struct{})
	elem := l.waiters.PushBack(ready)
	l.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case <-ready:
		return l.releaser(), nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = errFull
	}
	l.mu.Lock()
	select {
	case <-ready:
		// Granted while we gave up: hand the slot on.
		l.mu.Unlock()
		if errors.Is(err, errFull) {
			return l.releaser(), nil // the slot did come in time after all
		}
		l.releaser()()
		return nil, err
	default:
	}
	isFront := l.waiters.Front() == elem
	l.waiters.Remove(elem)
	if isFront {
		l.grantLocked() // the next waiter may fit now
	}
	l.mu.Unlock()
	return nil, err
}

// releaser returns the idempotent release of one held slot.
func (l *limiter) releaser() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.used--
			l.grantLocked()
			l.mu.Unlock()
		})
	}
}

// resize changes the limit (0 = none) and grants waiters that now fit.
func (l *limiter) resize(limit int) {
	l.mu.Lock()
	l.limit = limit
	l.grantLocked()
	l.mu.Unlock()
}

// grantLocked hands free slots to waiters in FIFO order. l.mu must be held.
func (l *limiter) grantLocked() {
	for l.waiters.Len() > 0 && (l.limit == 0 || l.used < l.limit) {
		front := l.waiters.Front()
		l.waiters.Remove(front)
		l.used++
		close(front.Value.(chan struct{}))
	}
}

// waiting returns the acquires queued for a slot (tests).
func (l *limiter) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiters.Len()
}

// inUse returns the slots held (tests).
func (l *limiter) inUse() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used
}
