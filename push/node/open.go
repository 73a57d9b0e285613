package node

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"slices"
	"strconv"
	"time"

	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/stream"
)

// Request is a stream a client asked for, as its transport parsed and
// authorised it.
type Request struct {
	// Topics are the stream's topics, valid and granted to the principal.
	Topics []string
	// From is where streams without a position start: "", "latest" or
	// "earliest".
	From string
	// Cursor is the client's cursor as it sent it ("" none).
	Cursor string
	// Strict makes a malformed cursor an error; otherwise (a browser,
	// which stops for good on any error) it is reset, naming the problem.
	Strict bool
	// Principal is the authenticated principal's id; Expires its
	// credential's expiry (zero: none). A stream lives no longer.
	Principal string
	Expires   time.Time
	// ClientIP is the client's address (per-IP stream caps).
	ClientIP string
	// Traceparent is a W3C traceparent the client sent ("" none).
	Traceparent string
	// Transport names the transport ("sse", "ws") for telemetry.
	Transport string
	// Resets are what a change of topics found for the topics it added
	// (Resubscribe): announced with this stream's hello, before the resets
	// of its own connect.
	Resets []push.StreamReset
}

// Transport is a stream's transport as the connect phase uses it: a
// stream.Writer, plus the answers a connect can end with.
type Transport interface {
	stream.Writer
	// Fail answers a request that cannot be served as asked (a malformed
	// or foreign cursor the client must not retry as is).
	Fail(err error)
	// Refuse turns the stream away for now; the client retries.
	Refuse(r Refusal)
	// Accept starts the stream's answer, with the reconnection delay the
	// client should use when it drops.
	Accept(retry time.Duration)
}

// RefusalKind tells why a stream was turned away.
type RefusalKind int

const (
	// RefuseSteer: the node is draining, evacuating, closing or over its
	// target. Peer, when set, is a less loaded peer to go to.
	RefuseSteer RefusalKind = iota
	// RefuseGuard: a protection layer refused (or the store is away); Err
	// carries its retry hint (RetryAfter).
	RefuseGuard
	// RefuseLater: come back later, the same for every client (a browser-
	// safe answer even for SDK clients: nothing is wrong with the request).
	RefuseLater
)

// Refusal is a stream turned away.
type Refusal struct {
	Kind RefusalKind
	// Peer is a peer's base URL to redirect to (RefuseSteer; "" none).
	Peer string
	// Cursor is the id the client retries with ("" its own; ADR 0020).
	Cursor string
	// Err is the refusal of RefuseGuard.
	Err error
	// State is the node's state for RefuseSteer: "draining",
	// "evacuating" or "overloaded".
	State string
	// Alternates are other regions' endpoints (evacuation).
	Alternates []string
	// Retry is a jittered reconnection delay for RefuseSteer and
	// RefuseLater.
	Retry time.Duration
}

// Opened is a stream through its connect phase, ready to go live.
type Opened struct {
	st *stream.Stream
	// end is why the stream ended (a stream.End* value), read by cleanups.
	end string
	// cleanups run in reverse order when the stream ends, like defers of
	// the connect phase that must outlive it.
	cleanups []func()
}

func (o *Opened) onClose(f func()) { o.cleanups = append(o.cleanups, f) }

// Close releases everything the stream held; call it once, after Live.
func (o *Opened) Close() {
	for i := len(o.cleanups) - 1; i >= 0; i-- {
		o.cleanups[i]()
	}
	o.cleanups = nil
}

// Live runs the stream's live loop until it ends (see stream.Stream.Live).
// A stream that joins a large fan-out grows its stack first (ADR 0011); an
// SSE stream's was grown before routing (stream.GrowStackEarly), so this
// copies nothing for it.
func (o *Opened) Live() {
	if o.st.FanOut() > hub.PacedFanOut {
		stream.GrowStack(0)
	}
	o.end = o.st.Live()
}

// End is why the stream ended (a stream.End* value), after Live.
func (o *Opened) End() string { return o.end }

