package server

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldpush/herald/observability"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
	"github.com/heraldpush/herald/push/sse"
)

// Control event types and reset reasons (see push/control.go).
const (
	EventHello         = push.EventHello
	EventReset         = push.EventReset
	ResetTrimmed       = push.ResetTrimmed
	ResetEpochChanged  = push.ResetEpochChanged
	ResetAhead         = push.ResetAhead
	ResetForeignCursor = push.ResetForeignCursor
	ResetInvalidCursor = push.ResetInvalidCursor
	ResetReplicaBehind = push.ResetReplicaBehind
)

// StreamReset names one stream whose history the client cannot get.
type StreamReset = push.StreamReset

// flushThreshold is the buffered frame size that triggers a write mid-batch.
const flushThreshold = 32 << 10

// lineageStart returns the offset before the first event of the stream's
// current epoch (0 for a stream never written).
func lineageStart(in push.StreamInfo) uint64 {
	if in.EpochStart == 0 {
		return 0
	}
	return in.EpochStart - 1
}

// conn is one stream's state, owned by its handler goroutine.
type conn struct {
	s      *Server
	ctx    context.Context
	w      gin.ResponseWriter
	rc     *http.ResponseController
	cur    *push.Cursor
	origin string
	// buf holds frames not yet written. It is borrowed from the server's
	// pool only while there is something to write, so an idle stream holds
	// no write buffer.
	buf []byte
	bp  *[]byte
	// deadline is the write deadline currently armed on the connection.
	deadline time.Time
	// kick ends the stream from outside (takeover, drain, admin).
	kick *kick
	// ls is the stream's entry in the server's table.
	ls *localStream
	// recent, when set, replaces store reads for the streams it holds: the
	// stream was accepted from the recent-events cache while their origin's
	// store was unreachable.
	recent map[push.StreamKey][]*push.Event
	// replayedN counts events written from history.
	replayedN int
	// lat gathers the delivery latencies of the write in progress.
	lat observability.DeliveryTally
}

// handleStream serves GET /v1/stream. Its goroutine holds the stream for as
// long as the stream lives, so it must keep a small stack: Go grows a
// goroutine's stack to the deepest call it has made and shrinks it only
// when a GC finds it mostly unused, and the connect phase (auth, store reads
// through the protection layers and the Redis client, replay, telemetry) is
// deep enough to double it to 16 KiB, which every idle stream would then
// keep. So the connect phase runs on a short-lived goroutine of its own
// (openStream), which hands over the opened stream and exits; only the live
// loop runs here.
func (s *Server) handleStream(c *gin.Context) {
	var st *stream
	onFreshStack(func() { st = s.openStream(c) })
	if st == nil {
		return // answered (refused, shed, redirected) or ended during connect
	}
	defer st.close()
	if st.sub.FanOut() > hub.PacedFanOut {
		growStack(0)
	}
	st.end = st.cn.live(st.sub)
}

// stream is an opened stream: what openStream hands to handleStream.
type stream struct {
	cn  *conn
	sub *hub.Subscriber
	// end is why the stream ended (an End* value), read by cleanups.
	end string
	// cleanups run in reverse order when the stream ends, like defers of
	// the connect phase that must outlive it.
	cleanups []func()
}

func (st *stream) onClose(f func()) { st.cleanups = append(st.cleanups, f) }

func (st *stream) close() {
	for i := len(st.cleanups) - 1; i >= 0; i-- {
		st.cleanups[i]()
	}
	st.cleanups = nil
}

