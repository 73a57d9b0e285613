package push

import (
	"encoding/json"
	"strconv"
)

// Control events: Herald's own in-band SSE events (types start with
// ControlPrefix). Their data is JSON in these shapes; the server writes them
// and clients (push/client, browsers) read them.
const (
	// EventHello opens every stream; its id is the client's resume point.
	EventHello = ControlPrefix + "hello"
	// EventReset names streams whose history the client cannot get.
	EventReset = ControlPrefix + "reset"
)

// Reset reasons, carried in StreamReset.Reason.
const (
	ResetTrimmed       = "trimmed"        // the cursor is older than retention
	ResetEpochChanged  = "epoch_changed"  // the store may have lost events since the cursor
	ResetAhead         = "ahead"          // the cursor is past the stream's head (its tail was lost)
	ResetForeignCursor = "foreign_cursor" // the cursor was minted for another topic set
	// ResetInvalidCursor: the cursor did not decode (a proxy's id, a
	// truncated one, a format this node does not know). Sent only to
	// browser EventSources, which a 400 would stop for good; the stream
	// continues where the request's `from` says (default: the live head).
	ResetInvalidCursor = "invalid_cursor"
	// ResetReplicaBehind: this region's replica of a remote origin has not
	// received events the client already has (LostFrom..LostTo); nothing
	// is repeated or skipped: the client keeps its position, and events
	// after it arrive once the replica catches up, or an epoch_changed
	// reset follows if the origin comes back without them.
	ResetReplicaBehind = "replica_behind"
)

// Hello is the data of herald.hello.
type Hello struct {
	Session string   `json:"session"`
	Node    string   `json:"node"`
	Origin  string   `json:"origin"`
	Topics  []string `json:"topics"`
	// Origins are the regions the stream's cursor covers, in the order the
	// cursor encodes them (ascending origin tag; ADR 0025): with Topics
	// (sorted) they let a client decode which stream each event's id
	// advanced, so it learns every event's topic, origin and offset
	// without any change to the event itself.
	Origins []string `json:"origins,omitempty"`
	// Cursor repeats the event's id when it carries one.
	Cursor  string `json:"cursor,omitempty"`
	Resumed bool   `json:"resumed"`
	Durable bool   `json:"durable"`
	// Trace is the W3C traceparent of the connection's session span, when
	// traced. SDK clients send it back as the traceparent header of their
	// next connection, whose span then links to this one (ADR 0006).
	Trace string `json:"trace,omitempty"`
	// Alternates are client-facing base URLs of other regions that are
	// serving now, in order of preference: where an SDK client goes when
	// this region is unreachable or evacuated.
	Alternates []string `json:"alternates,omitempty"`
}

// EventMoved is sent just before a stream is closed because its region is
// being evacuated: the client should reconnect to one of Alternates.
const EventMoved = ControlPrefix + "moved"

// Moved is the data of herald.moved.
type Moved struct {
	Reason     string   `json:"reason"`
	Alternates []string `json:"alternates"`
}

// StreamReset names one stream whose history the client cannot get.
type StreamReset struct {
	Topic  string `json:"topic"`
	Origin string `json:"origin"`
	Reason string `json:"reason"`
	// LostFrom..LostTo is the offset range the client will never receive
	// (LostTo 0: unknown upper bound, e.g. after an epoch change).
	LostFrom uint64 `json:"lost_from"`
	LostTo   uint64 `json:"lost_to"`
	// Epoch is the stream's current epoch; the client continues there.
	Epoch string `json:"epoch"`
	// ContinueFrom is the first offset of Epoch the stream delivers next.
	ContinueFrom uint64 `json:"continue_from"`
}

// Reset is the data of herald.reset: every stream reset at one point.
type Reset struct {
	Streams []StreamReset `json:"streams"`
}

// AppendJSON appends h as encoding/json would marshal it. Every stream's
// connect writes a hello; this spares it the reflection (issue 20 item 4).
func (h *Hello) AppendJSON(b []byte) []byte {
	b = append(b, `{"session":`...)
	b = appendJSONString(b, h.Session)
	b = append(b, `,"node":`...)
	b = appendJSONString(b, h.Node)
	b = append(b, `,"origin":`...)
	b = appendJSONString(b, h.Origin)
	b = append(b, `,"topics":`...)
	b = appendJSONStrings(b, h.Topics)
	if len(h.Origins) > 0 {
		b = append(b, `,"origins":`...)
		b = appendJSONStrings(b, h.Origins)
	}
	if h.Cursor != "" {
		b = append(b, `,"cursor":`...)
		b = appendJSONString(b, h.Cursor)
	}
	b = append(b, `,"resumed":`...)
	b = strconv.AppendBool(b, h.Resumed)
	b = append(b, `,"durable":`...)
	b = strconv.AppendBool(b, h.Durable)
	if h.Trace != "" {
		b = append(b, `,"trace":`...)
		b = appendJSONString(b, h.Trace)
	}
	if len(h.Alternates) > 0 {
		b = append(b, `,"alternates":`...)
		b = appendJSONStrings(b, h.Alternates)
	}
	return append(b, '}')
}

// appendJSONStrings appends ss as a JSON array (null when nil, as
// encoding/json writes a nil slice).
func appendJSONStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string. Printable ASCII other than
// the characters encoding/json escapes (" \ < > &) is copied as is; any
// other string is left to encoding/json, so the output is always its own.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string: cannot fail
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
