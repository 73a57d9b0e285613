package redisstore

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/redis/go-redis/v9"
)

// Defaults for zero Config fields.
const (
	DefaultOrigin            = "local"
	DefaultKeyPrefix         = "herald"
	DefaultIdempotencyWindow = 2 * time.Minute
	DefaultResyncInterval    = 30 * time.Second
	DefaultOpTimeout         = 2 * time.Second
	// MinIdleTTL is the idle TTL floor when IdleTTL is zero.
	MinIdleTTL = 24 * time.Hour
	// MaxReadLimit caps one Read.
	MaxReadLimit = 10_000
	// ExactTrimBelow: a MaxLen below this trims exactly (MAXLEN n); from it
	// on trimming is approximate (MAXLEN ~ n, whole stream nodes of
	// stream-node-max-entries, 100 by default), which keeps at most about
	// that many extra entries and is cheaper.
	ExactTrimBelow = 1000
)

// Config configures a Store. Zero values mean the documented defaults.
type Config struct {
	// Client is the Redis connection (single node, Sentinel failover or
	// Cluster). The caller owns it: Close does not close it. Exactly one of
	// Client, Options and URL must be set. Set ContextTimeoutEnabled on its
	// options so per-call deadlines bound network waits (ParseURL does).
	Client redis.UniversalClient
	// Options, typically from ParseURL, make the Store build (and own) its
	// client with redis.NewUniversalClient.
	Options *redis.UniversalOptions
	// URL is parsed by ParseURL; the Store then owns the client it makes.
	URL string
	// Origin is the region whose events this store holds. Zero means "local".
	Origin string
	// KeyPrefix starts every key and channel name. Zero means "herald". It
	// must not contain '{', '}' or whitespace.
	KeyPrefix string
	// Retention picks each topic's bounds. A zero policy means
	// push.DefaultRetention.
	Retention push.RetentionPolicy
	// IdempotencyWindow is how long an idempotency key is remembered. Zero
	// means 2 minutes.
	IdempotencyWindow time.Duration
	// IdleTTL is how long a stream and its meta hash live after their last
	// append. Zero means max(2×MaxAge, 24h) of the topic's retention;
	// negative means they never expire. When they expire the next append
	// starts a new epoch at offset 1.
	IdleTTL time.Duration
	// ReadOnly makes the store a reader of another region's events, for a
	// read replica of that region's primary: Info, Read and Listen work
	// (reads run as read-only scripts, Pub/Sub messages published on the
	// primary reach its replicas), Append fails with push.ErrReadOnly.
	ReadOnly bool
	// Logger receives warnings from the listener. Zero discards.
	Logger *slog.Logger
	// ResyncInterval is how often listeners call Sink.Resync as a backstop
	// against lost notifications. Zero means 5s.
	ResyncInterval time.Duration
	// OpTimeout bounds each Redis call whose context has no deadline. Zero
	// means 2s.
	OpTimeout time.Duration
	// AppendBatch is the largest number of concurrent Append calls sent to
	// Redis in one round trip (group commit, ADR 0032). An Append that finds
	// no batch in flight is sent at once, alone; those that arrive while one
	// is in flight go out together as the next. Zero means 64; 1 turns group
	// commit off (every Append its own round trip).
	AppendBatch int
	// AppendQueue bounds the Append calls waiting to be sent; beyond it a
	// caller waits for room or for its context. Zero means 1024.
	AppendQueue int
}

// Validate reports configuration errors. New calls it.
func (c Config) Validate() error {
	var errs []error
	set := 0
	for _, ok := range []bool{c.Client != nil, c.Options != nil, c.URL != ""} {
		if ok {
			set++
		}
	}
	if set != 1 {
		errs = append(errs, errors.New("exactly one of client, options and url must be set"))
	}
	if c.Origin != "" {
		if err := push.ValidateOrigin(c.Origin); err != nil {
			errs = append(errs, fmt.Errorf("origin: %w", err))
		}
	}
	if strings.ContainsAny(c.KeyPrefix, "{} \t\r\n") || len(c.KeyPrefix) > 64 {
		errs = append(errs, fmt.Errorf("key_prefix %q: at most 64 characters, no braces or whitespace", c.KeyPrefix))
	}
	if c.IdempotencyWindow < 0 || c.ResyncInterval < 0 || c.OpTimeout < 0 {
		errs = append(errs, errors.New("idempotency_window, resync_interval and op_timeout must not be negative"))
	}
	if c.AppendBatch < 0 || c.AppendQueue < 0 {
		errs = append(errs, fmt.Errorf("append_batch %d and append_queue %d must not be negative", c.AppendBatch, c.AppendQueue))
	}
	if err := c.Retention.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("redisstore: %w", err)
	}
	return nil
}

func (c *Config) fill() {
	if c.Origin == "" {
		c.Origin = DefaultOrigin
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.IdempotencyWindow == 0 {
		c.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = DefaultResyncInterval
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.AppendBatch == 0 {
		c.AppendBatch = DefaultAppendBatch
	}
	if c.AppendQueue == 0 {
		c.AppendQueue = DefaultAppendQueue
	}
}

// idleTTL returns the key TTL for a topic with retention r (0: none).
func (c *Config) idleTTL(r push.Retention) time.Duration {
	switch {
	case c.IdleTTL < 0:
		return 0
	case c.IdleTTL > 0:
		return c.IdleTTL
	default:
		return max(2*r.MaxAge, MinIdleTTL)
	}
}