// openStream is the connect phase of a stream: it validates the request,
// authenticates, admits, plans the resume, writes the hello and the
// replay and subscribes. It returns nil when it answered the request
// itself (an error, a shed or a redirect) or the stream ended during it;
// then everything it set up is released.
func (s *Server) openStream(c *gin.Context) *stream {
	st := &stream{}
	opened := false
	defer func() {
		if !opened {
			st.close()
		}
	}()
	r := c.Request
	q := r.URL.Query()
	tel := s.cfg.Telemetry
	result := observability.ConnectRejected
	st.onClose(func() {
		if result != observability.ConnectAccepted { // accepted is counted at once
			tel.Metrics().Connect(r.Context(), result)
		}
	})
	topics := q["topic"]
	if len(topics) == 0 || len(topics) > s.cfg.MaxTopicsPerStream {
		s.writeError(c, errf(http.StatusBadRequest, CodeInvalidQuery,
			fmt.Sprintf("give 1..%d topic parameters", s.cfg.MaxTopicsPerStream)))
		return nil
	}
	for _, t := range topics {
		if err := push.ValidateTopic(t); err != nil {
			s.writeError(c, err)
			return nil
		}
	}
	p, err := s.principal(r, true)
	if err != nil {
		s.writeError(c, err)
		return nil
	}
	for _, t := range topics {
		if !p.CanSubscribe(t) {
			s.writeError(c, errf(http.StatusForbidden, CodeForbidden, "not allowed to subscribe to "+strconv.Quote(t)))
			return nil
		}
	}
	from := q.Get("from")
	if from != "" && from != "latest" && from != "earliest" {
		s.writeError(c, errf(http.StatusBadRequest, CodeInvalidQuery, `from must be "latest" or "earliest"`))
		return nil
	}
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = q.Get("last_event_id")
	}
	cur, err := push.NewCursor(topics, s.origins)
	if err != nil {
		s.writeError(c, err)
		return nil
	}
	var parsed *push.ParsedCursor
	discard := "" // why the client's cursor is not used: a reset reason
	if raw != "" {
		parsed, err = push.ParseCursor(raw, topics, s.origins)
		switch {
		case errors.Is(err, push.ErrForeignCursor):
			discard, parsed = ResetForeignCursor, nil
		case errors.Is(err, push.ErrMalformedCursor) && !isSDKClient(r):
			// A browser EventSource stops for good on any non-200: a
			// cursor it cannot have made (a proxy's id, an older or newer
			// format) must not strand its user. It gets a reset naming
			// the problem and continues where `from` says.
			discard, parsed = ResetInvalidCursor, nil
		case err != nil:
			s.writeError(c, err)
			return nil
		}
	}

	// The session is the cursor's only if it was issued to this principal
	// (ADR 0014): checked here, where the claim is made, on whichever node
	// this is. Anything else — no session, an older cursor without a
	// binding, or another principal's session id — starts a new session;
	// the cursor's positions still count, and the other session is never
	// touched.
	principalID := p.ID()
	session := uint64(0)
	if parsed != nil {
		if tag, ok := parsed.Binding(); ok && s.binder.Verify(parsed.Session(), principalID, tag) {
			session = parsed.Session()
		} else if parsed.Session() != 0 {
			s.log.DebugContext(r.Context(), "stream: cursor's session not bound to this principal, new session", "bound", ok)
		}
	}
	if session == 0 {
		session = newSessionID()
	}
	cur.SetSession(session, s.binder.Bind(session, principalID))
	sid := FormatSessionID(session)

	// A fresh stream turned away is given its position as of now, so that
	// its retry misses nothing published meanwhile (shedCursor).
	fresh := raw == "" && from != "earliest"
	result = observability.ConnectShed
	if dest := s.admit(); dest != "" {
		if dest != "-" {
			result = observability.ConnectRedirected
		}
		s.steer(c, dest, s.shedCursor(r.Context(), cur, fresh, true))
		return nil
	}
	live, done := nop, nop
	if g := s.cfg.Guard; g != nil {
		l, d, err := g.Admit(c.ClientIP())
		if err != nil {
			s.refuse(c, err, s.shedCursor(r.Context(), cur, fresh, true))
			return nil
		}
		live, done = l, d
	}
	st.onClose(done)

	infos, recent, err := s.infos(r.Context(), cur.Topics())
	if err != nil {
		s.log.WarnContext(r.Context(), "stream: store unavailable at connect", "err", err)
		s.refuse(c, err, s.shedCursor(r.Context(), cur, fresh, false))
		return nil
	}
	if parsed != nil {
		resumeAt := time.Now()
		infos = s.awaitReplicas(r.Context(), cur, parsed, infos)
		// Still not the client's lineage, and the replica is re-syncing: a
		// reset now would move the client to whatever the replica holds
		// meanwhile (nothing, or an old lineage) and replay it. Come back
		// later, cursor unchanged (a browser-safe shed: 200 and retry:).
		if origin := s.resyncingOrigin(r.Context(), cur, parsed, infos, resumeAt); origin != "" {
			s.log.DebugContext(r.Context(), "stream: replica re-syncing, resume deferred", "origin", origin)
			result = observability.ConnectShed
			s.shed(c, "")
			return nil
		}
	}

	s.streams.Add(1)
	st.onClose(func() { s.streams.Add(-1) })
	s.connected.Add(1)

	// The session span links to the previous connection of this session
	// (its record's trace, wherever it was served) and to a traceparent the
	// client sent: links, not parents, since both are client-controlled.
	var links []trace.Link
	if tel != nil {
		prev := s.table.endedTrace(sid)
		if cl := s.cfg.Cluster; cl != nil {
			if rec, ok := cl.Lookup(sid); ok && rec.Trace != "" {
				prev = rec.Trace
			}
		}
		for _, tp := range []string{prev, r.Header.Get("traceparent")} {
			if l, ok := observability.LinkFromTraceparent(tp); ok {
				links = append(links, l)
			}
		}
	}
	ctx, span := tel.StartSession(r.Context(), observability.SessionAttrs{
		SessionID: sid, Topics: cur.Topics(), Cursor: raw, Resumed: parsed != nil, Node: s.cfg.Node, Region: s.cfg.Region,
	}, links...)
	traceparent := observability.EventTraceparent(ctx)
	st.end = EndError
	st.onClose(func() {
		span.SetAttributes(attribute.String("herald.disconnect", st.end))
		span.End()
		if st.end == EndSlow {
			s.slowEnded.Add(1)
		}
		s.log.DebugContext(ctx, "stream closed", "session", sid, "reason", st.end)
	})

	// Take the session over: an older stream of it, here or on another
	// node, is closed.
	ls := &localStream{session: sid, topics: cur.Topics(), since: time.Now(), kick: newKick(), trace: traceparent}
	if cl := s.cfg.Cluster; cl != nil {
		kind := observability.OwnershipClaim
		if prev, ok := cl.Lookup(sid); ok && !prev.Ended {
			kind = observability.OwnershipTakeover
		}
		tel.Metrics().OwnershipChange(ctx, kind)
		rec := cl.Claim(sid, cur.Topics(), traceparent)
		ls.incarnation = rec.Incarnation
		st.onClose(func() { cl.Release(sid, rec.Incarnation) })
	} else {
		ls.incarnation = s.table.nextIncarnation()
	}
	s.table.add(ls)
	st.onClose(func() { s.table.remove(ls) })
	// A stream lives no longer than its credential: at expiry it ends with
	// a retry:, and the client comes back with a fresh token.
	if !p.Expires.IsZero() {
		expiry := time.AfterFunc(time.Until(p.Expires), func() { ls.kick.fire(EndAuth, s.finalRetry()) })
		st.onClose(func() { expiry.Stop() })
	}

	// The controller wraps the unwrapped writer: gin's Flush swallows
	// errors, and a failed flush must end the stream with its cause.
	var rw http.ResponseWriter = c.Writer
	if u, ok := c.Writer.(interface{ Unwrap() http.ResponseWriter }); ok {
		rw = u.Unwrap()
	}
	cn := &conn{s: s, ctx: ctx, w: c.Writer, rc: http.NewResponseController(rw), cur: cur, origin: s.store.Origin(), kick: ls.kick, ls: ls}
	if len(recent) > 0 {
		cn.recent = recent
	}
	st.onClose(cn.release)

	resets, upto := s.plan(cur, parsed, discard, from, infos)
	if len(recent) > 0 && (len(resets) > 0 || !resumesEverySlot(parsed)) {
		// Without the store we cannot tell what is lost (never announce a
		// reset we are not sure of) nor where the live head is: only exact
		// resumes are served from the cache.
		s.shed(c, s.shedCursor(r.Context(), cur, fresh, false))
		return nil
	}
	// History reads are the expensive part of a reconnect storm: take a
	// replay slot (bounded wait) before answering, so a refusal can still
	// be a browser-safe shed.
	releaseReplay := nopRelease
	if g := s.cfg.Guard; g != nil && needsReplay(cur, upto) {
		rel, err := g.Replay(r.Context())
		if err != nil {
			s.refuse(c, err, "")
			return nil
		}
		releaseReplay = rel
	}
	st.onClose(releaseReplay)

	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	c.Status(http.StatusOK)
	result = observability.ConnectAccepted
	tel.Metrics().Connect(ctx, result)
	tel.Metrics().StreamOpened(ctx)
	st.onClose(func() { tel.Metrics().StreamClosed(ctx, st.end) })
	st.end = EndClient

	// retry: and herald.hello. The hello carries the client's resume point
	// as its id, unless streams are being reset: then the id is left to the
	// reset event, so a drop in between repeats the same reset.
	cn.grab()
	cn.buf = fmt.Appendf(cn.buf, "retry: %d\n", s.retryMillis())
	hello := push.Hello{
		Session: sid, Node: s.cfg.Node, Origin: cn.origin, Topics: cur.Topics(),
		Resumed: parsed != nil, Durable: s.store.Durable(), Trace: traceparent,
		Alternates: s.alternates(),
	}
	if len(resets) == 0 {
		hello.Cursor = cur.String()
		cn.appendControl(EventHello, hello, true)
	} else {
		cn.appendControl(EventHello, hello, false)
		cn.appendReset(resets)
	}
	if err := cn.flush(); err != nil {
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
			tel.Metrics().Resume(ctx, outcome, cn.replayedN)
		}
	}
	st.onClose(recordResume)

	// Replay history up to the head seen at connect.
	if needsReplay(cur, upto) {
		rctx, rspan := tel.Tracer().Start(ctx, "herald.replay")
		cn.ctx = rctx
		for i := range cur.Len() {
			if upto[i] > cur.At(i).Offset {
				if err := cn.fromStore(i, upto[i], true); err != nil {
					rspan.End()
					st.end = cn.writeEnd(err)
					return nil
				}
			}
		}
		rspan.SetAttributes(attribute.Int("herald.replayed", cn.replayedN))
		rspan.End()
		cn.ctx = ctx
	}
	releaseReplay()
	recordResume()
	// Go live: register, then read once more from our position to close the
	// window between replay and registration.
	sub := hub.NewSubscriber(cur.Topics(), s.cfg.Queue)
	if err := s.hub.Subscribe(r.Context(), sub); err != nil {
		s.log.DebugContext(ctx, "stream: subscribe failed", "err", err)
		return nil
	}
	st.onClose(func() { s.hub.Unsubscribe(sub) })
	ls.sub.Store(sub)
	for i := range cur.Len() {
		if err := cn.fromStore(i, 0, true); err != nil {
			st.end = cn.writeEnd(err)
			return nil
		}
	}
	if err := cn.flush(); err != nil {
		return nil
	}
	cn.recent = nil // from here on, gaps are filled from the store
	live()
	span.SetAttributes(attribute.Int("herald.replayed", cn.replayedN), attribute.Bool("herald.reset", len(resets) > 0))
	st.cn, st.sub = cn, sub
	opened = true
	return st
}

