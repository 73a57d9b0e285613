package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
)

// flushThreshold is the buffered frame size that triggers a write mid-batch.
const flushThreshold = 32 << 10

// Env is what a node's streams share: their configuration, the stores
// they read, the hub that feeds them and the node's counters.
type Env struct {
	Config Config
	// Local is this region's origin.
	Local string
	// Stores holds every origin's store, the local one included.
	Stores map[string]push.Store
	Hub    *hub.Hub
	// Telemetry records traces and metrics; nil records nothing.
	Telemetry *observability.Telemetry
	Counters  *Counters
	Overload  *Overload
	// Closed is done when the node closes: its streams end.
	Closed context.Context
	// Alternates returns the endpoints of other serving regions (for
	// herald.hello and herald.moved); nil means none.
	Alternates func() []string
}

func (e *Env) alternates() []string {
	if e.Alternates == nil {
		return nil
	}
	return e.Alternates()
}

// Stream is one subscriber's stream, owned by one goroutine.
type Stream struct {
	env *Env
	ctx context.Context
	w   Writer
	cur *push.Cursor
	h   *Handle
	sub *hub.Subscriber
	// recent, when set, replaces store reads for the streams it holds: the
	// stream was accepted from the recent-events cache while their origin's
	// store was unreachable.
	recent map[push.StreamKey][]*push.Event
	// replayed counts events written from history.
	replayed int
	// lat gathers the delivery latencies of the write in progress.
	lat observability.DeliveryTally
}

// New returns a stream writing to w from cur, reached from outside through
// h. ctx is the stream's (it carries its session span); recent is the
// recent-events cache Env.Infos returned, nil when every store answered.
func New(env *Env, ctx context.Context, w Writer, cur *push.Cursor, h *Handle, recent map[push.StreamKey][]*push.Event) *Stream {
	if len(recent) == 0 {
		recent = nil
	}
	return &Stream{env: env, ctx: ctx, w: w, cur: cur, h: h, recent: recent}
}

// Cursor is the stream's position (owned by the stream's goroutine).
func (st *Stream) Cursor() *push.Cursor { return st.cur }

// Kick ends the stream from outside its goroutine (see Kick.Fire).
func (st *Stream) Kick(reason string, retry time.Duration) bool { return st.h.Kick.Fire(reason, retry) }

// Replayed is the number of events written from history so far.
func (st *Stream) Replayed() int { return st.replayed }

// Hello writes the stream's herald.hello and, when streams are reset, one
// herald.reset naming them, and flushes. The hello carries the client's
// resume point as its id unless streams are being reset: then the id is
// left to the reset, so a drop in between repeats the same reset.
func (st *Stream) Hello(h push.Hello, resets []push.StreamReset) error {
	h.Alternates = st.env.alternates()
	// The hello's JSON is appended by hand (push.Hello.AppendJSON, the
	// bytes encoding/json would write): every connect writes one.
	data := make([]byte, 0, 256)
	if len(resets) == 0 {
		h.Cursor = st.cur.String()
		st.w.Control(st.cur, push.EventHello, h.AppendJSON(data))
	} else {
		st.w.Control(nil, push.EventHello, h.AppendJSON(data))
		st.reset(resets)
	}
	return st.flush()
}

// Replay writes the history d plans, up to the heads seen at connect; on
// failure it returns the reason the stream ends.
func (st *Stream) Replay(d Decision) (end string) {
	if !d.Replays(st.cur) {
		return ""
	}
	ctx := st.ctx
	rctx, rspan := st.env.Telemetry.Tracer().Start(ctx, "herald.replay")
	st.ctx = rctx
	defer func() {
		rspan.SetAttributes(attribute.Int("herald.replayed", st.replayed))
		rspan.End()
		st.ctx = ctx
	}()
	for i := range st.cur.Len() {
		if d.Upto[i] > st.cur.At(i).Offset {
			if err := st.fromStore(i, d.Upto[i], true); err != nil {
				return st.writeEnd(err)
			}
		}
	}
	return ""
}

// Subscribe goes live: it registers with the hub, then reads once more
// from the stream's position to close the window between replay and
// registration, unless the hub already stood there (seamClosed). Unsubscribe undoes it (also after an error). On failure
// it returns the error and, when it knows it, the reason the stream ends.
func (st *Stream) Subscribe(ctx context.Context) (end string, err error) {
	sub := hub.NewSubscriber(st.cur.Topics(), st.env.Config.Queue)
	if err := st.env.Hub.Subscribe(ctx, sub); err != nil {
		return "", err
	}
	st.sub = sub
	st.h.sub.Store(sub)
	for i := range st.cur.Len() {
		if seamClosed(sub, st.cur, i) {
			continue
		}
		if err := st.fromStore(i, 0, true); err != nil {
			return st.writeEnd(err), err
		}
	}
	if err := st.flush(); err != nil {
		return "", err
	}
	st.recent = nil // from here on, gaps are filled from the store
	return "", nil
}

