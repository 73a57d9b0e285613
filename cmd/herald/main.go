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
	// ours, at most one per redisLogInterval (the only global Herald sets,
	// and only here).
	redis.SetLogger(newRedisLogger(slog.New(observability.NewLogHandler(slog.NewJSONHandler(os.Stderr, nil))), redisLogInterval))
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
