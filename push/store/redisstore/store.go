package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/store/internal/storeutil"
	"github.com/redis/go-redis/v9"
)

// maxAfter caps Read's after argument: Lua numbers are exact to 2^53.
const maxAfter = 1 << 53

// Store is the Redis Streams push.Store. Build it with New; Close releases it.
type Store struct {
	cfg       Config
	client    redis.UniversalClient
	ownClient bool
	closed    atomic.Bool
	commit    *committer // nil when ReadOnly or AppendBatch is 1
	// retArgs holds each configured retention's fixed script arguments
	// (retentionArgs); built in New, read-only after.
	retArgs map[push.Retention][]any

	mu        sync.Mutex
	listeners map[*listener]struct{}
}

var _ push.Store = (*Store)(nil)

// New validates cfg and returns a store. It does no network I/O: use Ping
// to check that Redis is reachable.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fill()
	s := &Store{cfg: cfg, client: cfg.Client, listeners: map[*listener]struct{}{}}
	s.retArgs = map[push.Retention][]any{}
	for _, ret := range append([]push.Retention{push.RetentionPolicy{Default: cfg.Retention.Default}.For("")}, retentions(cfg.Retention)...) {
		s.retArgs[ret] = s.buildRetentionArgs(ret)
	}
	if s.client == nil {
		opts := cfg.Options
		if opts == nil {
			var err error
			if opts, err = ParseURL(cfg.URL); err != nil {
				return nil, err
			}
		}
		s.client, s.ownClient = redis.NewUniversalClient(opts), true
	}
	if !cfg.ReadOnly && cfg.AppendBatch > 1 {
		s.commit = newCommitter(s.client, cfg.AppendBatch, cfg.AppendQueue)
	}
	return s, nil
}

// retentions lists the retention of every rule of p.
func retentions(p push.RetentionPolicy) []push.Retention {
	out := make([]push.Retention, len(p.Rules))
	for i, r := range p.Rules {
		out[i] = r.Retention
	}
	return out
}

// Origin returns the configured region.
func (s *Store) Origin() string { return s.cfg.Origin }

// Durable is true: acknowledged events live in Redis, not in this process.
func (s *Store) Durable() bool { return true }

// Client returns the Redis client the store uses.
func (s *Store) Client() redis.UniversalClient { return s.client }

// opCtx bounds a call by OpTimeout unless ctx already has a deadline.
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.OpTimeout)
}

// unavailable wraps a Redis failure so that callers can test both
// errors.Is(err, push.ErrUnavailable) and the cause (e.g. context.Canceled).
func unavailable(op, topic string, err error) error {
	return fmt.Errorf("redisstore: %s %q: %w: %w", op, topic, push.ErrUnavailable, err)
}

// tag is the hash-tagged key stem of a topic's stream: "P:{T@O}:".
func (s *Store) tag(topic string) string {
	return s.cfg.KeyPrefix + ":{" + topic + "@" + s.cfg.Origin + "}:"
}

func (s *Store) channel(topic string) string {
	return s.cfg.KeyPrefix + ":n:" + topic + "@" + s.cfg.Origin
}

func idemKey(tag, key string) string {
	sum := sha256.Sum256([]byte(key))
	return tag + "i:" + hex.EncodeToString(sum[:])
}

// Append appends drafts to topic in one Lua script: all or nothing unless
// Redis itself fails mid-script, in order, with contiguous offsets.
// Concurrent Appends share round trips (group commit, append_group.go).
func (s *Store) Append(ctx context.Context, topic string, drafts []push.Draft) ([]push.AppendResult, error) {
	if s.closed.Load() {
		return nil, push.ErrClosed
	}
	if s.cfg.ReadOnly {
		return nil, fmt.Errorf("%w: origin %s is read here from a replica", push.ErrReadOnly, s.cfg.Origin)
	}
	if err := push.ValidateTopic(topic); err != nil {
		return nil, err
	}
	if err := storeutil.CheckDrafts(drafts); err != nil {
		return nil, err
	}
	if len(drafts) == 0 {
		return nil, nil
	}
	keys, args, size := s.appendArgs(topic, drafts)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var raw []any
	var err error
	if s.commit != nil {
		if raw, err = s.commit.do(ctx, keys, args, size); errors.Is(err, push.ErrClosed) {
			return nil, err
		}
	} else {
		raw, err = appendScript.Run(ctx, s.client, keys, args...).Slice()
	}
	if err != nil {
		return nil, unavailable("append to", topic, err)
	}
	res, err := parseAppend(raw, len(drafts))
	if err != nil {
		return nil, unavailable("append to", topic, err)
	}
	return res, nil
}

