package hub

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push"
)

// Delivery is an announced event with its SSE body (event type and data
// lines, no id, no terminator) encoded once and shared by all subscribers.
// Neither field may be modified.
type Delivery struct {
	Event *push.Event
	Body  []byte
	// At is when the hub dispatched the event (the time of its enqueues:
	// the moment from which a subscriber's stalled writes count against
	// MaxLag).
	At time.Time
	// soleID caches the SSE id of the event for streams whose cursor holds
	// just the event's stream (see SoleID).
	soleID atomic.Pointer[[]byte]
	// frame caches another transport's encoding of the event (Frame).
	frame atomic.Pointer[[]byte]
}

// Frame returns the event encoded by enc, for a transport whose encoding
// differs from Body (the WebSocket frame's tail): the first subscriber of
// a fan-out to ask encodes it, the others share it. Every caller must
// pass the same encoding. Safe for concurrent use.
func (d *Delivery) Frame(enc func(*push.Event) []byte) []byte {
	if p := d.frame.Load(); p != nil {
		return *p
	}
	b := enc(d.Event)
	d.frame.Store(&b)
	return b
}

// SoleID returns the SSE id every stream writes with this event when the
// event's stream (topic, origin) is its cursor's only one and the cursor
// carries no session: such an id is a function of the event alone, so the
// first of a fan-out's subscribers encodes it (enc appends it to its
// argument) and the others copy it. Safe for concurrent use.
func (d *Delivery) SoleID(enc func([]byte) []byte) []byte {
	if p := d.soleID.Load(); p != nil {
		return *p
	}
	id := enc(nil)
	d.soleID.Store(&id)
	return id
}

// Reason tells why a subscriber was cut off.
type Reason string

// Reasons for Subscriber.Close.
const (
	ReasonNone     Reason = ""
	ReasonSlow     Reason = "slow"     // queue overflowed, or its connection stalled it past MaxLag
	ReasonShutdown Reason = "shutdown" // hub closed
	ReasonKicked   Reason = "kicked"   // closed by its owner (takeover, admin, drain)
)

// Limits bound one subscriber's queue.
type Limits struct {
	// MaxEvents queued; zero means 4096.
	MaxEvents int
	// MaxBytes of queued bodies; zero means 4 MiB.
	MaxBytes int
	// MaxLag bounds how long the subscriber's connection may stall its
	// queue: a subscriber whose connection has spent longer than MaxLag in
	// writes (blocked on a full socket, waiting out its write deadline)
	// since its oldest queued event was enqueued is cut off (it resumes
	// from its cursor). Time the connection's goroutine spends waiting
	// for a CPU does not count: a consumer is slow when it does not drain,
	// not when its node could not run the stream (ADR 0034; the queue
	// stays bounded by MaxEvents and MaxBytes). Zero means 2s.
	MaxLag time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxEvents <= 0 {
		l.MaxEvents = 4096
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = 4 << 20
	}
	if l.MaxLag <= 0 {
		l.MaxLag = 2 * time.Second
	}
	return l
}

// Subscriber is one connection's inbox. The hub enqueues; the connection
// goroutine waits on Ready and drains with Take.
type Subscriber struct {
	topics []string
	limits Limits

	mu     sync.Mutex
	queue  []*Delivery
	bytes  int
	closed bool
	reason Reason
	// stalled is the connection's time in writes so far (Writing to
	// Wrote), writing the start of the write in progress (zero between
	// writes), headStalled what stall returned when the oldest queued
	// delivery was enqueued: the queue's lag is stall(now) - headStalled.
	stalled     time.Duration
	writing     time.Time
	headStalled time.Duration

	ready chan struct{} // capacity 1: "queue became non-empty"
	// woken is set when an enqueue asked the hub to wake the subscriber
	// and cleared by the next take: one pending wake per subscriber.
	woken bool
	done  chan struct{} // closed once when cut off

	// fanOut is the largest subscriber count, this one included, of its
	// topics when it subscribed (set by Hub.Subscribe, before it returns).
	fanOut int
	// seen is each watched stream's position as the hub knew it once sub
	// was registered (set by Hub.Subscribe, before it returns).
	seen []seenPosition
}

// seenPosition is one stream's position in Subscriber.seen.
type seenPosition struct {
	topic, origin string
	pos           push.Position
}