// Unsubscribe leaves the hub.
func (st *Stream) Unsubscribe() {
	if st.sub != nil {
		st.env.Hub.Unsubscribe(st.sub)
	}
}

// FanOut is the largest fan-out among the stream's topics (see
// hub.Subscriber.FanOut).
func (st *Stream) FanOut() int { return st.sub.FanOut() }

// Live serves queued events until the client leaves, falls behind, is
// kicked, or the node closes, and returns why the stream ended.
func (st *Stream) Live() string {
	env, sub, cfg := st.env, st.sub, &st.env.Config
	var batch []*hub.Delivery
	co := newCoalescer(cfg.CoalesceWindow, cfg.CoalesceLate, env.Overload, func() { env.Counters.Holds.Add(1) })
	defer co.stop()
	// The client leaving and the node closing fire the stream's kick
	// rather than having select cases of their own: the loop below runs
	// once per delivery, and every channel in its select costs a lock and
	// a waiter on each pass.
	kick := st.h.Kick
	defer context.AfterFunc(st.ctx, func() { kick.Fire(EndClient, 0) })()
	defer context.AfterFunc(env.Closed, func() { kick.Fire(EndShutdown, 0) })()
	write := func() string {
		var lagging bool
		now := time.Now()
		if batch, lagging = sub.TakeFresh(batch[:0], now); lagging {
			sub.Close(hub.ReasonSlow)
			env.Counters.LagCutoffs.Add(1)
			return EndSlow
		}
		if len(batch) == 0 {
			// The heartbeat's Wake (or a wake whose events an earlier
			// write took): a keep-alive when the stream has been silent
			// for half an interval or more.
			co.idle()
			if co.sinceWrite() < cfg.Heartbeat/2 {
				return ""
			}
			st.w.KeepAlive()
		} else {
			co.batch(batch, now)
			for _, d := range batch {
				if err := st.deliver(d, now); err != nil {
					return st.writeEnd(err)
				}
			}
			if t := env.Telemetry; t != nil && st.lat.Len() > 0 {
				t.Metrics().Delivered(&st.lat)
			}
			env.Counters.Writes.Add(1)
			clear(batch)
		}
		if err := st.flush(); err != nil {
			return st.writeEnd(err)
		}
		at := time.Now()
		co.wrote(at)
		st.h.wrote.Store(at.UnixNano())
		return ""
	}
	for {
		ready, held := sub.Ready(), co.held()
		if held != nil {
			ready = nil
		}
		select {
		case <-sub.Done():
			if sub.Reason() == hub.ReasonSlow {
				return EndSlow
			}
			return EndShutdown
		case <-kick.Done():
			if kick.Reason() == EndEvacuate {
				st.control(push.EventMoved, push.Moved{Reason: "evacuation", Alternates: env.alternates()}, false)
			}
			if r := kick.Retry(); r > 0 {
				st.w.Retry(r)
				_ = st.flush()
			}
			return kick.Reason()
		case <-held:
			co.endHold()
			if end := write(); end != "" {
				return end
			}
		case <-ready:
			if co.ready() {
				continue
			}
			if end := write(); end != "" {
				return end
			}
		}
	}
}

// writeEnd names why a write failed: too slow to take it within the write
// deadline, the client left, or something else (a store read failed).
func (st *Stream) writeEnd(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return EndSlow
	case st.ctx.Err() != nil:
		return EndClient
	}
	return EndError
}

// control writes a herald.* event, with the current cursor as id if withID.
func (st *Stream) control(typ string, v any, withID bool) {
	data, _ := json.Marshal(v) // plain structs: cannot fail
	var cur *push.Cursor
	if withID {
		cur = st.cur
	}
	st.w.Control(cur, typ, data)
}

// reset writes one herald.reset naming every stream in rs; its id is the
// cursor after the reset, so the reset is delivered exactly once.
func (st *Stream) reset(rs []push.StreamReset) {
	st.env.Counters.Resets.Add(1)
	st.control(push.EventReset, push.Reset{Streams: rs}, true)
}

func (st *Stream) maybeFlush() error {
	if st.w.Buffered() >= flushThreshold {
		return st.flush()
	}
	return nil
}

// flush writes the buffered frames. Once the stream is subscribed, the
// write is timed on its subscriber: the time a write blocks (the client not
// draining its socket) is the lag the queue's MaxLag bounds, and the time
// the stream's goroutine waits for a CPU is not (ADR 0034).
func (st *Stream) flush() error {
	if st.sub == nil {
		return st.w.Flush()
	}
	st.sub.Writing(time.Now())
	err := st.w.Flush()
	st.sub.Wrote(time.Now())
	return err
}

