package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/redis/go-redis/v9"
)

// Listener timing.
const (
	// healthInterval is how long the receive loop waits for traffic before
	// it pings the connection; a ping unanswered for another interval marks
	// the connection dead and it is replaced.
	healthInterval = time.Second
	minBackoff     = 50 * time.Millisecond
	maxBackoff     = 2 * time.Second
	pingPayload    = "herald"
)

// listener owns one go-redis PubSub and the goroutine that receives from
// it. Lock order: deliverMu, then mu; Store.mu is never held with either.
type listener struct {
	s    *Store
	sink push.Sink

	ctx    context.Context // cancelled by Close; bounds every call of run
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned
	once   sync.Once

	// deliverMu is held by the receive loop while it checks a topic is
	// watched and hands the event to the sink; Unwatch takes it once after
	// removing the topic, so no announcement of it follows Unwatch's return.
	deliverMu sync.Mutex

	mu        sync.Mutex
	ps        *redis.PubSub
	watched   map[string]string // channel -> topic
	confirmed map[string]bool   // channel -> SUBSCRIBE confirmed on the current connection
	waiters   map[string][]chan struct{}
	closed    bool

	// lost is set by the receive loop while announcements may have been
	// lost (connection down, subscriptions not yet confirmed again, or
	// Resync not yet asked for); heard is when it last received anything
	// (UnixNano). Both feed Synced.
	lost  atomic.Bool
	heard atomic.Int64
}

var _ push.SyncedListener = (*listener)(nil)

// Synced implements push.SyncedListener: nothing was lost since the last
// Resync, and the connection answered within 3 health intervals (a silent
// connection is pinged after one and replaced after two).
func (l *listener) Synced() bool {
	return !l.lost.Load() && time.Since(time.Unix(0, l.heard.Load())) < 3*healthInterval
}

var _ push.Listener = (*listener)(nil)

// Listen starts a listener with its own Pub/Sub connection and receive
// goroutine, stopped by the listener's Close (or the store's).
func (s *Store) Listen(sink push.Sink) (push.Listener, error) {
	if sink == nil {
		return nil, errors.New("redisstore: Listen: nil sink")
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{
		s: s, sink: sink, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		ps:      s.client.Subscribe(ctx), // no network I/O until used
		watched: map[string]string{}, confirmed: map[string]bool{}, waiters: map[string][]chan struct{}{},
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		cancel()
		_ = l.ps.Close()
		return nil, push.ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	l.heard.Store(time.Now().UnixNano())
	go l.run()
	return l, nil
}

// Watch subscribes to topic's channel and returns once Redis has confirmed
// the subscription, so every event appended afterwards is announced (or a
// Resync follows a lost connection). Watching a watched topic is a no-op.
func (l *listener) Watch(ctx context.Context, topic string) error {
	if err := push.ValidateTopic(topic); err != nil {
		return err
	}
	ch := l.s.channel(topic)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return push.ErrClosed
	}
	if _, ok := l.watched[ch]; ok && l.confirmed[ch] {
		l.mu.Unlock()
		return nil
	}
	l.watched[ch] = topic
	w := make(chan struct{})
	l.waiters[ch] = append(l.waiters[ch], w)
	ps := l.ps
	l.mu.Unlock()

	ctx, cancel := l.s.opCtx(ctx)
	defer cancel()
	// A write error fails fast (the caller retries); the channel is then
	// unsubscribed so that go-redis does not subscribe it again later.
	subErr := ps.Subscribe(ctx, ch)
	if subErr == nil {
		select {
		case <-w:
			return nil
		case <-l.done:
			return push.ErrClosed
		case <-ctx.Done():
		}
	}
	l.mu.Lock()
	ws := l.waiters[ch]
	for i := range ws {
		if ws[i] == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	unwatch := len(ws) == 0 && !l.confirmed[ch]
	if len(ws) == 0 {
		delete(l.waiters, ch)
	} else {
		l.waiters[ch] = ws
	}
	if unwatch {
		delete(l.watched, ch)
	}
	l.mu.Unlock()
	if unwatch {
		l.unsubscribe(ps, ch)
	}
	cause := ctx.Err()
	if subErr != nil {
		cause = subErr
	}
	return fmt.Errorf("redisstore: watch %q: %w: no subscription confirmation: %w", topic, push.ErrUnavailable, cause)
}

// Unwatch stops announcements of topic: from its return on, the sink gets
// none (the receive loop filters by the watched set), and the channel is
// unsubscribed. It must not be called from the sink's own methods.
func (l *listener) Unwatch(topic string) {
	ch := l.s.channel(topic)
	l.mu.Lock()
	if _, ok := l.watched[ch]; !ok || l.closed {
		l.mu.Unlock()
		return
	}
	delete(l.watched, ch)
	delete(l.confirmed, ch)
	ps := l.ps
	l.mu.Unlock()
	// An empty critical section is the point: wait out a delivery in progress.
	l.deliverMu.Lock()
	//lint:ignore SA2001 barrier, see above
	l.deliverMu.Unlock()
	l.unsubscribe(ps, ch)
}

func (l *listener) unsubscribe(ps *redis.PubSub, ch string) {
	ctx, cancel := context.WithTimeout(l.ctx, l.s.cfg.OpTimeout)
	defer cancel()
	// go-redis forgets the channel even when the write fails, so a new
	// connection will not subscribe it again.
	if err := ps.Unsubscribe(ctx, ch); err != nil && l.ctx.Err() == nil {
		l.s.cfg.Logger.Debug("redisstore: unsubscribe failed", "channel", ch, "err", err)
	}
}

// Close stops the receive goroutine and closes the Pub/Sub connection. It
// is idempotent; after it returns the sink is never called again.
func (l *listener) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		ps := l.ps
		l.mu.Unlock()
		l.cancel()
		_ = ps.Close()
		<-l.done
		l.s.mu.Lock()
		delete(l.s.listeners, l)
		l.s.mu.Unlock()
	})
	return nil
}

