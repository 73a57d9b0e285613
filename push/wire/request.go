package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Request types.
const (
	TypeAuth        = "auth"
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypePublish     = "publish"
)

// MaxRequestBytes bounds one client → server message; the server's read
// limit is this plus the largest event data it accepts.
const MaxRequestBytes = 16 << 10

// MaxRefLen bounds a request's ref.
const MaxRefLen = 64

// Request is one client → server message.
type Request struct {
	// Type is auth, subscribe, unsubscribe or publish.
	Type string `json:"type"`
	// Ref is echoed in the answer (herald.ack, herald.error): 0..64
	// printable ASCII characters chosen by the client.
	Ref string `json:"ref,omitempty"`
	// Token is auth's credential (a JWT or an API key).
	Token string `json:"token,omitempty"`
	// Topics are the topics subscribe adds or unsubscribe removes.
	Topics []string `json:"topics,omitempty"`
	// Cursor is where subscribe's new topics start: an id received for
	// exactly those topics. Empty: at the live head.
	Cursor string `json:"cursor,omitempty"`
	// Topic, Event, Data and IdempotencyKey are publish's, as the body
	// and Idempotency-Key header of POST /v1/topics/{topic}/events.
	Topic          string          `json:"topic,omitempty"`
	Event          string          `json:"event,omitempty"`
	Data           json.RawMessage `json:"data,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// ErrInvalidRequest is wrapped by every ParseRequest error.
var ErrInvalidRequest = errors.New("invalid request")

// ParseRequest decodes and checks the shape of one client message: a
// single JSON object with known fields only, a known type, and the fields
// that type needs (and no others). Topic names, cursors, event data and
// keys are checked where they are used, by the same code as the HTTP API.
func ParseRequest(msg []byte, maxTopics int) (Request, error) {
	var r Request
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Request{}, fmt.Errorf("%w: one JSON object per message", ErrInvalidRequest)
	}
	if len(r.Ref) > MaxRefLen || !printable(r.Ref) {
		return Request{}, fmt.Errorf("%w: ref must be 0..%d printable ASCII characters", ErrInvalidRequest, MaxRefLen)
	}
	none := func(what string, empty bool) error {
		if !empty {
			return fmt.Errorf("%w: %s has no %s", ErrInvalidRequest, r.Type, what)
		}
		return nil
	}
	var errs []error
	switch r.Type {
	case TypeAuth:
		if r.Token == "" {
			errs = append(errs, fmt.Errorf("%w: auth needs a token", ErrInvalidRequest))
		}
		errs = append(errs, none("topics", len(r.Topics) == 0), none("cursor", r.Cursor == ""), none("topic", r.Topic == ""),
			none("event", r.Event == ""), none("data", r.Data == nil), none("idempotency_key", r.IdempotencyKey == ""))
	case TypeSubscribe, TypeUnsubscribe:
		if len(r.Topics) == 0 || len(r.Topics) > maxTopics {
			errs = append(errs, fmt.Errorf("%w: %s needs 1..%d topics", ErrInvalidRequest, r.Type, maxTopics))
		}
		if r.Type == TypeUnsubscribe {
			errs = append(errs, none("cursor", r.Cursor == ""))
		}
		errs = append(errs, none("token", r.Token == ""), none("topic", r.Topic == ""), none("event", r.Event == ""),
			none("data", r.Data == nil), none("idempotency_key", r.IdempotencyKey == ""))
	case TypePublish:
		if r.Topic == "" {
			errs = append(errs, fmt.Errorf("%w: publish needs a topic", ErrInvalidRequest))
		}
		errs = append(errs, none("token", r.Token == ""), none("topics", len(r.Topics) == 0), none("cursor", r.Cursor == ""))
	default:
		return Request{}, fmt.Errorf("%w: type must be auth, subscribe, unsubscribe or publish", ErrInvalidRequest)
	}
	if err := errors.Join(errs...); err != nil {
		return Request{}, err
	}
	return r, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
