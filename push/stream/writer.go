package stream

import (
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
)

// Writer frames a stream's output for one transport (SSE, WebSocket). A
// Writer buffers frames until Flush; it is used by the stream's goroutine
// only. Every frame that carries an id carries the stream's cursor, encoded
// the same way on every transport, so an id from one resumes the other.
type Writer interface {
	// Event frames one event read from history, cur being its id.
	Event(cur *push.Cursor, e *push.Event)
	// Delivery frames one live event, cur being its id.
	Delivery(cur *push.Cursor, d *hub.Delivery)
	// Control frames a herald.* event whose data is the JSON data, with
	// cur as its id, or no id when cur is nil.
	Control(cur *push.Cursor, typ string, data []byte)
	// KeepAlive frames a keep-alive for a stream that has been silent.
	KeepAlive()
	// Retry frames the reconnection delay of a stream about to be closed
	// from outside (drain, rebalance, expiry).
	Retry(d time.Duration)
	// Buffered is the size of the frames not yet written.
	Buffered() int
	// Flush writes the buffered frames within the write timeout. A write
	// that misses it returns an error wrapping os.ErrDeadlineExceeded
	// (the stream then ends as slow).
	Flush() error
	// Release drops the write buffer (the stream is idle or over).
	Release()
}