// appendArgs builds the append script's keys and arguments for drafts, and
// the call's approximate size in bytes (group commit bounds batches by it).
func (s *Store) appendArgs(topic string, drafts []push.Draft) ([]string, []any, int) {
	fixed := s.retentionArgs(topic)
	// KEYS[3] names this call: the script records its result there, so a
	// call the driver retries after losing the reply (go-redis retries
	// network errors, ClusterClient even across nodes) returns the recorded
	// result instead of appending the drafts a second time.
	// The call's 32 hex characters and the epoch a new stream would take
	// (16) come from one crypto/rand read. Every name the call uses (the
	// three keys, the channel, the epoch) is a substring of one string:
	// a publish pays for one random read and one string.
	var rnd [24]byte
	_, _ = rand.Read(rnd[:]) // never fails on supported platforms (Go 1.24+)
	var hx [48]byte
	hex.Encode(hx[:], rnd[:])
	p, o := s.cfg.KeyPrefix, s.cfg.Origin
	tagLen := len(p) + 2 + len(topic) + 1 + len(o) + 2 // "P:{T@O}:"
	chLen := len(p) + 3 + len(topic) + 1 + len(o)      // "P:n:T@O"
	var b strings.Builder
	b.Grow(3*tagLen + 4 + 32 + chLen + 16)
	writeTag := func() {
		b.WriteString(p)
		b.WriteString(":{")
		b.WriteString(topic)
		b.WriteByte('@')
		b.WriteString(o)
		b.WriteString("}:")
	}
	writeTag()
	b.WriteByte('s')
	writeTag()
	b.WriteByte('m')
	writeTag()
	b.WriteString("c:")
	b.Write(hx[:32])
	b.WriteString(p)
	b.WriteString(":n:")
	b.WriteString(topic)
	b.WriteByte('@')
	b.WriteString(o)
	b.Write(hx[32:])
	names := b.String()
	tag := names[:tagLen]
	i := tagLen + 1
	keys := make([]string, 3, 3+len(drafts))
	keys[0], keys[1], keys[2] = names[:i], names[i:i+tagLen+1], names[i+tagLen+1:i+2*tagLen+35]
	i += 2*tagLen + 35
	channel, epoch := names[i:i+chLen], names[i+chLen:]
	size := 256 // keys and fixed arguments, about
	args := make([]any, 0, 10+4*len(drafts))
	args = append(args, epoch, channel)
	args = append(args, fixed...)
	args = append(args, len(drafts))
	for i := range drafts {
		d := &drafts[i]
		ik := 0
		if d.IdempotencyKey != "" {
			keys = append(keys, idemKey(tag, d.IdempotencyKey))
			ik = len(keys)
		}
		data := d.Data
		if data == nil {
			data = []byte{}
		}
		var typ any = push.DefaultEventType // a constant: boxed without an allocation
		if d.Type != "" {
			typ = d.Type
		}
		var tp any = ""
		if d.TraceParent != "" {
			tp = d.TraceParent
		}
		args = append(args, typ, data, tp, ik)
		size += len(data) + len(d.Type) + len(d.TraceParent) + len(d.IdempotencyKey) + 96
	}
	return keys, args, size
}

// retentionArgs returns the append script's ARGV[3..9] for topic's
// retention (MAXLEN, approximate trimming, max age, idle TTL, idempotency
// window, trim granularity, lineage bound), as the decimal text go-redis
// would send for the integers. They depend only on the configuration, so
// they are built once per retention in New (retArgs) and shared, read-only.
func (s *Store) retentionArgs(topic string) []any {
	ret := s.cfg.Retention.For(topic)
	if a, ok := s.retArgs[ret]; ok {
		return a
	}
	return s.buildRetentionArgs(ret) // not reached: New covers every rule
}

func (s *Store) buildRetentionArgs(ret push.Retention) []any {
	approx := "0"
	if ret.MaxLen >= ExactTrimBelow {
		approx = "1"
	}
	gran := max(ret.MaxAge/100, 10*time.Millisecond)
	ms := func(d time.Duration) any { return strconv.FormatInt(d.Milliseconds(), 10) }
	return []any{strconv.FormatInt(ret.MaxLen, 10), approx, ms(ret.MaxAge),
		ms(s.cfg.idleTTL(ret)), ms(s.cfg.IdempotencyWindow), ms(gran), strconv.Itoa(push.MaxLineage)}
}

