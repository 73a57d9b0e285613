package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryAfter caps a server's Retry-After. A larger value (a bogus date,
// a misconfigured proxy) would otherwise park a client for hours.
const MaxRetryAfter = 10 * time.Minute

// backoff computes full-jitter exponential delays (the "Full Jitter" of the
// AWS Architecture Blog's "Exponential Backoff And Jitter"): a uniformly
// random delay in [0, min(max, base·2^failures)). Jitter spreads the
// reconnects of many clients cut off by the same node failure.
//
// Kept rather than github.com/cenkalti/backoff: its ExponentialBackOff
// randomizes around the interval ([i·(1−f), i·(1+f)]), not full jitter, and
// is a stateful iterator; the callers need a pure function of (base,
// failures) because the stream's base is the server's latest `retry:` and
// changes between attempts.
type backoff struct {
	base time.Duration // used when the caller has no better base; > 0
	max  time.Duration // >= base
}

// delay returns the wait before the next attempt after failures consecutive
// failures (0 after a success). base overrides b.base when positive and is
// raised to b.base when smaller, so a server's "retry: 0" cannot cause a
// tight loop.
func (b backoff) delay(base time.Duration, failures int) time.Duration {
	base = max(base, b.base)
	ceiling := b.max
	if failures < 62 && base <= b.max>>failures {
		ceiling = base << failures
	}
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceiling)))
}

// parseRetryAfter parses an HTTP Retry-After value (delay-seconds or an
// HTTP-date), capped at MaxRetryAfter. It reports false for absent or
// malformed values.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		d = MaxRetryAfter
		if err == nil && secs < uint64(MaxRetryAfter/time.Second) {
			d = time.Duration(secs) * time.Second
		}
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(now), 0)
	} else {
		return 0, false
	}
	return min(d, MaxRetryAfter), true
}

// sleep waits for d or until ctx is done, reporting ctx.Err() in that case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
