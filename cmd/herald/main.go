// Command herald is Herald's single binary: the push server (serve) and its
// tools (publish, tail, token, bench, members, gossip-key, version).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/heraldpush/herald/observability"
)

func main() {
	// go-redis logs through a process-wide logger: make its lines JSON like
	// ours (the only global Herald sets, and only here).
	redis.SetLogger(redisLogger{slog.New(observability.NewLogHandler(slog.NewJSONHandler(os.Stderr, nil)))})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand(os.Environ).ExecuteContext(ctx); err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "herald") {
			msg = "herald: " + msg
		}
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(1)
	}
}

// redisLogger adapts slog to go-redis's Printf-style logger.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "redis")
}
