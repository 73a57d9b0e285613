package client

import (
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	b := backoff{base: 100 * time.Millisecond, max: 30 * time.Second}
	tests := []struct {
		base     time.Duration
		failures int
		ceiling  time.Duration
	}{
		{0, 0, 100 * time.Millisecond},
		{0, 1, 200 * time.Millisecond},
		{0, 5, 3200 * time.Millisecond},
		{0, 20, 30 * time.Second},
		{0, 1000, 30 * time.Second},
		{2 * time.Second, 0, 2 * time.Second},         // server retry: is the base
		{2 * time.Second, 3, 16 * time.Second},        //
		{time.Millisecond, 0, 100 * time.Millisecond}, // never below MinBackoff
		{time.Hour, 0, 30 * time.Second},              // capped
	}
	for _, tt := range tests {
		var maxSeen time.Duration
		for range 2000 {
			d := b.delay(tt.base, tt.failures)
			if d < 0 || d >= tt.ceiling {
				t.Fatalf("delay(%v, %d) = %v, want [0, %v)", tt.base, tt.failures, d, tt.ceiling)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < tt.ceiling/2 { // full jitter uses the whole range
			t.Fatalf("delay(%v, %d): max of 2000 draws %v, ceiling %v", tt.base, tt.failures, maxSeen, tt.ceiling)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 6, 18, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"5", 5 * time.Second, true},
		{" 7 ", 7 * time.Second, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"99999999999999999999", MaxRetryAfter, true},
		{"86400", MaxRetryAfter, true},
		{"Wed, 18 Jun 2025 10:00:30 GMT", 30 * time.Second, true},
		{"Wed, 18 Jun 2025 09:00:00 GMT", 0, true},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