func parseAppend(raw []any, n int) ([]push.AppendResult, error) {
	if len(raw) != 4*n {
		return nil, fmt.Errorf("append script returned %d values for %d drafts", len(raw), n)
	}
	out := make([]push.AppendResult, n)
	for i := range out {
		epoch, ok1 := raw[4*i].(string)
		off, ok2 := raw[4*i+1].(int64)
		ts, ok3 := raw[4*i+2].(int64)
		dup, ok4 := raw[4*i+3].(int64)
		if !ok1 || !ok2 || !ok3 || !ok4 || epoch == "" || off <= 0 {
			return nil, fmt.Errorf("append script returned malformed result %v", raw[4*i:4*i+4])
		}
		out[i] = push.AppendResult{Epoch: epoch, Offset: uint64(off), Time: time.UnixMilli(ts), Duplicate: dup == 1}
	}
	return out, nil
}

func (s *Store) readArgs(topic string, after uint64, limit int) ([]string, []any) {
	tag := s.tag(topic)
	return []string{tag + "s", tag + "m"},
		[]any{min(after, maxAfter), limit, s.cfg.Retention.For(topic).MaxAge.Milliseconds()}
}

// Read returns up to limit events of topic with offset > after and the
// stream's info, read atomically by one read-only script.
func (s *Store) Read(ctx context.Context, topic string, after uint64, limit int) ([]push.Event, push.StreamInfo, error) {
	info := push.StreamInfo{Topic: topic, Origin: s.cfg.Origin}
	if s.closed.Load() {
		return nil, info, push.ErrClosed
	}
	if err := push.ValidateTopic(topic); err != nil {
		return nil, info, err
	}
	limit = max(0, min(limit, MaxReadLimit))
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	keys, args := s.readArgs(topic, after, limit)
	raw, err := readScript.RunRO(ctx, s.client, keys, args...).Slice()
	if err != nil {
		return nil, info, unavailable("read", topic, err)
	}
	evs, info, err := s.parseRead(raw, topic, true)
	if err != nil {
		return nil, info, unavailable("read", topic, err)
	}
	return evs, info, nil
}

// Info describes topics, in order: one read-only script per topic, all in
// one pipeline (topics may live in different cluster slots).
func (s *Store) Info(ctx context.Context, topics []string) ([]push.StreamInfo, error) {
	if s.closed.Load() {
		return nil, push.ErrClosed
	}
	for _, t := range topics {
		if err := push.ValidateTopic(t); err != nil {
			return nil, err
		}
	}
	if len(topics) == 0 {
		return []push.StreamInfo{}, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cmds, err := s.infoPipeline(ctx, topics, readScript.EvalShaRO)
	if err != nil && isNoScript(err, cmds) {
		cmds, err = s.infoPipeline(ctx, topics, readScript.EvalRO)
	}
	if err != nil {
		return nil, unavailable("info", fmt.Sprintf("%s and %d more", topics[0], len(topics)-1), err)
	}
	out := make([]push.StreamInfo, len(topics))
	for i, cmd := range cmds {
		raw, err := cmd.Slice()
		if err == nil {
			_, out[i], err = s.parseRead(raw, topics[i], false)
		}
		if err != nil {
			return nil, unavailable("info", topics[i], err)
		}
	}
	return out, nil
}

type evalFunc func(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd

func (s *Store) infoPipeline(ctx context.Context, topics []string, eval evalFunc) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(topics))
	if len(topics) == 1 {
		keys, args := s.readArgs(topics[0], 0, 0)
		cmds[0] = eval(ctx, s.client, keys, args...)
		return cmds, cmds[0].Err()
	}
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, t := range topics {
			keys, args := s.readArgs(t, 0, 0)
			cmds[i] = eval(ctx, p, keys, args...)
		}
		return nil
	})
	return cmds, err
}

func isNoScript(err error, cmds []*redis.Cmd) bool {
	if redis.HasErrorPrefix(err, "NOSCRIPT") || errors.Is(err, redis.ErrNoScript) {
		return true
	}
	for _, c := range cmds {
		if c != nil && (redis.HasErrorPrefix(c.Err(), "NOSCRIPT") || errors.Is(c.Err(), redis.ErrNoScript)) {
			return true
		}
	}
	return false
}

