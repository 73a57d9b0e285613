package storeutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/heraldpush/herald/push"
)

// Limits a store enforces on its own, independent of the HTTP layer's
// stricter grammar: they keep stored fields single-line printable ASCII so
// that wire encodings (the Redis notification, SSE lines) cannot be broken.
const (
	// MaxTraceParentLen bounds a stored W3C traceparent (55 bytes in version 00).
	MaxTraceParentLen = 128
	// MaxBatch is the largest number of drafts one Append may carry.
	MaxBatch = 1000
)

// TypeOf returns the draft's event type, push.DefaultEventType when empty.
func TypeOf(d *push.Draft) string {
	if d.Type == "" {
		return push.DefaultEventType
	}
	return d.Type
}

// CheckDrafts validates drafts without modifying them. An empty type is
// allowed (see TypeOf). Errors wrap push.ErrInvalidEvent.
func CheckDrafts(drafts []push.Draft) error {
	if len(drafts) > MaxBatch {
		return fmt.Errorf("%w: %d drafts in one append, limit %d", push.ErrInvalidEvent, len(drafts), MaxBatch)
	}
	for i := range drafts {
		d := &drafts[i]
		if len(d.Type) > push.MaxEventTypeLen || !printable(d.Type) {
			return fmt.Errorf("%w: draft %d: event type must be 1..%d printable ASCII characters", push.ErrInvalidEvent, i, push.MaxEventTypeLen)
		}
		if len(d.TraceParent) > MaxTraceParentLen || !printable(d.TraceParent) {
			return fmt.Errorf("%w: draft %d: traceparent must be at most %d printable ASCII characters", push.ErrInvalidEvent, i, MaxTraceParentLen)
		}
		if d.IdempotencyKey != "" {
			if err := push.ValidateIdempotencyKey(d.IdempotencyKey); err != nil {
				return fmt.Errorf("draft %d: %w", i, err)
			}
		}
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// NewEpoch returns 16 random hex characters from crypto/rand.
func NewEpoch() string {
	var b [8]byte
	// crypto/rand.Read never returns an error on supported platforms (Go 1.24+).
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