// plan decides, per stream, where the client starts: it sets each slot of
// cur and returns the streams to reset and, per slot, the offset to replay
// up to (0: nothing to replay).
func (s *Server) plan(cur *push.Cursor, parsed *push.ParsedCursor, discard string, from string, infos []push.StreamInfo) ([]StreamReset, []uint64) {
	byKey := make(map[push.StreamKey]push.StreamInfo, len(infos))
	for _, in := range infos {
		byKey[push.StreamKey{Topic: in.Topic, Origin: in.Origin}] = in
	}
	upto := make([]uint64, cur.Len())
	var verified []bool
	var lineage []int // per slot: 0 current epoch, j > 0 its ancestor j (ADR 0022)
	intact := true
	if parsed != nil {
		verified, intact = verifyAgainst(cur, parsed, infos)
		if !intact {
			lineage = resolveLineage(cur, parsed, infos)
		}
	}
	var resets []StreamReset
	for i := range cur.Len() {
		k := cur.Key(i)
		in := byKey[k]
		head := push.Position{Epoch: in.Epoch, Offset: in.Last}
		reset := func(reason string, lostFrom, lostTo uint64) {
			resets = append(resets, StreamReset{Topic: k.Topic, Origin: k.Origin, Reason: reason,
				LostFrom: lostFrom, LostTo: lostTo, Epoch: in.Epoch, ContinueFrom: in.Last + 1})
			cur.SetAt(i, head)
		}
		switch {
		case discard == ResetForeignCursor:
			reset(ResetForeignCursor, 0, 0)
		case discard != "" && from == "earliest":
			// Nothing is known of what the client read: it asked for the
			// whole history, so it gets it, after a reset that says so.
			first := in.First
			if in.Length == 0 {
				first = in.Last + 1
			}
			resets = append(resets, StreamReset{Topic: k.Topic, Origin: k.Origin, Reason: discard,
				Epoch: in.Epoch, ContinueFrom: first})
			cur.SetAt(i, push.Position{Epoch: in.Epoch})
			upto[i] = in.Last
		case discard != "":
			reset(discard, 0, 0)
		case parsed == nil || !parsed.Present(i):
			if from == "earliest" {
				cur.SetAt(i, push.Position{Epoch: in.Epoch})
				upto[i] = in.Last
			} else {
				cur.SetAt(i, head)
			}
		case lineage != nil && lineage[i] > 0 &&
			lineageStep(in, lineage[i], parsed.Offset(i)).Kind == push.ResumeRolledBack:
			// The client read an ancestor epoch past the point where the
			// current lineage forked from it: exactly those offsets no
			// longer exist; the new lineage follows from the fork.
			step := lineageStep(in, lineage[i], parsed.Offset(i))
			reset(ResetEpochChanged, step.LostFrom, step.LostTo)
			resets[len(resets)-1].ContinueFrom = step.ContinueFrom
			cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: step.ContinueFrom - 1})
			upto[i] = in.Last
		case lineage != nil:
			// The client's position is history the current lineage holds
			// (its epoch or an ancestor at or before the fork): it resumes
			// as if nothing had changed.
			s.resumeSlot(cur, i, k, in, parsed.Offset(i), &resets, upto)
		case !verified[i] || (!intact && parsed.Offset(i) > in.Last && k.Origin == s.store.Origin()):
			// The client's epoch is in no lineage this stream records (lost
			// wholesale, or forgotten by a rollback of the record): what it
			// missed there is lost, and nothing proves that any offset it
			// read is history the current lineage shares, so the whole
			// retained stream is new to it (ADR 0022).
			//
			// A local stream never moves back within an epoch, so a client
			// past its head when some stream's epoch changed read that
			// offset in another lineage, even if its 8-bit tag matched.
			reset(ResetEpochChanged, parsed.Offset(i)+1, 0)
			from := unknownLineageRestart(in)
			resets[len(resets)-1].ContinueFrom = from + 1
			cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: from})
			upto[i] = in.Last
		default:
			s.resumeSlot(cur, i, k, in, parsed.Offset(i), &resets, upto)
		}
	}
	return resets, upto
}