// Cursor is the stream's position; read it only after Live returned.
func (o *Opened) Cursor() *push.Cursor { return o.st.Cursor() }

// Kick ends the stream from outside its goroutine (see stream.Kick.Fire).
func (o *Opened) Kick(reason string, retry time.Duration) bool { return o.st.Kick(reason, retry) }

// Open is the connect phase of a stream: it admits, plans the resume,
// takes the session over, writes the hello and the replay and subscribes.
// It returns nil when it answered the request itself through t (an error,
// a refusal) or the stream ended during it; then everything it set up is
// released.
func (n *Node) Open(ctx context.Context, req Request, t Transport) *Opened {
	// Room for the cleanups a stream that goes live registers (about a
	// dozen), so the list is not regrown four times per connect.
	op := &Opened{cleanups: make([]func(), 0, 16)}
	opened := false
	defer func() {
		if !opened {
			op.Close()
		}
	}()
	tel := n.d.Telemetry
	result := observability.ConnectRejected
	op.onClose(func() {
		if result != observability.ConnectAccepted { // accepted is counted at once
			tel.Metrics().Connect(ctx, req.Transport, result)
		}
	})
	topics := req.Topics
	cur, err := push.NewCursor(topics, n.origins)
	if err != nil {
		t.Fail(err)
		return nil
	}
	resume := stream.Resume{From: req.From, Local: n.store.Origin()}
	if req.Cursor != "" {
		resume.Parsed, err = push.ParseCursor(req.Cursor, topics, n.origins)
		switch {
		case errors.Is(err, push.ErrForeignCursor):
			resume.Discard, resume.Parsed = push.ResetForeignCursor, nil
		case errors.Is(err, push.ErrMalformedCursor) && !req.Strict:
			// A browser EventSource stops for good on any non-200: a
			// cursor it cannot have made (a proxy's id, an older or newer
			// format) must not strand its user. It gets a reset naming
			// the problem and continues where `from` says.
			resume.Discard, resume.Parsed = push.ResetInvalidCursor, nil
		case err != nil:
			t.Fail(err)
			return nil
		}
	}
	parsed := resume.Parsed

	// The session is the cursor's only if it was issued to this principal
	// (ADR 0014): checked here, where the claim is made, on whichever node
	// this is. Anything else — no session, an older cursor without a
	// binding, or another principal's session id — starts a new session;
	// the cursor's positions still count, and the other session is never
	// touched.
	session := uint64(0)
	if parsed != nil {
		if tag, ok := parsed.Binding(); ok && n.binder.Verify(parsed.Session(), req.Principal, tag) {
			session = parsed.Session()
		} else if parsed.Session() != 0 {
			n.log.DebugContext(ctx, "stream: cursor's session not bound to this principal, new session", "bound", ok)
		}
	}
	if session == 0 {
		session = newSessionID()
	}
	cur.SetSession(session, n.binder.Bind(session, req.Principal))
	sid := FormatSessionID(session)

	// A fresh stream turned away is given its position as of now, so that
	// its retry misses nothing published meanwhile (shedCursor).
	fresh := req.Cursor == "" && req.From != "earliest"
	result = observability.ConnectShed
	if dest := n.admit(); dest != "" {
		r := Refusal{Kind: RefuseSteer, Cursor: n.shedCursor(ctx, cur, fresh, true), Retry: n.RetryDelay(), State: "overloaded"}
		if dest != "-" {
			result = observability.ConnectRedirected
			r.Peer = dest
		}
		switch {
		case n.evacuating.Load():
			r.State, r.Alternates = "evacuating", n.Alternates()
		case n.draining.Load(), n.closed.Err() != nil:
			r.State = "draining"
		}
		t.Refuse(r)
		return nil
	}
	live, done := nop, nop
	if g := n.d.Guard; g != nil {
		l, d, err := g.Admit(req.ClientIP)
		if err != nil {
			t.Refuse(Refusal{Kind: RefuseGuard, Err: err, Cursor: n.shedCursor(ctx, cur, fresh, true)})
			return nil
		}
		live, done = l, d
	}
	op.onClose(done)

	// A fresh stream starts at the heads. When the hub watches its topics
	// and its listeners are synced, it knows them as well as the stores
	// (hub.Heads): no store call. A cursor or "earliest" needs the stores'
	// lineage records and retention, which only they hold.
	var (
		infos  []push.StreamInfo
		recent map[push.StreamKey][]*push.Event
		ok     bool
	)
	if fresh {
		infos, ok = n.hub.Heads(cur.Topics(), n.origins)
	}
	if !ok {
		if infos, recent, err = n.env.Infos(ctx, n.origins, cur.Topics()); err != nil {
			n.log.WarnContext(ctx, "stream: store unavailable at connect", "err", err)
			t.Refuse(Refusal{Kind: RefuseGuard, Err: err, Cursor: n.shedCursor(ctx, cur, fresh, false)})
			return nil
		}
	}
	if parsed != nil {
		resumeAt := time.Now()
		infos = n.env.AwaitReplicas(ctx, cur, resume, infos, n.cfg.ReplicaWait)
		// Still not the client's lineage, and the replica is re-syncing: a
		// reset now would move the client to whatever the replica holds
		// meanwhile (nothing, or an old lineage) and replay it. Come back
		// later, cursor unchanged (a browser-safe shed).
		if origin := n.resyncingOrigin(ctx, cur, resume, infos, resumeAt); origin != "" {
			n.log.DebugContext(ctx, "stream: replica re-syncing, resume deferred", "origin", origin)
			result = observability.ConnectShed
			t.Refuse(Refusal{Kind: RefuseLater, Retry: n.RetryDelay()})
			return nil
		}
	}

	n.streams.Add(1)
	op.onClose(func() { n.streams.Add(-1) })
	n.connected.Add(1)

	// The session span links to the previous connection of this session
	// (its record's trace, wherever it was served) and to a traceparent the
	// client sent: links, not parents, since both are client-controlled.
	var links []trace.Link
	if tel != nil {
		prev := n.table.endedTrace(sid)
		if cl := n.d.Cluster; cl != nil {
			if rec, ok := cl.Lookup(sid); ok && rec.Trace != "" {
				prev = rec.Trace
			}
		}
		for _, tp := range []string{prev, req.Traceparent} {
			if l, ok := observability.LinkFromTraceparent(tp); ok {
				links = append(links, l)
			}
		}
	}
	sctx, span := tel.StartSession(ctx, observability.SessionAttrs{
		SessionID: sid, Topics: cur.Topics(), Cursor: req.Cursor, Resumed: parsed != nil, Node: n.cfg.Name, Region: n.cfg.Region, Transport: req.Transport,
	}, links...)
	traceparent := observability.EventTraceparent(sctx)
	op.end = stream.EndError
	op.onClose(func() {
		span.SetAttributes(attribute.String("herald.disconnect", op.end))
		span.End()
		if op.end == stream.EndSlow {
			n.stats.SlowEnded.Add(1)
		}
		n.log.DebugContext(sctx, "stream closed", "session", sid, "reason", op.end)
	})

	// Take the session over: an older stream of it, here or on another
	// node, is closed.
	h := &stream.Handle{Session: sid, Topics: cur.Topics(), Since: time.Now(), Transport: req.Transport, Kick: stream.NewKick(), Trace: traceparent}
	if cl := n.d.Cluster; cl != nil {
		kind := observability.OwnershipClaim
		if prev, ok := cl.Lookup(sid); ok && !prev.Ended {
			kind = observability.OwnershipTakeover
		}
		tel.Metrics().OwnershipChange(sctx, kind)
		h.Incarnation = cl.Claim(sid, cur.Topics(), traceparent).Incarnation
	} else {
		h.Incarnation = n.table.nextIncarnation()
	}
	n.table.add(h)
	// One cleanup for both, reading the claim from h: what a cleanup
	// captures lives as long as the stream (issue 25, TestClusterStreamHeap).
	op.onClose(func() {
		n.table.remove(h)
		if cl := n.d.Cluster; cl != nil {
			cl.Release(h.Session, h.Incarnation)
		}
	})
	// A stream lives no longer than its credential: at expiry it ends with
	// a final reconnection delay, and the client comes back with a fresh
	// token.
	if !req.Expires.IsZero() {
		expiry := time.AfterFunc(time.Until(req.Expires), func() { h.Kick.Fire(stream.EndAuth, n.finalRetry()) })
		op.onClose(func() { expiry.Stop() })
	}

	st := stream.New(n.env, sctx, t, cur, h, recent)
	op.onClose(t.Release)

	plan := stream.Plan(cur, resume, infos)
	if len(recent) > 0 && (len(plan.Resets) > 0 || !resume.ResumesEverySlot()) {
		// Without the store we cannot tell what is lost (never announce a
		// reset we are not sure of) nor where the live head is: only exact
		// resumes are served from the cache.
		t.Refuse(Refusal{Kind: RefuseLater, Retry: n.RetryDelay(), Cursor: n.shedCursor(ctx, cur, fresh, false)})
		return nil
	}
	// History reads are the expensive part of a reconnect storm: take a
	// replay slot (bounded wait) before answering, so a refusal can still
	// be a browser-safe shed.
	releaseReplay := nop
	if g := n.d.Guard; g != nil && plan.Replays(cur) {
		rel, err := g.Replay(ctx)
		if err != nil {
			t.Refuse(Refusal{Kind: RefuseGuard, Err: err})
			return nil
		}
		releaseReplay = rel
	}
	op.onClose(releaseReplay)

	t.Accept(n.RetryDelay())
	result = observability.ConnectAccepted
	tel.Metrics().Connect(sctx, req.Transport, result)
	tel.Metrics().StreamOpened(sctx)
	op.onClose(func() { tel.Metrics().StreamClosed(sctx, req.Transport, op.end) })
	op.end = stream.EndClient

	hello := push.Hello{
		Session: sid, Node: n.cfg.Name, Origin: n.store.Origin(), Topics: cur.Topics(), Origins: cur.Origins(),
		Resumed: parsed != nil, Durable: n.store.Durable(), Trace: traceparent,
	}
	resets := plan.Resets
	if len(req.Resets) > 0 {
		resets = append(slices.Clone(req.Resets), plan.Resets...)
	}
	if err := st.Hello(hello, resets); err != nil {
		return nil
	}
	outcome := observability.ResumeLive
	switch {
	case len(resets) > 0:
		outcome = observability.ResumeReset
	case parsed != nil:
		outcome = observability.ResumeReplayed
	}
	resumed := false
	recordResume := func() {
		if !resumed {
			resumed = true
			tel.Metrics().Resume(sctx, outcome, st.Replayed())
		}
	}
	op.onClose(recordResume)

	// Replay history up to the head seen at connect.
	if end := st.Replay(plan); end != "" {
		op.end = end
		return nil
	}
	releaseReplay()
	recordResume()
	op.onClose(st.Unsubscribe)
	if end, err := st.Subscribe(ctx); err != nil {
		n.log.DebugContext(sctx, "stream: going live failed", "err", err)
		if end != "" {
			op.end = end
		}
		return nil
	}
	live()
	span.SetAttributes(attribute.Int("herald.replayed", st.Replayed()), attribute.Bool("herald.reset", len(resets) > 0))
	op.st = st
	opened = true
	return op
}

func nop() {}

// newSessionID returns a random non-zero session id.
func newSessionID() uint64 {
	var b [8]byte
	for {
		_, _ = crand.Read(b[:])
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// FormatSessionID renders a session id as 16 lower-case hex digits.
func FormatSessionID(id uint64) string {
	const hex = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = hex[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// ParseSessionID parses FormatSessionID's output.
func ParseSessionID(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, errors.New("session id: want 16 hex digits")
	}
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil || id == 0 {
		return 0, errors.New("session id: want 16 hex digits, not zero")
	}
	return id, nil
}
