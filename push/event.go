package push

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultEventType is the SSE event type of an event published without one.
const DefaultEventType = "message"

// ControlPrefix starts the type of Herald's own in-band control events
// (herald.hello, herald.reset). Publishers may not use it.
const ControlPrefix = "herald."

// Limits of the grammar. They keep Redis keys, SSE frames and cursors bounded.
const (
	MaxTopicLen     = 128
	MaxEventTypeLen = 64
	MaxOriginLen    = 32
	MaxIdemKeyLen   = 128
)

// StreamKey names one stream: the events of Topic that originated in region Origin.
type StreamKey struct {
	Topic  string
	Origin string
}

func (k StreamKey) String() string { return k.Topic + "@" + k.Origin }

// Position is a reader's place in one stream: the offset of the last event it
// has, under the stream's epoch. Offset 0 means "nothing yet"; an empty Epoch
// means the stream did not exist when the position was taken.
type Position struct {
	Epoch  string
	Offset uint64
}

// Event is a persisted event as read back from a Store or received live.
type Event struct {
	Topic  string
	Origin string
	// Epoch is the stream's epoch when the event was read or announced (the
	// stream's current lineage), not necessarily the one it was written under.
	Epoch  string
	Offset uint64
	Type   string
	Data   []byte
	// Time is when the store accepted the event (millisecond precision).
	Time time.Time
	// TraceParent is the W3C traceparent of the publish span, or "".
	TraceParent string
}

// Key returns the event's stream.
func (e *Event) Key() StreamKey { return StreamKey{Topic: e.Topic, Origin: e.Origin} }

// Draft is an event to append.
type Draft struct {
	Type string
	Data []byte
	// IdempotencyKey, when set, makes a retried append inside the store's
	// idempotency window return the first append's result and write nothing.
	IdempotencyKey string
	TraceParent    string
}

// AppendResult is the outcome of appending one Draft.
type AppendResult struct {
	Epoch  string
	Offset uint64
	Time   time.Time
	// Duplicate is true when the idempotency key matched an earlier append;
	// Epoch/Offset/Time then describe that earlier event.
	Duplicate bool
}

// StreamInfo describes a stream at one instant.
type StreamInfo struct {
	Topic  string
	Origin string
	// Epoch is "" when the stream has never been written.
	Epoch string
	// First is the lowest retained offset (0 when nothing is retained).
	First uint64
	// Last is the highest offset ever assigned in this epoch lineage (0 when none).
	Last uint64
	// Length is the number of retained events.
	Length int64
	// EpochStart is the first offset of the current epoch's lineage: events
	// from it on were written under Epoch and no reader of an earlier epoch
	// has seen them; events below it are history the epoch inherited. 1 for
	// a stream whose epoch never changed; 0 when the stream was never written.
	EpochStart uint64
	// Parent is the epoch whose history below EpochStart the current epoch
	// inherited unchanged ("" when none or unknown): a reader of Parent at
	// an offset below EpochStart lost nothing up to EpochStart-1, only
	// Parent's events from EpochStart on. It equals Lineage[0].Epoch when
	// Lineage is known.
	Parent string
	// Lineage lists the epochs the current one descends from, newest first
	// (at most MaxLineage; nil when the stream began from nothing or its
	// ancestry is unknown). See Fork and Resume.
	Lineage []Fork
}

// ValidateTopic checks a topic name against the grammar
// [A-Za-z0-9][A-Za-z0-9._:-]{0,127}. The grammar keeps names safe as URL path
// segments, Redis key parts (no braces, no '@') and log fields.
func ValidateTopic(t string) error {
	if len(t) == 0 || len(t) > MaxTopicLen {
		return fmt.Errorf("%w: %q: length must be 1..%d", ErrInvalidTopic, clip(t), MaxTopicLen)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if isAlnum(c) || (i > 0 && (c == '.' || c == '_' || c == ':' || c == '-')) {
			continue
		}
		return fmt.Errorf("%w: %q: character %d not allowed (grammar [A-Za-z0-9][A-Za-z0-9._:-]*)", ErrInvalidTopic, clip(t), i)
	}
	return nil
}

// ValidateOrigin checks a region name: [a-z0-9][a-z0-9-]{0,31}.
func ValidateOrigin(o string) error {
	if len(o) == 0 || len(o) > MaxOriginLen {
		return fmt.Errorf("invalid region %q: length must be 1..%d", clip(o), MaxOriginLen)
	}
	for i := 0; i < len(o); i++ {
		c := o[i]
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && c == '-') {
			continue
		}
		return fmt.Errorf("invalid region %q: grammar is [a-z0-9][a-z0-9-]*", clip(o))
	}
	return nil
}

// ValidateEventType checks a publisher-supplied event type:
// [A-Za-z0-9][A-Za-z0-9._:-]{0,63}, not starting with ControlPrefix. Types can
// therefore never inject SSE lines.
func ValidateEventType(t string) error {
	if len(t) == 0 || len(t) > MaxEventTypeLen {
		return fmt.Errorf("%w: event type %q: length must be 1..%d", ErrInvalidEvent, clip(t), MaxEventTypeLen)
	}
	if strings.HasPrefix(t, ControlPrefix) {
		return fmt.Errorf("%w: event type %q: prefix %q is reserved", ErrInvalidEvent, clip(t), ControlPrefix)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if isAlnum(c) || (i > 0 && (c == '.' || c == '_' || c == ':' || c == '-')) {
			continue
		}
		return fmt.Errorf("%w: event type %q: character %d not allowed", ErrInvalidEvent, clip(t), i)
	}
	return nil
}

// ValidateData checks event data: valid UTF-8, no NUL, at most max bytes.
func ValidateData(d []byte, max int) error {
	if max > 0 && len(d) > max {
		return fmt.Errorf("%w: data is %d bytes, limit %d", ErrInvalidEvent, len(d), max)
	}
	if !utf8.Valid(d) {
		return fmt.Errorf("%w: data is not valid UTF-8", ErrInvalidEvent)
	}
	for _, c := range d {
		if c == 0 {
			return fmt.Errorf("%w: data contains NUL", ErrInvalidEvent)
		}
	}
	return nil
}

// ValidateIdempotencyKey checks a key: 1..128 printable ASCII characters.
func ValidateIdempotencyKey(k string) error {
	if len(k) == 0 || len(k) > MaxIdemKeyLen {
		return fmt.Errorf("%w: idempotency key length must be 1..%d", ErrInvalidEvent, MaxIdemKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return fmt.Errorf("%w: idempotency key must be printable ASCII", ErrInvalidEvent)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// clip bounds attacker-supplied strings quoted in error messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
