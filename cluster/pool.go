package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// pool is what the region pool (Cluster) and the WAN pool (Federation)
// share: the memberlist instance, the owned goroutines and their stop
// signal, the seed joiner, and the graceful leave and close.
type pool struct {
	what      string // "cluster" or "federation", in errors and log lines
	log       *slog.Logger
	ml        *memberlist.Memberlist // set once by the constructor before any goroutine of ours starts
	localAddr string
	join      joiner // set once with ml

	ctx    context.Context // cancelled by close; bounds DNS look-ups
	cancel context.CancelFunc
	stopCh chan struct{}
	wg     sync.WaitGroup
	goMu   sync.Mutex
	closed bool
	once   sync.Once
	cerr   error

	// Metadata re-gossip requests, coalesced by metaLoop.
	metaKick   chan struct{}
	metaUrgent atomic.Bool
}

func newPool(what string, log *slog.Logger) pool {
	ctx, cancel := context.WithCancel(context.Background())
	return pool{what: what, log: log, ctx: ctx, cancel: cancel, stopCh: make(chan struct{}),
		metaKick: make(chan struct{}, 1)}
}

// started records the memberlist instance and the joiner's settings.
func (p *pool) started(ml *memberlist.Memberlist, j joiner) {
	p.ml = ml
	p.localAddr = ml.LocalNode().Address()
	j.ml, j.stop, j.log = ml, p.stopCh, p.log
	p.join = j
}

// goFunc starts f as an owned goroutine; it refuses after Close.
func (p *pool) goFunc(f func()) bool {
	p.goMu.Lock()
	defer p.goMu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// leave sets the "leaving" state in this node's metadata (setLeaving),
// gossips it for at most half of timeout, then runs memberlist's Leave with
// the rest.
func (p *pool) leave(timeout time.Duration, setLeaving func()) error {
	p.goMu.Lock()
	closed := p.closed
	p.goMu.Unlock()
	if closed {
		return ErrClosed
	}
	start := time.Now()
	setLeaving()
	if err := p.ml.UpdateNode(timeout / 2); err != nil {
		p.log.Debug("leave: metadata update not confirmed", "err", err)
	}
	rest := max(timeout-time.Since(start), 10*time.Millisecond)
	if err := p.ml.Leave(rest); err != nil {
		return fmt.Errorf("cluster: %s leave: %w", p.what, err)
	}
	p.log.Info("left the " + p.what)
	return nil
}

// close shuts memberlist down (without Leave: peers see a crash) and stops
// every owned goroutine, waiting for them. Idempotent.
func (p *pool) close() error {
	p.once.Do(func() {
		p.goMu.Lock()
		p.closed = true
		p.goMu.Unlock()
		close(p.stopCh)
		p.cancel()
		if err := p.ml.Shutdown(); err != nil {
			p.cerr = fmt.Errorf("cluster: %s shutdown: %w", p.what, err)
		}
		p.wg.Wait()
		p.log.Info(p.what + " member stopped")
	})
	return p.cerr
}

// kickMeta asks metaLoop to re-gossip this node's metadata; urgent skips the
// rate limit. Never blocks.
func (p *pool) kickMeta(urgent bool) {
	if urgent {
		p.metaUrgent.Store(true)
	}
	select {
	case p.metaKick <- struct{}{}:
	default:
	}
}

// metaLoop owns metadata re-gossip: requests are coalesced and update runs
// at most every interval unless one was urgent. update calls memberlist's
// UpdateNode, whose NodeMeta reads the current metadata, so the newest
// value always goes out; a change made during a round goes out in the next.
func (p *pool) metaLoop(interval time.Duration, update func()) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var last time.Time
	pending := false
	for {
		select {
		case <-p.stopCh:
			return
		case <-p.metaKick:
			pending = true
		case <-timer.C:
		}
		if !pending {
			continue
		}
		urgent := p.metaUrgent.Swap(false)
		if wait := time.Until(last.Add(interval)); !urgent && wait > 0 {
			timer.Reset(wait)
			continue
		}
		pending = false
		update()
		last = time.Now()
	}
}

// gossipMeta runs memberlist's UpdateNode; the short wait only confirms
// transmission.
func (p *pool) gossipMeta(tcpTimeout time.Duration) {
	if err := p.ml.UpdateNode(min(tcpTimeout, time.Second)); err != nil {
		p.log.Debug("metadata update not confirmed", "err", err)
	}
}
