package memstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/store/internal/storeutil"
)

// Defaults for zero Config fields.
const (
	DefaultOrigin             = "local"
	DefaultIdempotencyWindow  = 2 * time.Minute
	DefaultMaxEvents          = 100_000
	DefaultMaxIdempotencyKeys = 10_000
	DefaultMaxBytes           = 256 << 20
	// MaxReadLimit caps one Read.
	MaxReadLimit = 10_000

	numShards = 64
)

// Config configures a Store. Zero values mean the documented defaults.
type Config struct {
	// Origin is the region name reported on every event. Zero means "local".
	Origin string
	// Retention picks each topic's bounds. A zero policy means
	// push.DefaultRetention.
	Retention push.RetentionPolicy
	// IdempotencyWindow is how long an idempotency key is remembered. Zero
	// means 2 minutes.
	IdempotencyWindow time.Duration
	// MaxEvents is the hard cap of events kept per topic, whatever the
	// retention policy says. Zero means 100,000.
	MaxEvents int
	// MaxIdempotencyKeys caps the keys remembered per topic; the oldest are
	// forgotten first. Zero means 10,000.
	MaxIdempotencyKeys int
	// MaxBytes bounds the memory the whole store accounts for: event
	// payloads plus a fixed overhead per event and per topic. When it is
	// exceeded, Append fails with push.ErrUnavailable until retention frees
	// room (like Redis with maxmemory and noeviction). The bound is soft by at
	// most one batch per concurrent appender. Zero means 256 MiB.
	MaxBytes int64
	// Clock returns the current time; for tests. Zero means time.Now.
	Clock func() time.Time
}

// Validate reports configuration errors. New does not fail; call Validate
// on configuration that comes from outside.
func (c Config) Validate() error {
	if c.Origin != "" {
		if err := push.ValidateOrigin(c.Origin); err != nil {
			return fmt.Errorf("memstore: origin: %w", err)
		}
	}
	if c.IdempotencyWindow < 0 || c.MaxEvents < 0 || c.MaxIdempotencyKeys < 0 || c.MaxBytes < 0 {
		return errors.New("memstore: idempotency_window, max_events, max_idempotency_keys and max_bytes must not be negative")
	}
	return c.Retention.Validate()
}

