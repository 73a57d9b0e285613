package wire

import "time"

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