// NewSubscriber returns a subscriber for topics (validated by the caller).
func NewSubscriber(topics []string, limits Limits) *Subscriber {
	return &Subscriber{
		topics: topics,
		limits: limits.withDefaults(),
		ready:  make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
}

// Seen returns the position of stream (topic, origin) that the hub had
// reached, by dispatch or from the store when it began watching the topic,
// once sub was registered: the zero position when the store held no such
// stream then and nothing was dispatched since; ok is false for a stream
// the hub does not watch. Every event
// of that stream after the position reaches sub's queue (or, where
// announcements were lost, shows as a jump the subscriber fills), so a
// subscriber whose own position is the same epoch and at or past it has
// no seam to close with a store read. Valid after Hub.Subscribe returned
// nil.
func (s *Subscriber) Seen(topic, origin string) (pos push.Position, ok bool) {
	for _, p := range s.seen {
		if p.topic == topic && p.origin == origin {
			return p.pos, true
		}
	}
	return push.Position{}, false
}

// FanOut returns the largest number of subscribers, this one included,
// that any of its topics had when it subscribed: how big a fan-out its
// deliveries are part of. Valid after Hub.Subscribe returned.
func (s *Subscriber) FanOut() int { return s.fanOut }

// Topics returns the subscribed topics.
func (s *Subscriber) Topics() []string { return s.topics }

// Ready fires after the queue becomes non-empty, and on Wake.
func (s *Subscriber) Ready() <-chan struct{} { return s.ready }

// Wake fires Ready without queueing anything: the owner's loop runs once
// (its keep-alive, for instance) with no channel of its own for that.
func (s *Subscriber) Wake() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Done is closed when the subscriber is cut off; see Reason.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// Reason returns why the subscriber was closed (ReasonNone while open).
func (s *Subscriber) Reason() Reason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// Writing tells the subscriber that its connection begins a write at now
// (its socket write, flush included); Wrote ends it. The time between
// counts against MaxLag while events wait in the queue (ADR 0034). Called
// by the connection's goroutine only, never twice without a Wrote.
func (s *Subscriber) Writing(now time.Time) {
	s.mu.Lock()
	s.writing = now
	s.mu.Unlock()
}

// Wrote ends the write Writing began, at now.
func (s *Subscriber) Wrote(now time.Time) {
	s.mu.Lock()
	if !s.writing.IsZero() {
		s.stalled += max(now.Sub(s.writing), 0)
		s.writing = time.Time{}
	}
	s.mu.Unlock()
}

// stallLocked is the connection's time in writes up to now, the write in
// progress included. s.mu is held.
func (s *Subscriber) stallLocked(now time.Time) time.Duration {
	if s.writing.IsZero() {
		return s.stalled
	}
	return s.stalled + max(now.Sub(s.writing), 0)
}

// laggingLocked reports whether the connection has spent longer than
// MaxLag in writes since the oldest queued delivery was enqueued. s.mu is
// held.
func (s *Subscriber) laggingLocked(now time.Time) bool {
	return len(s.queue) > 0 && s.stallLocked(now)-s.headStalled > s.limits.MaxLag
}

// Lagging reports whether, at now, the connection has spent longer than
// MaxLag in writes since the oldest queued delivery was enqueued; it then
// cuts itself off instead of writing a stale backlog. How long that
// delivery has waited in all does not matter: on a starved node it waits
// for its goroutine to get a CPU, which is not the consumer's doing.
func (s *Subscriber) Lagging(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.laggingLocked(now)
}

// Take moves every queued delivery to dst and returns it.
func (s *Subscriber) Take(dst []*Delivery) []*Delivery {
	dst, _ = s.TakeFresh(dst, time.Time{})
	return dst
}

// TakeFresh is Take unless the subscriber is lagging at now (see
// Lagging): then it takes nothing and reports lagging. A zero now skips
// the check. It is one lock per write instead of two.
func (s *Subscriber) TakeFresh(dst []*Delivery, now time.Time) (_ []*Delivery, lagging bool) {
	s.mu.Lock()
	if !now.IsZero() && s.laggingLocked(now) {
		s.mu.Unlock()
		return dst, true
	}
	dst = append(dst, s.queue...)
	clear(s.queue)
	s.queue = s.queue[:0]
	s.bytes = 0
	s.woken = false
	s.mu.Unlock()
	return dst, false
}

// Len returns the number of queued deliveries.
func (s *Subscriber) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Close cuts the subscriber off. Only the first reason is kept.
func (s *Subscriber) Close(r Reason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(r)
}

func (s *Subscriber) closeLocked(r Reason) {
	if s.closed {
		return
	}
	s.closed = true
	s.reason = r
	clear(s.queue)
	s.queue = nil
	s.bytes = 0
	close(s.done)
}

// enqueueResult is what enqueue did.
type enqueueResult int

const (
	enqueued     enqueueResult = iota
	enqueuedWake               // enqueued; the caller must Wake the subscriber
	cutOff                     // the queue overflowed: closed now with ReasonSlow
	wasClosed                  // already closed before
)

// enqueue adds d without blocking, or cuts the subscriber off when its queue
// is full or its connection has stalled it for longer than MaxLag (d.At
// standing for now). It does not wake the subscriber: enqueuedWake tells the caller
// to (through the hub's waker); enqueued means a wake is already pending.
func (s *Subscriber) enqueue(d *Delivery) enqueueResult {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return wasClosed
	}
	if len(s.queue)+1 > s.limits.MaxEvents || s.bytes+len(d.Body) > s.limits.MaxBytes || s.laggingLocked(d.At) {
		s.closeLocked(ReasonSlow)
		s.mu.Unlock()
		return cutOff
	}
	if len(s.queue) == 0 {
		s.headStalled = s.stallLocked(d.At)
	}
	s.queue = append(s.queue, d)
	s.bytes += len(d.Body)
	wake := !s.woken
	s.woken = true
	s.mu.Unlock()
	if wake {
		return enqueuedWake
	}
	return enqueued
}
