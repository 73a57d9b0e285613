package wire

import (
	"strconv"
	"time"
)

// PublishResult is the server's acknowledgement of one published event: the
// body of a POST publish answer, each successful item of a batch answer, and
// the result of a WebSocket publish ack (EventAck). Declared here once so
// the server (push/server) and the Go client (push/client) share it.
type PublishResult struct {
	Topic  string    `json:"topic"`
	Origin string    `json:"origin"`
	Epoch  string    `json:"epoch"`
	Offset uint64    `json:"offset"`
	Time   time.Time `json:"time"`
	// Duplicate is true when the idempotency key matched an earlier publish;
	// the other fields then describe that earlier event.
	Duplicate bool `json:"duplicate"`
}

// AppendJSON appends r encoded exactly as encoding/json's Marshal encodes
// it (same fields, order, escaping and time format) and reports whether it
// could: a string that needs escaping (HTML-safe escaping included) or a
// time Marshal would refuse or format otherwise leaves b as it was and
// returns false, and the caller marshals instead. It exists because a
// publish answers with one of these per request: Marshal's reflection and
// copies were a measurable share of the publish path's allocations.
func (r PublishResult) AppendJSON(b []byte) ([]byte, bool) {
	if !plainJSON(r.Topic) || !plainJSON(r.Origin) || !plainJSON(r.Epoch) {
		return b, false
	}
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := r.Time.Zone(); off%60 != 0 {
		return b, false // Marshal refuses a zone offset with seconds
	}
	b = append(b, `{"topic":"`...)
	b = append(b, r.Topic...)
	b = append(b, `","origin":"`...)
	b = append(b, r.Origin...)
	b = append(b, `","epoch":"`...)
	b = append(b, r.Epoch...)
	b = append(b, `","offset":`...)
	b = strconv.AppendUint(b, r.Offset, 10)
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","duplicate":`...)
	b = strconv.AppendBool(b, r.Duplicate)
	return append(b, '}'), true
}

// plainJSON reports whether Marshal writes s between quotes unchanged:
// printable ASCII without the characters it escapes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