// resumeSlot resumes slot i at the client's offset off, which is history
// of in's current lineage, unless retention or the head says otherwise.
func (s *Server) resumeSlot(cur *push.Cursor, i int, k push.StreamKey, in push.StreamInfo, off uint64, resets *[]StreamReset, upto []uint64) {
	first := in.First
	if in.Length == 0 {
		first = in.Last + 1 // nothing retained
	}
	reset := func(reason string, lostFrom, lostTo uint64) {
		*resets = append(*resets, StreamReset{Topic: k.Topic, Origin: k.Origin, Reason: reason,
			LostFrom: lostFrom, LostTo: lostTo, Epoch: in.Epoch, ContinueFrom: in.Last + 1})
		cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: in.Last})
	}
	switch {
	case off > in.Last && k.Origin != s.store.Origin():
		// This region's replica of the origin has not received
		// events the client already has (the origin is down or
		// far behind): the client keeps its position and gets the
		// rest when the replica catches up, or an epoch_changed
		// reset if the origin comes back without them.
		*resets = append(*resets, StreamReset{Topic: k.Topic, Origin: k.Origin, Reason: ResetReplicaBehind,
			LostFrom: in.Last + 1, LostTo: off, Epoch: in.Epoch, ContinueFrom: off + 1})
		cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: off})
	case off > in.Last:
		reset(ResetAhead, in.Last+1, off)
	case off+1 < first:
		reset(ResetTrimmed, off+1, first-1)
	default:
		cur.SetAt(i, push.Position{Epoch: in.Epoch, Offset: off})
		upto[i] = in.Last
	}
}

// live serves queued events until the client leaves, falls behind, or the
// server closes.
func (cn *conn) live(sub *hub.Subscriber) string {
	s := cn.s
	var batch []*hub.Delivery
	// Coalescing under load: when the node is overloaded (its streams'
	// queues grow across writes: overloadDetector, ADR 0020), and the last
	// write went out late (its oldest event waited more than CoalesceLate
	// in the queue, not counting a deliberate hold), carried fewer than
	// coalesceFew events (one syscall per event or so), and the stream's
	// events are published less than half a window apart on average,
	// events arriving within CoalesceWindow of that write wait on hold (a
	// timer made only for streams that get there; at most coalesceGather
	// average gaps, see holdWait) and go out in one write.
	// An unloaded node writes every event at once, and so does a loaded one
	// to streams too slow for a hold to batch.
	var (
		lastWrite time.Time
		lastEvent time.Time // publish time of the newest event written
		// gap is the stream's average time between events (publish
		// times). It starts at the window: a stream proves it is fast
		// over several events before its writes are held.
		gap     = s.cfg.CoalesceWindow
		late    bool
		hold    *time.Timer
		holding bool
		heldFor time.Duration
	)
	defer func() {
		if hold != nil {
			hold.Stop()
		}
	}()
	// The client leaving and the server closing fire the stream's kick
	// rather than having select cases of their own: the loop below runs
	// once per delivery, and every channel in its select costs a lock and
	// a waiter on each pass.
	defer context.AfterFunc(cn.ctx, func() { cn.kick.fire(EndClient, 0) })()
	defer context.AfterFunc(s.closed, func() { cn.kick.fire(EndShutdown, 0) })()
	write := func() string {
		var lagging bool
		now := time.Now()
		if batch, lagging = sub.TakeFresh(batch[:0], now); lagging {
			sub.Close(hub.ReasonSlow)
			s.lagCutoffs.Add(1)
			return EndSlow
		}
		if len(batch) == 0 {
			// The heartbeat's Wake (or a wake whose events an earlier
			// write took): a keep-alive comment when the stream has been
			// silent for half an interval or more.
			heldFor = 0
			if time.Since(lastWrite) < s.cfg.Heartbeat/2 {
				return ""
			}
			cn.grab()
			cn.buf = append(cn.buf, ":\n\n"...)
		} else {
			// Late, the queue is not already batching by itself, and events
			// come at least twice per window on average (a hold then
			// gathers more than one; holding a slower stream only delays
			// it, and so would holding a slow stream's bursts).
			newest := batch[len(batch)-1].Event.Time
			if !lastEvent.IsZero() {
				gap = averageGap(gap, newest.Sub(lastEvent), len(batch))
			}
			lastEvent = newest
			fast := gap < s.cfg.CoalesceWindow/2
			wait := now.Sub(batch[0].At) - heldFor
			late = false
			if s.cfg.CoalesceWindow > 0 {
				s.overload.note(now, behindBy(wait, heldFor, gap, s.cfg.CoalesceLate))
				late = fast && len(batch) < coalesceFew && wait > s.cfg.CoalesceLate &&
					(s.cfg.CoalesceLate < 0 || s.overload.overloaded())
			}
			heldFor = 0
			for _, d := range batch {
				if err := cn.deliver(d, now); err != nil {
					return cn.writeEnd(err)
				}
			}
			if t := s.cfg.Telemetry; t != nil && cn.lat.Len() > 0 {
				t.Metrics().Delivered(&cn.lat)
			}
			s.writes.Add(1)
			clear(batch)
		}
		if err := cn.flush(); err != nil {
			return cn.writeEnd(err)
		}
		lastWrite = time.Now()
		cn.ls.wrote.Store(lastWrite.UnixNano())
		return ""
	}
	for {
		ready := sub.Ready()
		var held <-chan time.Time
		if holding {
			ready, held = nil, hold.C
		}
		select {
		case <-sub.Done():
			if sub.Reason() == hub.ReasonSlow {
				return EndSlow
			}
			return EndShutdown
		case <-cn.kick.ch:
			if cn.kick.reason == EndEvacuate {
				cn.grab()
				cn.appendControl(push.EventMoved, push.Moved{Reason: "evacuation", Alternates: s.alternates()}, false)
			}
			if cn.kick.retry > 0 {
				cn.grab()
				cn.buf = fmt.Appendf(cn.buf, "retry: %d\n\n", cn.kick.retry.Milliseconds())
				_ = cn.flush()
			}
			return cn.kick.reason
		case <-held:
			holding = false
			if end := write(); end != "" {
				return end
			}
		case <-ready:
			// A heartbeat's wake of a late stream is held like events
			// (the queue is not looked at here: that would be one more
			// lock per wake); its keep-alive, if due, follows the hold.
			if w := s.cfg.CoalesceWindow; w > 0 && late {
				if wait := holdWait(w, time.Since(lastWrite), gap); wait > 0 {
					heldFor = wait
					if hold == nil {
						hold = time.NewTimer(wait)
					} else {
						hold.Reset(wait)
					}
					holding = true
					s.holds.Add(1)
					continue
				}
			}
			if end := write(); end != "" {
				return end
			}
		}
	}
}