// run is the receive loop. It owns the sink calls: Deliver for decoded
// notifications of watched topics, Resync once the subscriptions are back
// after any connection loss, and Resync every ResyncInterval.
func (l *listener) run() {
	defer close(l.done)
	log := l.s.cfg.Logger.With("component", "redisstore.listener")
	var (
		backoff         = minBackoff
		pingOutstanding bool      // a PING was written and its PONG not yet read
		pingSent        time.Time // when it was written
		needResync      bool      // announcements may have been lost
		lastRecv        = time.Now()
		lastResync      = time.Now()
		recvTimeout     = min(healthInterval, l.s.cfg.ResyncInterval)
	)
	sendPing := func() error {
		err := l.ping()
		if err == nil {
			pingOutstanding, pingSent = true, time.Now()
		}
		return err
	}
	for l.ctx.Err() == nil {
		// Prove the (re)subscriptions took effect: the PONG comes after their
		// confirmations on the same connection. A failed ping shows up as a
		// receive error below, which backs off.
		if needResync && !pingOutstanding {
			_ = sendPing()
		}
		l.mu.Lock()
		ps := l.ps
		l.mu.Unlock()
		msg, err := ps.ReceiveTimeout(l.ctx, recvTimeout)
		if l.ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && isTimeout(err):
			if pingOutstanding && time.Since(pingSent) >= healthInterval {
				log.Warn("pub/sub connection silent; reconnecting")
				l.lost.Store(true)
				l.replacePubSub()
				needResync, pingOutstanding = true, false
			}
			if !pingOutstanding && time.Since(lastRecv) >= healthInterval {
				if err := sendPing(); err != nil && l.ctx.Err() == nil {
					// go-redis dropped the connection and will dial again.
					l.lost.Store(true)
					needResync = true
					l.unconfirmAll()
				}
			}
		case err != nil:
			// go-redis dropped the connection; the next call dials again and
			// subscribes every channel again. Announcements may have been lost
			// meanwhile: Resync once the new subscriptions are confirmed,
			// which the PONG of a PING sent after them proves.
			if !needResync {
				log.Warn("pub/sub connection lost; reconnecting", "err", err)
			}
			l.lost.Store(true)
			needResync, pingOutstanding = true, false
			l.unconfirmAll()
			if !sleepCtx(l.ctx, backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
		default:
			backoff, lastRecv = minBackoff, time.Now()
			l.heard.Store(lastRecv.UnixNano())
			switch m := msg.(type) {
			case *redis.Message:
				l.deliver(m)
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					l.confirm(m.Channel)
				}
			case *redis.Pong:
				pingOutstanding = false
				if needResync {
					needResync = false
					log.Info("pub/sub subscriptions restored; resyncing")
					// Resync is asked for before the listener counts as
					// synced again: a sink answering from its own state
					// sees the resync pending (push.SyncedListener).
					l.sink.Resync()
					l.lost.Store(false)
					lastResync = time.Now()
				}
			}
		}
		if time.Since(lastResync) >= l.s.cfg.ResyncInterval {
			l.sink.Resync()
			lastResync = time.Now()
		}
	}
}

func (l *listener) ping() error {
	l.mu.Lock()
	ps := l.ps
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(l.ctx, l.s.cfg.OpTimeout)
	defer cancel()
	return ps.Ping(ctx, pingPayload)
}

// replacePubSub closes a connection that stopped answering and starts a new
// one subscribed to every watched channel.
func (l *listener) replacePubSub() {
	nps := l.s.client.Subscribe(l.ctx)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = nps.Close()
		return
	}
	old := l.ps
	l.ps = nps
	chans := make([]string, 0, len(l.watched))
	for ch := range l.watched {
		chans = append(chans, ch)
	}
	clear(l.confirmed)
	l.mu.Unlock()
	_ = old.Close()
	if len(chans) > 0 {
		ctx, cancel := context.WithTimeout(l.ctx, l.s.cfg.OpTimeout)
		defer cancel()
		_ = nps.Subscribe(ctx, chans...) // a failure shows as a receive error
	}
}