func (c *Config) fill() {
	if c.Origin == "" {
		c.Origin = DefaultOrigin
	}
	if c.IdempotencyWindow <= 0 {
		c.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	if c.MaxIdempotencyKeys <= 0 {
		c.MaxIdempotencyKeys = DefaultMaxIdempotencyKeys
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// Store is the in-memory push.Store. Build it with New; Close releases it.
type Store struct {
	cfg    Config
	seed   maphash.Seed
	closed atomic.Bool
	// used is the accounted memory (see Config.MaxBytes), shared with topics.
	used atomic.Int64

	shards [numShards]topicShard
	watch  [numShards]watchShard

	lmu       sync.Mutex
	listeners map[*listener]struct{}

	smu sync.Mutex
	sig signals
}

var _ push.Store = (*Store)(nil)

type topicShard struct {
	mu     sync.RWMutex
	topics map[string]*topic
}

type watchShard struct {
	mu       sync.RWMutex
	watchers map[string]map[*listener]struct{}
}

// New returns an empty store. Zero Config fields take their defaults.
func New(cfg Config) *Store {
	cfg.fill()
	s := &Store{cfg: cfg, seed: maphash.MakeSeed(), listeners: map[*listener]struct{}{}}
	for i := range s.shards {
		s.shards[i].topics = map[string]*topic{}
		s.watch[i].watchers = map[string]map[*listener]struct{}{}
	}
	return s
}

// Origin returns the configured region.
func (s *Store) Origin() string { return s.cfg.Origin }

// Durable is false: everything is lost when the process exits.
func (s *Store) Durable() bool { return false }

// Ping reports ErrClosed after Close, nil otherwise.
func (s *Store) Ping(context.Context) error {
	if s.closed.Load() {
		return push.ErrClosed
	}
	return nil
}

func (s *Store) shard(topic string) int {
	return int(maphash.String(s.seed, topic) % numShards)
}

// lookup returns the topic's state, creating it when create is set.
func (s *Store) lookup(name string, create bool) *topic {
	sh := &s.shards[s.shard(name)]
	sh.mu.RLock()
	t := sh.topics[name]
	sh.mu.RUnlock()
	if t != nil || !create {
		return t
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if t = sh.topics[name]; t == nil {
		t = newTopic(name, s.cfg, &s.used)
		sh.topics[name] = t
	}
	return t
}

func (s *Store) now() time.Time { return s.cfg.Clock().Truncate(time.Millisecond) }

// Append appends drafts to topic atomically and announces them to the
// listeners watching topic before returning.
func (s *Store) Append(ctx context.Context, topicName string, drafts []push.Draft) ([]push.AppendResult, error) {
	if s.closed.Load() {
		return nil, push.ErrClosed
	}
	if err := push.ValidateTopic(topicName); err != nil {
		return nil, err
	}
	if err := storeutil.CheckDrafts(drafts); err != nil {
		return nil, err
	}
	if len(drafts) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if used := s.used.Load(); used > s.cfg.MaxBytes {
		return nil, fmt.Errorf("memstore: append to %q: %w: memory limit of %d bytes reached (%d used)", topicName, push.ErrUnavailable, s.cfg.MaxBytes, used)
	}
	t := s.lookup(topicName, true)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := s.now()
	res := t.append(drafts, now, s.cfg)
	s.announce(t, res)
	return res, nil
}

// announce hands the newly appended events to the watchers of t. Called
// with t.mu held, so announcements of one topic are in offset order.
func (s *Store) announce(t *topic, res []push.AppendResult) {
	ws := &s.watch[s.shard(t.name)]
	ws.mu.RLock()
	defer ws.mu.RUnlock()
	watchers := ws.watchers[t.name]
	if len(watchers) == 0 {
		return
	}
	for _, r := range res {
		if r.Duplicate {
			continue
		}
		ev := t.at(r.Offset)
		if ev == nil { // trimmed already by a tiny MaxLen inside this batch
			continue
		}
		e := *ev
		for l := range watchers {
			l.sink.Deliver(&e)
		}
	}
}

// Info describes topics, in order.
func (s *Store) Info(ctx context.Context, topics []string) ([]push.StreamInfo, error) {
	if s.closed.Load() {
		return nil, push.ErrClosed
	}
	for _, name := range topics {
		if err := push.ValidateTopic(name); err != nil {
			return nil, err
		}
	}
	out := make([]push.StreamInfo, len(topics))
	now := s.now()
	for i, name := range topics {
		out[i] = push.StreamInfo{Topic: name, Origin: s.cfg.Origin}
		if t := s.lookup(name, false); t != nil {
			t.mu.Lock()
			t.trimAge(now)
			out[i] = t.info(s.cfg.Origin)
			t.mu.Unlock()
		}
	}
	return out, nil
}

// Read returns up to limit events after offset after, with the stream's info.
func (s *Store) Read(ctx context.Context, topicName string, after uint64, limit int) ([]push.Event, push.StreamInfo, error) {
	info := push.StreamInfo{Topic: topicName, Origin: s.cfg.Origin}
	if s.closed.Load() {
		return nil, info, push.ErrClosed
	}
	if err := push.ValidateTopic(topicName); err != nil {
		return nil, info, err
	}
	t := s.lookup(topicName, false)
	if t == nil {
		return nil, info, nil
	}
	limit = min(limit, MaxReadLimit)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trimAge(s.now())
	info = t.info(s.cfg.Origin)
	if limit <= 0 || info.Length == 0 || after >= info.Last {
		return nil, info, nil
	}
	from := max(after+1, info.First)
	n := min(uint64(limit), info.Last-from+1)
	out := make([]push.Event, 0, n)
	for o := from; o < from+n; o++ {
		ev := *t.at(o)
		ev.Epoch = t.epoch
		out = append(out, ev)
	}
	return out, info, nil
}

// Close drops all history and stops all listeners. It is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.lmu.Lock()
	ls := make([]*listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	s.lmu.Unlock()
	for _, l := range ls {
		_ = l.Close()
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.topics = map[string]*topic{}
		sh.mu.Unlock()
	}
	return nil
}