// averageGap folds n more events, published over span after the previous
// newest one, into avg, a moving average of the time between a stream's
// events that weighs each event 1/8. Publish times from several topics or
// origins need not be ordered: a negative span counts as no gap.
func averageGap(avg, span time.Duration, n int) time.Duration {
	g := max(span, 0) / time.Duration(max(n, 1))
	for range min(n, 16) { // after 16 events the old average weighs < 12%
		avg += (g - avg) / 8
	}
	return avg
}

// holdWait is how long a late, fast stream's next write waits: until the
// window after its last write ends, but no longer than it takes the stream
// to publish about coalesceGather events at its average gap. A stream whose
// queue already batches (events microseconds apart, as when publishers
// send batches) gathers enough in a few milliseconds; holding it for the
// whole window would only add latency to thousands of events.
func holdWait(window, sinceWrite, gap time.Duration) time.Duration {
	return min(window-sinceWrite, coalesceGather*gap)
}

// coalesceGather is how many events, at its average gap, a hold waits for.
const coalesceGather = 16

// coalesceFew: a late write of at least this many events already batches;
// holding it back would only add latency.
const coalesceFew = 4

// writeEnd names why a write failed: too slow to take it within the write
// deadline, the client left, or something else (a store read failed).
func (cn *conn) writeEnd(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return EndSlow
	case cn.ctx.Err() != nil:
		return EndClient
	}
	return EndError
}

// deliver writes one live delivery, dropping what the client already has,
// filling an offset jump from the store, and announcing an epoch change.
// now is the time of the write it belongs to.
func (cn *conn) deliver(d *hub.Delivery, now time.Time) error {
	ev := d.Event
	i := cn.cur.Index(ev.Topic, ev.Origin)
	if i < 0 {
		return nil
	}
	pos := cn.cur.At(i)
	if pos.Epoch != ev.Epoch {
		if pos.Epoch == "" {
			// The stream did not exist at connect: everything is new.
			cn.cur.SetAt(i, push.Position{Epoch: ev.Epoch})
		} else if drop, err := cn.crossLineage(i, pos, ev); err != nil || drop {
			// Another lineage (ADR 0022): continue through history the
			// new epoch holds, reset exactly what it does not, or drop an
			// event of a lineage the stream has left.
			return err
		}
		pos = cn.cur.At(i)
	}
	if ev.Offset <= pos.Offset {
		return nil
	}
	if ev.Offset > pos.Offset+1 {
		if err := cn.fromStore(i, ev.Offset-1, false); err != nil {
			return err
		}
		if cn.cur.At(i).Offset >= ev.Offset {
			return nil
		}
	}
	cn.cur.SetAt(i, push.Position{Epoch: ev.Epoch, Offset: ev.Offset})
	if cn.cur.Len() == 1 && cn.cur.Session() == 0 {
		cn.appendFrameID(d.SoleID(cn.cur.AppendEncode), d.Body)
	} else {
		cn.appendFrame(d.Body)
	}
	cn.s.delivered.Add(1)
	if t := cn.s.cfg.Telemetry; t != nil {
		// The latency is tallied here and recorded once per write. It
		// becomes an exemplar only when this delivery has a span of its
		// own: the connection's long session span points nowhere useful.
		lat := now.Sub(ev.Time)
		cn.lat.Add(lat)
		if ev.TraceParent != "" {
			sctx, span := t.StartDelivery(cn.ctx, ev.TraceParent, observability.DeliveryAttrs{Topic: ev.Topic, Origin: ev.Origin, Offset: int64(ev.Offset)})
			if span.IsRecording() {
				t.Metrics().DeliveryExemplar(sctx, lat)
			}
			defer span.End()
		}
	}
	return cn.maybeFlush()
}

