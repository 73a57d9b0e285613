package resilience

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests in this package are not parallel: sentinel's system metrics are
// process-global and TestAdmissionSystem overrides them through sentinel's
// test hooks. Every test uses its own Guards, hence its own sentinel
// resources.

// mustNew builds Guards and closes them at the end of the test.
func mustNew(tb testing.TB, cfg Config, opts Options) *Guards {
	tb.Helper()
	if opts.Name == "" {
		opts.Name = strings.NewReplacer("/", "_", " ", "_", "#", "_").Replace(tb.Name())
		if len(opts.Name) > 64 {
			opts.Name = opts.Name[:64]
		}
	}
	g, err := New(cfg, opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = g.Close() })
	return g
}

// checkFor polls fn until it returns nil or timeout passes.
func checkFor(tb testing.TB, timeout, every time.Duration, fn func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(every)
	}
}

// events records Options.OnEvent calls.
type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) record(ev Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

// kinds returns "reason/kind" of the recorded events of layer, in order.
func (e *events) kinds(layer string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.all {
		if ev.Layer == layer && ev.Kind != KindBlock {
			out = append(out, ev.Reason+"/"+ev.Kind)
		}
	}
	return out
}

func (e *events) count(layer, reason, kind string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Layer == layer && ev.Reason == reason && ev.Kind == kind {
			n++
		}
	}
	return n
}

// logBuffer is a concurrency-safe slog sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// failing, succeeding and sleeping are breaker call bodies.
var errBackend = &backendError{}

type backendError struct{}

func (*backendError) Error() string { return "backend down" }

func failing(context.Context) error    { return errBackend }
func succeeding(context.Context) error { return nil }
