package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// With Redis down, go-redis logged every failed dial (about five lines a
// second); its logger now writes one line per interval with a count of
// the lines it held back.
func TestRedisLoggerSummarises(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	clock := time.Unix(1000, 0)
	l := newRedisLogger(slog.New(slog.NewJSONHandler(&lockedWriter{w: &out, mu: &mu}, nil)), 10*time.Second)
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	// 50 lines within the first interval, from concurrent callers.
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			for range 10 {
				l.Printf(context.Background(), "redis: %s: dial tcp: connection refused\n", "127.0.0.1:1")
			}
		})
	}
	wg.Wait()
	advance(9 * time.Second)
	l.Printf(context.Background(), "redis: still down")
	advance(time.Second)
	l.Printf(context.Background(), "redis: dial failed again")

	mu.Lock()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	mu.Unlock()
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (one per interval):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	var first, second struct {
		Msg        string `json:"msg"`
		Component  string `json:"component"`
		Suppressed int    `json:"suppressed"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(first.Msg, "connection refused") || first.Component != "redis" || first.Suppressed != 0 {
		t.Errorf("first line %+v", first)
	}
	if second.Msg != "redis: dial failed again" || second.Suppressed != 50 {
		t.Errorf("second line %+v, want 50 suppressed (49 + 1)", second)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
