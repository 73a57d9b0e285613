package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldpush/herald/push"
)

// Types of Herald's control events.
const (
	// EventHello is the first event of every connection.
	EventHello = push.EventHello
	// EventReset reports events the server could not deliver (trimmed or
	// lost history); the stream continues after it.
	EventReset = push.EventReset
	// ControlPrefix starts the type of every Herald control event; user
	// events cannot use it.
	ControlPrefix = push.ControlPrefix
)

// Event is one event received on a Stream.
type Event struct {
	// ID is the event's cursor: opaque, to be stored and handed back as
	// StreamConfig.LastEventID to resume after it.
	ID string `json:"id"`
	// Type is the event type: "message" when the publisher set none, or a
	// control event type (see ControlPrefix).
	Type string `json:"event"`
	// Data is the event's data as sent by the publisher (line breaks
	// normalised to LF).
	Data string `json:"data"`
}

// IsControl reports whether e is a Herald control event.
func (e Event) IsControl() bool {
	return len(e.Type) >= len(ControlPrefix) && e.Type[:len(ControlPrefix)] == ControlPrefix
}

// Hello is the data of a herald.hello event.
type Hello = push.Hello

// StreamReset names one stream whose history the client cannot get, as
// carried by a herald.reset event (which may name several streams).
type StreamReset = push.StreamReset

// ParseHello decodes a herald.hello event.
func ParseHello(e Event) (Hello, error) {
	var h Hello
	if e.Type != EventHello {
		return h, fmt.Errorf("client: event type %q is not %s", e.Type, EventHello)
	}
	if err := json.Unmarshal([]byte(e.Data), &h); err != nil {
		return h, fmt.Errorf("client: decode %s: %w", EventHello, err)
	}
	return h, nil
}

// ParseReset decodes a herald.reset event: every stream it names.
func ParseReset(e Event) ([]StreamReset, error) {
	if e.Type != EventReset {
		return nil, fmt.Errorf("client: event type %q is not %s", e.Type, EventReset)
	}
	var body push.Reset
	if err := json.Unmarshal([]byte(e.Data), &body); err != nil {
		return nil, fmt.Errorf("client: decode %s: %w", EventReset, err)
	}
	return body.Streams, nil
}

// flexUint is a uint64 that decodes from a JSON number or a decimal string
// (servers may quote 64-bit offsets for JavaScript clients).
type flexUint uint64

func (f *flexUint) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	b = bytes.Trim(b, `"`)
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("not an unsigned integer: %s", b)
	}
	*f = flexUint(n)
	return nil
}

// flexTime decodes from an RFC 3339 string or a number of Unix milliseconds.
type flexTime time.Time

func (f *flexTime) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var t time.Time
		if err := t.UnmarshalJSON(b); err != nil {
			return err
		}
		*f = flexTime(t)
		return nil
	}
	ms, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("time is neither RFC 3339 nor Unix milliseconds: %s", b)
	}
	*f = flexTime(time.UnixMilli(ms))
	return nil
}