// fromStore writes slot i's events after its position from the store, up to
// offset upto (0: up to the head). A hole in history (trimmed while we read)
// becomes a reset; a changed epoch ends the connection so the client's next
// connect resolves it against a fresh snapshot.
func (cn *conn) fromStore(i int, upto uint64, replay bool) error {
	s := cn.s
	k := cn.cur.Key(i)
	if _, ok := cn.recent[k]; ok {
		return cn.fromRecent(i, upto)
	}
	st := s.stores[k.Origin]
	for upto == 0 || cn.cur.At(i).Offset < upto {
		pos := cn.cur.At(i)
		n := s.cfg.ReplayPage
		if upto > 0 {
			n = int(min(uint64(n), upto-pos.Offset))
		}
		ctx, cancel := context.WithTimeout(cn.ctx, 5*time.Second)
		evs, in, err := st.Read(ctx, k.Topic, pos.Offset, n)
		cancel()
		if err != nil {
			return err
		}
		if pos.Epoch != "" && in.Epoch != pos.Epoch {
			if push.Resume(in, pos.Epoch, pos.Offset).Kind != push.ResumeContinue {
				return fmt.Errorf("epoch of %v changed while reading", k)
			}
			// A new epoch forked at or after our position: what follows
			// is its history, nothing the client saw is gone.
			pos.Epoch = in.Epoch
			cn.cur.SetAt(i, pos)
		}
		if len(evs) == 0 {
			if upto > 0 && in.Last < upto {
				return fmt.Errorf("%v: head %d below expected %d", k, in.Last, upto)
			}
			return nil
		}
		for j := range evs {
			e := &evs[j]
			if upto > 0 && e.Offset > upto {
				break
			}
			if e.Offset > pos.Offset+1 {
				cn.appendReset([]StreamReset{{Topic: k.Topic, Origin: k.Origin, Reason: ResetTrimmed, LostFrom: pos.Offset + 1, LostTo: e.Offset - 1, Epoch: in.Epoch}})
			}
			pos = push.Position{Epoch: in.Epoch, Offset: e.Offset}
			cn.cur.SetAt(i, pos)
			cn.appendFrameEvent(e)
			s.delivered.Add(1)
			if replay {
				s.replayed.Add(1)
				cn.replayedN++
			}
			if t := s.cfg.Telemetry; t != nil && e.TraceParent != "" {
				_, span := t.StartDelivery(cn.ctx, e.TraceParent, observability.DeliveryAttrs{Topic: e.Topic, Origin: e.Origin, Offset: int64(e.Offset)})
				span.End()
			}
			if err := cn.maybeFlush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// grab borrows a write buffer if the connection holds none.
func (cn *conn) grab() {
	if cn.bp == nil {
		cn.bp = cn.s.bufs.Get().(*[]byte)
		cn.buf = (*cn.bp)[:0]
	}
}

// release returns the write buffer to the pool (oversized ones are dropped).
func (cn *conn) release() {
	if cn.bp == nil {
		return
	}
	if cap(cn.buf) <= 64<<10 {
		*cn.bp = cn.buf[:0]
		cn.s.bufs.Put(cn.bp)
	}
	cn.bp, cn.buf = nil, nil
}

func (cn *conn) appendFrame(body []byte) {
	cn.grab()
	cn.buf = append(cn.buf, "id: "...)
	cn.buf = cn.cur.AppendEncode(cn.buf)
	cn.buf = append(cn.buf, '\n')
	cn.buf = append(cn.buf, body...)
	cn.buf = append(cn.buf, '\n')
}

// appendFrameID is appendFrame with the cursor already encoded as id.
func (cn *conn) appendFrameID(id, body []byte) {
	cn.grab()
	cn.buf = append(cn.buf, "id: "...)
	cn.buf = append(cn.buf, id...)
	cn.buf = append(cn.buf, '\n')
	cn.buf = append(cn.buf, body...)
	cn.buf = append(cn.buf, '\n')
}

func (cn *conn) appendFrameEvent(e *push.Event) {
	cn.grab()
	cn.buf = append(cn.buf, "id: "...)
	cn.buf = cn.cur.AppendEncode(cn.buf)
	cn.buf = append(cn.buf, '\n')
	cn.buf = sse.AppendBody(cn.buf, e.Type, e.Data)
	cn.buf = append(cn.buf, '\n')
}

// appendControl appends a herald.* event, with the current cursor as id if withID.
func (cn *conn) appendControl(typ string, v any, withID bool) {
	data, _ := json.Marshal(v) // plain structs: cannot fail
	cn.grab()
	if withID {
		cn.buf = append(cn.buf, "id: "...)
		cn.buf = cn.cur.AppendEncode(cn.buf)
		cn.buf = append(cn.buf, '\n')
	}
	cn.buf = sse.AppendBody(cn.buf, typ, data)
	cn.buf = append(cn.buf, '\n')
}

// appendReset appends one herald.reset naming every stream in rs; its id is
// the cursor after the reset, so the reset is delivered exactly once.
func (cn *conn) appendReset(rs []StreamReset) {
	cn.s.resets.Add(1)
	cn.appendControl(EventReset, push.Reset{Streams: rs}, true)
}

func (cn *conn) maybeFlush() error {
	if len(cn.buf) >= flushThreshold {
		return cn.flush()
	}
	return nil
}

// flush writes the buffered frames under a write deadline. Re-arming the
// deadline costs a timer update per write, so it is re-armed only when less
// than half of WriteTimeout remains: a write that stalls still fails within
// WriteTimeout.
func (cn *conn) flush() error {
	if len(cn.buf) == 0 {
		return nil
	}
	if now := time.Now(); cn.deadline.Sub(now) < cn.s.cfg.WriteTimeout/2 {
		cn.deadline = now.Add(cn.s.cfg.WriteTimeout)
		_ = cn.rc.SetWriteDeadline(cn.deadline)
	}
	_, err := cn.w.Write(cn.buf)
	if err == nil {
		err = cn.rc.Flush()
	}
	cn.release()
	return err
}

// shed refuses a stream in a way every client retries: 200, a jittered
// retry:, and an immediate close. (A native EventSource gives up for good on
// any non-200 status.) A non-empty id (shedCursor) goes out as the block's
// id:, which the client's retry sends back as Last-Event-ID.
func (s *Server) shed(c *gin.Context, id string) { s.shedWith(c, s.retryMillis(), id) }

func (s *Server) shedWith(c *gin.Context, retryMillis int64, id string) {
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	c.Status(http.StatusOK)
	if id != "" {
		_, _ = fmt.Fprintf(c.Writer, "retry: %d\nid: %s\n\n", retryMillis, id)
	} else {
		_, _ = fmt.Fprintf(c.Writer, "retry: %d\n\n", retryMillis)
	}
	c.Writer.Flush()
}

// shedLookupTimeout bounds the store lookup of the heads the hub does not
// know, when a fresh stream is turned away.
const shedLookupTimeout = 250 * time.Millisecond

// shedCursor is the cursor a fresh stream (fresh: no Last-Event-ID, not
// from=earliest) gets when it is turned away (ADR 0020): its topics' heads
// as of this attempt, carrying cur's session and binding. Its retry sends
// it back and starts there, not at the head of the moment it is admitted,
// so it misses nothing published in between. "" for other streams: they
// retry with their own cursor (or replay the whole history).
//
// Heads come from the hub, which knows them for every topic with local
// subscribers at no cost; a head the hub may lag by events still being
// announced only means the retry replays those too. Heads it does not
// know are looked up in the store when lookup is set (one bounded Info per
// origin); an origin whose heads stay unknown is left out of the cursor,
// and its streams start at the head at admission, as without a cursor.
func (s *Server) shedCursor(ctx context.Context, cur *push.Cursor, fresh, lookup bool) string {
	if !fresh {
		return ""
	}
	topics := cur.Topics()
	var (
		known []string        // origins whose every head is known
		heads []push.Position // by known origin, then topic
		pos   = make([]push.Position, len(topics))
	)
	for _, o := range cur.Origins() {
		var missing []string
		for ti, t := range topics {
			p, ok := s.hub.Head(t, o)
			if !ok {
				missing = append(missing, t)
			}
			pos[ti] = p
		}
		if len(missing) > 0 {
			if !lookup {
				continue
			}
			lctx, cancel := context.WithTimeout(ctx, shedLookupTimeout)
			infos, err := s.stores[o].Info(lctx, missing)
			cancel()
			if err != nil {
				continue
			}
			found := 0
			for _, in := range infos {
				if ti, ok := slices.BinarySearch(topics, in.Topic); ok && slices.Contains(missing, in.Topic) {
					pos[ti] = push.Position{Epoch: in.Epoch, Offset: in.Last}
					found++
				}
			}
			if found < len(missing) {
				continue // the store did not answer for every topic
			}
		}
		known = append(known, o)
		heads = append(heads, pos...)
	}
	if len(known) == 0 {
		return ""
	}
	sc, err := push.NewCursor(topics, known)
	if err != nil {
		return ""
	}
	for i := range sc.Len() {
		k := sc.Key(i)
		ti, _ := slices.BinarySearch(topics, k.Topic)
		sc.SetAt(i, heads[slices.Index(known, k.Origin)*len(topics)+ti])
	}
	sc.SetSession(cur.Session(), cur.Binding())
	return sc.String()
}

func (s *Server) retryMillis() int64 {
	lo, hi := s.cfg.RetryMin.Milliseconds(), s.cfg.RetryMax.Milliseconds()
	if hi <= lo {
		return lo
	}
	return lo + rand.Int64N(hi-lo+1)
}

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

// infos describes the topics' streams of every origin. An origin whose
// store is unreachable is described from the hub's recent-events cache
// (returned, by stream, for the reads); when the cache does not hold all
// its topics, the error is returned.
func (s *Server) infos(ctx context.Context, topics []string) ([]push.StreamInfo, map[push.StreamKey][]*push.Event, error) {
	var infos []push.StreamInfo
	var recent map[push.StreamKey][]*push.Event
	for _, origin := range s.origins {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		in, err := s.stores[origin].Info(ictx, topics)
		cancel()
		if err == nil {
			infos = append(infos, in...)
			continue
		}
		// The store is away: a resume this node's recent-events cache
		// covers is served from it; anything else comes back later.
		in, evs := s.recentInfos(topics, origin)
		if evs == nil {
			return nil, nil, fmt.Errorf("origin %s: %w", origin, err)
		}
		infos = append(infos, in...)
		if recent == nil {
			recent = make(map[push.StreamKey][]*push.Event)
		}
		for t, e := range evs {
			recent[push.StreamKey{Topic: t, Origin: origin}] = e
		}
	}
	return infos, recent, nil
}

// verifyAgainst verifies the client's cursor against the streams' current
// epochs and where those epochs begin.
func verifyAgainst(cur *push.Cursor, parsed *push.ParsedCursor, infos []push.StreamInfo) (verified []bool, intact bool) {
	epochs := make([]string, cur.Len())
	starts := make([]uint64, cur.Len())
	for _, in := range infos {
		if i := cur.Index(in.Topic, in.Origin); i >= 0 {
			epochs[i], starts[i] = in.Epoch, lineageStart(in)
		}
	}
	return parsed.VerifyLineages(epochs, starts)
}

// unverifiedRemotes returns the remote origins whose epoch in infos does
// not verify against the client's cursor, for slots the client has read.
func (s *Server) unverifiedRemotes(cur *push.Cursor, parsed *push.ParsedCursor, infos []push.StreamInfo) map[string]bool {
	verified, intact := verifyAgainst(cur, parsed, infos)
	if !intact && resolveLineage(cur, parsed, infos) != nil {
		return nil // every slot's epoch is in its stream's lineage
	}
	var out map[string]bool
	for i := range cur.Len() {
		k := cur.Key(i)
		if k.Origin == s.store.Origin() || !parsed.Present(i) || verified[i] {
			continue
		}
		if out == nil {
			out = make(map[string]bool)
		}
		out[k.Origin] = true
	}
	return out
}

// resyncingOrigin returns a remote origin whose replica does not know the
// client's epoch and is re-syncing (replicaResyncing) or has not received
// its origin's heartbeats up to the resume (replicaBehindSince), or "".
func (s *Server) resyncingOrigin(ctx context.Context, cur *push.Cursor, parsed *push.ParsedCursor, infos []push.StreamInfo, since time.Time) string {
	for origin := range s.unverifiedRemotes(cur, parsed, infos) {
		if s.replicaResyncing(ctx, origin) || s.replicaBehindSince(ctx, origin, since) {
			return origin
		}
	}
	return ""
}

// awaitReplicas gives the replicas of remote origins that are behind the
// client's cursor a short while (Config.ReplicaWait) to catch up, and
// returns the infos refreshed. Streams still behind are answered with a
// replica_behind reset by plan.
func (s *Server) awaitReplicas(ctx context.Context, cur *push.Cursor, parsed *push.ParsedCursor, infos []push.StreamInfo) []push.StreamInfo {
	// A replica is behind the client when it lacks offsets the client has,
	// or when it does not know the client's epoch: the client may come from
	// the origin's primary after a restart or failover began a lineage the
	// replica has not received yet. Answering that with epoch_changed would
	// move the client back to the old lineage, and later forward again,
	// replaying the new one from its start; so the replica gets the same
	// short wait. (A replica that is current with a lineage the client
	// never saw costs the wait before the reset; nothing in an epoch tells
	// which of the two is older.)
	behind := func() map[string]bool {
		out := s.unverifiedRemotes(cur, parsed, infos)
		for _, in := range infos {
			if in.Origin == s.store.Origin() {
				continue
			}
			i := cur.Index(in.Topic, in.Origin)
			if i >= 0 && parsed.Present(i) && parsed.Offset(i) > in.Last {
				if out == nil {
					out = make(map[string]bool)
				}
				out[in.Origin] = true
			}
		}
		return out
	}
	waiting := behind()
	if len(waiting) == 0 {
		return infos
	}
	deadline := time.Now().Add(s.cfg.ReplicaWait)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for len(waiting) > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return infos
		case <-s.closing:
			return infos
		case <-t.C:
		}
		for origin := range waiting {
			ictx, cancel := context.WithTimeout(ctx, time.Second)
			fresh, err := s.stores[origin].Info(ictx, cur.Topics())
			cancel()
			if err != nil {
				continue
			}
			for j, in := range infos {
				if in.Origin == origin {
					for _, f := range fresh {
						if f.Topic == in.Topic {
							infos[j] = f
						}
					}
				}
			}
		}
		waiting = behind()
	}
	return infos
}

// recentInfos describes (topic, origin) streams from the hub's recent-events
// cache, or returns nil when the cache does not hold every topic.
func (s *Server) recentInfos(topics []string, origin string) ([]push.StreamInfo, map[string][]*push.Event) {
	infos := make([]push.StreamInfo, 0, len(topics))
	recent := make(map[string][]*push.Event, len(topics))
	for _, t := range topics {
		evs, ok := s.hub.Recent(t, origin)
		if !ok {
			return nil, nil
		}
		first, last := evs[0], evs[len(evs)-1]
		infos = append(infos, push.StreamInfo{Topic: t, Origin: origin, Epoch: last.Epoch,
			First: first.Offset, Last: last.Offset, Length: int64(len(evs))})
		recent[t] = evs
	}
	return infos, recent
}

// fromRecent is fromStore served from the recent-events cache.
func (cn *conn) fromRecent(i int, upto uint64) error {
	k := cn.cur.Key(i)
	for _, e := range cn.recent[k] {
		pos := cn.cur.At(i)
		if e.Offset <= pos.Offset {
			continue
		}
		if upto > 0 && e.Offset > upto {
			break
		}
		if e.Offset != pos.Offset+1 || (pos.Epoch != "" && e.Epoch != pos.Epoch) {
			return fmt.Errorf("%v: recent-events cache does not continue at %d", k, pos.Offset)
		}
		cn.cur.SetAt(i, push.Position{Epoch: e.Epoch, Offset: e.Offset})
		cn.appendFrameEvent(e)
		cn.s.delivered.Add(1)
		cn.s.replayed.Add(1)
		cn.replayedN++
		if err := cn.maybeFlush(); err != nil {
			return err
		}
	}
	return nil
}

// resumesEverySlot reports whether the client's cursor names a position
// for every slot.
func resumesEverySlot(p *push.ParsedCursor) bool {
	if p == nil {
		return false
	}
	for i := range p.Len() {
		if !p.Present(i) {
			return false
		}
	}
	return true
}

// needsReplay reports whether any slot has history to replay.
func needsReplay(cur *push.Cursor, upto []uint64) bool {
	for i, u := range upto {
		if u > cur.At(i).Offset {
			return true
		}
	}
	return false
}

// refuse turns a protection layer's refusal of a new stream into a
// browser-safe shed (200, retry: at least the refusal's delay, jittered,
// close), or 503 + Retry-After for declared SDK clients.
func (s *Server) refuse(c *gin.Context, err error, id string) {
	s.log.Debug("stream refused", "err", err)
	ra := retryAfterOf(err)
	if isSDKClient(c.Request) {
		s.writeError(c, &apiError{Status: http.StatusServiceUnavailable, Code: CodeOverloaded,
			Message: "this node is not taking new streams now; retry after the Retry-After delay", RetryAfter: ra, Cursor: id})
		return
	}
	ms := int64(ra) * 1000
	s.shedWith(c, ms+rand.Int64N(ms+1), id)
}

// steer sends a new stream elsewhere: a 307 to a peer's base URL (same
// path and query; browsers keep Last-Event-ID across the redirect), or,
// with no peer ("-"), a browser-safe shed. SDK clients that declare
// themselves with the Herald-Client header get 503 + Retry-After instead.
func (s *Server) steer(c *gin.Context, dest, id string) {
	if dest != "-" {
		u := *c.Request.URL
		if id != "" {
			// A fresh stream has no Last-Event-ID for the browser to keep
			// across the redirect: the cursor goes in the query.
			q := u.Query()
			q.Set("last_event_id", id)
			u.RawQuery = q.Encode()
		}
		c.Redirect(http.StatusTemporaryRedirect, strings.TrimRight(dest, "/")+u.RequestURI())
		return
	}
	if isSDKClient(c.Request) {
		code := CodeOverloaded
		var alts []string
		switch {
		case s.evacuating.Load():
			code, alts = CodeEvacuating, s.alternates()
		case s.draining.Load(), s.closed.Err() != nil:
			code = CodeDraining
		}
		s.writeError(c, &apiError{Status: http.StatusServiceUnavailable, Code: code,
			Message: "this node is not taking new streams; retry", RetryAfter: int(max(1, s.retryMillis()/1000)), Alternates: alts, Cursor: id})
		return
	}
	s.shed(c, id)
}

// isSDKClient reports whether the request comes from a client that says it
// handles HTTP errors itself (the Herald-Client header; a browser
// EventSource cannot send it): it gets 4xx/503 answers where a browser gets
// a 200 with the same information in band.
func isSDKClient(r *http.Request) bool { return r.Header.Get("Herald-Client") != "" }
