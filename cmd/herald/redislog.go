package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// redisLogInterval is the most often go-redis's own log lines reach the
// log: with Redis down at start its pool logs every failed dial, several
// times a second.
const redisLogInterval = 10 * time.Second

// redisLogger adapts slog to go-redis's Printf-style logger (installed
// once, in main, with redis.SetLogger) and summarises: it writes at most
// one line per interval, and that line counts the lines suppressed since
// the previous one ("suppressed"). A storm's last suppressed count is
// reported with the next line, whenever that comes; no goroutine waits
// to flush it.
type redisLogger struct {
	l        *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu         sync.Mutex
	last       time.Time // when the last line was written; zero: never
	suppressed int
}

func newRedisLogger(l *slog.Logger, interval time.Duration) *redisLogger {
	return &redisLogger{l: l, interval: interval, now: time.Now}
}

func (r *redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.mu.Lock()
	now := r.now()
	if !r.last.IsZero() && now.Sub(r.last) < r.interval {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	attrs := []any{"component", "redis"}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed, "suppressed_over", r.interval.String())
	}
	r.l.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), attrs...)
}