func (l *listener) unconfirmAll() {
	l.mu.Lock()
	clear(l.confirmed)
	l.mu.Unlock()
}

func (l *listener) confirm(ch string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.watched[ch]; ok {
		l.confirmed[ch] = true
	}
	for _, w := range l.waiters[ch] {
		close(w)
	}
	delete(l.waiters, ch)
}

func (l *listener) deliver(m *redis.Message) {
	l.deliverMu.Lock()
	defer l.deliverMu.Unlock()
	l.mu.Lock()
	topic, ok := l.watched[m.Channel]
	l.mu.Unlock()
	if !ok {
		return
	}
	evs, err := decodeNotification(m.Payload)
	if err != nil {
		// Someone else published on our channel, or a version skew: the
		// events (if any) must be fetched from the stream.
		l.s.cfg.Logger.Warn("redisstore: undecodable notification; resyncing", "channel", m.Channel, "err", err)
		l.sink.Resync()
		return
	}
	for _, ev := range evs {
		ev.Topic, ev.Origin = topic, l.s.cfg.Origin
		l.sink.Deliver(ev)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sleepCtx sleeps for d or until ctx is done; it reports whether it slept.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Notification wire formats, published by the append script, one message
// per append call. Version 1 carries one event:
//
//	"1\n" epoch "\n" offset "\n" ts-ms "\n" type "\n" traceparent "\n" data
//
// Version 2 carries the n ≥ 2 events of one call (same epoch and time), in
// offset order, each data length-prefixed:
//
//	"2\n" epoch "\n" ts-ms "\n" n "\n" (offset "\n" type "\n" traceparent "\n" len "\n" data), joined by "\n"
//
// Every field but data is single-line printable ASCII (checked before the
// append), so data may contain anything. A node that only knows version 1
// resyncs from the stream on a version 2 message: slower, never a gap.
func decodeNotification(p string) ([]*push.Event, error) {
	ver, p, ok := strings.Cut(p, "\n")
	switch {
	case ok && ver == "1":
		ev, err := decodeV1(p)
		if err != nil {
			return nil, err
		}
		return []*push.Event{ev}, nil
	case ok && ver == "2":
		return decodeV2(p)
	}
	return nil, fmt.Errorf("unknown notification version %q", clip(ver))
}

func decodeV1(p string) (*push.Event, error) {
	var f [5]string
	var ok bool
	for i := range f {
		if f[i], p, ok = strings.Cut(p, "\n"); !ok {
			return nil, errors.New("truncated notification")
		}
	}
	off, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil || off == 0 || f[0] == "" || f[3] == "" {
		return nil, fmt.Errorf("malformed notification header %q", clip(strings.Join(f[:], "|")))
	}
	ms, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("malformed notification time %q", clip(f[2]))
	}
	return &push.Event{
		Epoch: f[0], Offset: off, Time: time.UnixMilli(ms), Type: f[3], TraceParent: f[4], Data: []byte(p),
	}, nil
}

// maxNotified bounds the events of one version 2 notification (one append
// call carries at most storeutil.MaxBatch drafts).
const maxNotified = 1000

func decodeV2(p string) ([]*push.Event, error) {
	var h [3]string
	var ok bool
	for i := range h {
		if h[i], p, ok = strings.Cut(p, "\n"); !ok {
			return nil, errors.New("truncated notification header")
		}
	}
	ms, err1 := strconv.ParseInt(h[1], 10, 64)
	n, err2 := strconv.Atoi(h[2])
	if h[0] == "" || err1 != nil || err2 != nil || n < 2 || n > maxNotified {
		return nil, fmt.Errorf("malformed notification header %q", clip(strings.Join(h[:], "|")))
	}
	at := time.UnixMilli(ms)
	evs := make([]*push.Event, 0, n)
	var last uint64
	for i := range n {
		if i > 0 {
			if p, ok = strings.CutPrefix(p, "\n"); !ok {
				return nil, errors.New("malformed notification: no separator between events")
			}
		}
		var f [4]string
		for j := range f {
			if f[j], p, ok = strings.Cut(p, "\n"); !ok {
				return nil, errors.New("truncated notification")
			}
		}
		off, err := strconv.ParseUint(f[0], 10, 64)
		size, err2 := strconv.Atoi(f[3])
		if err != nil || err2 != nil || off <= last || f[1] == "" || size < 0 || size > len(p) {
			return nil, fmt.Errorf("malformed notification event %q", clip(strings.Join(f[:], "|")))
		}
		last = off
		evs = append(evs, &push.Event{Epoch: h[0], Offset: off, Time: at, Type: f[1], TraceParent: f[2], Data: []byte(p[:size])})
		p = p[size:]
	}
	if p != "" {
		return nil, errors.New("trailing data after the notification's events")
	}
	return evs, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