// parseRead decodes {epoch, first, last, length, entries, epoch start,
// parent, lineage}.
func (s *Store) parseRead(raw []any, topic string, withEvents bool) ([]push.Event, push.StreamInfo, error) {
	info := push.StreamInfo{Topic: topic, Origin: s.cfg.Origin}
	if len(raw) != 8 {
		return nil, info, fmt.Errorf("read script returned %d values", len(raw))
	}
	epoch, ok1 := raw[0].(string)
	first, ok2 := raw[1].(int64)
	last, ok3 := raw[2].(int64)
	length, ok4 := raw[3].(int64)
	entries, ok5 := raw[4].([]any)
	start, ok6 := raw[5].(int64)
	parent, ok7 := raw[6].(string)
	lineage, ok8 := raw[7].(string)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !ok7 || !ok8 || first < 0 || last < 0 || length < 0 || start < 0 {
		return nil, info, fmt.Errorf("read script returned malformed info %v", raw[:4])
	}
	info.Epoch, info.First, info.Last, info.Length = epoch, uint64(first), uint64(last), length
	info.EpochStart, info.Parent = uint64(start), parent
	info.Lineage = parseLineage(lineage)
	if len(info.Lineage) == 0 && parent != "" && start > 0 {
		// Written by a version that recorded only the parent (ADR 0021).
		info.Lineage = []push.Fork{{Epoch: parent, At: uint64(start) - 1}}
	}
	if !withEvents || len(entries) == 0 {
		return nil, info, nil
	}
	evs := make([]push.Event, 0, len(entries))
	for _, e := range entries {
		ev, err := parseEntry(e)
		if err != nil {
			return nil, info, err
		}
		ev.Topic, ev.Origin, ev.Epoch = topic, s.cfg.Origin, epoch
		evs = append(evs, ev)
	}
	return evs, info, nil
}

// parseEntry decodes one XRANGE entry {id, {field, value, …}}.
func parseEntry(raw any) (push.Event, error) {
	var ev push.Event
	pair, ok := raw.([]any)
	if !ok || len(pair) != 2 {
		return ev, fmt.Errorf("malformed stream entry %v", raw)
	}
	id, _ := pair[0].(string)
	offStr, _, _ := strings.Cut(id, "-")
	off, err := strconv.ParseUint(offStr, 10, 64)
	if err != nil {
		return ev, fmt.Errorf("stream entry id %q is not an offset", id)
	}
	ev.Offset = off
	fields, ok := pair[1].([]any)
	if !ok || len(fields)%2 != 0 {
		return ev, fmt.Errorf("stream entry %s: malformed fields", id)
	}
	for j := 0; j < len(fields); j += 2 {
		name, _ := fields[j].(string)
		val, _ := fields[j+1].(string)
		switch name {
		case "t":
			ev.Type = val
		case "d":
			ev.Data = []byte(val)
		case "ts":
			ms, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return ev, fmt.Errorf("stream entry %s: bad ts %q", id, val)
			}
			ev.Time = time.UnixMilli(ms)
		case "tp":
			ev.TraceParent = val
		}
	}
	if ev.Data == nil {
		ev.Data = []byte{}
	}
	return ev, nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return push.ErrClosed
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		return unavailable("ping", "", err)
	}
	return nil
}

// Close stops every listener and, when the store made its client (from
// Options or URL), closes the client. It is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	ls := make([]*listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	for _, l := range ls {
		_ = l.Close()
	}
	if s.commit != nil {
		s.commit.close()
	}
	if s.ownClient {
		return s.client.Close()
	}
	return nil
}

// parseLineage decodes the meta hash's l field, "epoch:at;epoch:at…". A
// malformed entry ends the lineage there: ancestry we cannot read is
// ancestry we do not claim.
func parseLineage(l string) []push.Fork {
	if l == "" {
		return nil
	}
	out := make([]push.Fork, 0, strings.Count(l, ";")+1)
	for entry := range strings.SplitSeq(l, ";") {
		e, at, ok := strings.Cut(entry, ":")
		n, err := strconv.ParseUint(at, 10, 64)
		if !ok || e == "" || err != nil || len(out) == push.MaxLineage {
			break
		}
		out = append(out, push.Fork{Epoch: e, At: n})
	}
	return out
}