// deliver writes one live delivery, dropping what the client already has,
// filling an offset jump from the store, and announcing an epoch change.
// now is the time of the write it belongs to.
func (st *Stream) deliver(d *hub.Delivery, now time.Time) error {
	ev := d.Event
	i := st.cur.Index(ev.Topic, ev.Origin)
	if i < 0 {
		return nil
	}
	pos := st.cur.At(i)
	if pos.Epoch != ev.Epoch {
		if pos.Epoch == "" {
			// The stream did not exist at connect: everything is new.
			st.cur.SetAt(i, push.Position{Epoch: ev.Epoch})
		} else if drop, err := st.crossLineage(i, pos, ev); err != nil || drop {
			// Another lineage (ADR 0024): continue through history the
			// new epoch holds, reset exactly what it does not, or drop an
			// event of a lineage the stream has left.
			return err
		}
		pos = st.cur.At(i)
	}
	if ev.Offset <= pos.Offset {
		return nil
	}
	if ev.Offset > pos.Offset+1 {
		if err := st.fromStore(i, ev.Offset-1, false); err != nil {
			return err
		}
		if st.cur.At(i).Offset >= ev.Offset {
			return nil
		}
		if st.cur.At(i).Epoch != ev.Epoch {
			// The fill moved into a newer epoch (ADR 0024): ev is of a
			// lineage the stream has left, and the event at its offset
			// is the store's, not ev.
			return st.fromStore(i, ev.Offset, false)
		}
	}
	st.cur.SetAt(i, push.Position{Epoch: ev.Epoch, Offset: ev.Offset})
	st.w.Delivery(st.cur, d)
	st.env.Counters.Delivered.Add(1)
	if t := st.env.Telemetry; t != nil {
		// The latency is tallied here and recorded once per write. It
		// becomes an exemplar only when this delivery has a span of its
		// own: the connection's long session span points nowhere useful.
		lat := now.Sub(ev.Time)
		st.lat.Add(lat)
		if ev.TraceParent != "" {
			sctx, span := t.StartDelivery(st.ctx, ev.TraceParent, observability.DeliveryAttrs{Topic: ev.Topic, Origin: ev.Origin, Offset: int64(ev.Offset)})
			if span.IsRecording() {
				t.Metrics().DeliveryExemplar(sctx, lat)
			}
			defer span.End()
		}
	}
	return st.maybeFlush()
}

// fromStore writes slot i's events after its position from the store, up to
// offset upto (0: up to the head). A hole in history (trimmed while we read)
// becomes a reset; a changed epoch ends the connection so the client's next
// connect resolves it against a fresh snapshot.
func (st *Stream) fromStore(i int, upto uint64, replay bool) error {
	env := st.env
	k := st.cur.Key(i)
	if _, ok := st.recent[k]; ok {
		return st.fromRecent(i, upto)
	}
	store := env.Stores[k.Origin]
	for upto == 0 || st.cur.At(i).Offset < upto {
		pos := st.cur.At(i)
		n := env.Config.ReplayPage
		if upto > 0 {
			n = int(min(uint64(n), upto-pos.Offset))
		}
		ctx, cancel := context.WithTimeout(st.ctx, 5*time.Second)
		evs, in, err := store.Read(ctx, k.Topic, pos.Offset, n)
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
			st.cur.SetAt(i, pos)
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
				st.reset([]push.StreamReset{{Topic: k.Topic, Origin: k.Origin, Reason: push.ResetTrimmed, LostFrom: pos.Offset + 1, LostTo: e.Offset - 1, Epoch: in.Epoch}})
			}
			pos = push.Position{Epoch: in.Epoch, Offset: e.Offset}
			st.cur.SetAt(i, pos)
			st.w.Event(st.cur, e)
			env.Counters.Delivered.Add(1)
			if replay {
				env.Counters.Replayed.Add(1)
				st.replayed++
			}
			if t := env.Telemetry; t != nil && e.TraceParent != "" {
				_, span := t.StartDelivery(st.ctx, e.TraceParent, observability.DeliveryAttrs{Topic: e.Topic, Origin: e.Origin, Offset: int64(e.Offset)})
				span.End()
			}
			if err := st.maybeFlush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// fromRecent is fromStore served from the recent-events cache.
func (st *Stream) fromRecent(i int, upto uint64) error {
	k := st.cur.Key(i)
	for _, e := range st.recent[k] {
		pos := st.cur.At(i)
		if e.Offset <= pos.Offset {
			continue
		}
		if upto > 0 && e.Offset > upto {
			break
		}
		if e.Offset != pos.Offset+1 || (pos.Epoch != "" && e.Epoch != pos.Epoch) {
			return fmt.Errorf("%v: recent-events cache does not continue at %d", k, pos.Offset)
		}
		st.cur.SetAt(i, push.Position{Epoch: e.Epoch, Offset: e.Offset})
		st.w.Event(st.cur, e)
		st.env.Counters.Delivered.Add(1)
		st.env.Counters.Replayed.Add(1)
		st.replayed++
		if err := st.maybeFlush(); err != nil {
			return err
		}
	}
	return nil
}
