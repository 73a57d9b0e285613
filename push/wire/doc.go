// Package wire is Herald's WebSocket frame contract (ADR 0023), shared by
// the server (push/server) and the Go client (push/client).
//
// Server → client: one JSON text message per event,
// {"id","event","topic","data"}. id is the stream's cursor — the same
// string an SSE client gets as `id:`, so a cursor from either transport
// resumes the other; data is the string an SSE client gets as the event's
// data (line breaks normalised to "\n", as SSE's parser does). herald.*
// control events (hello, reset, moved, ack, error) use the same shape with
// their JSON as data.
//
// Client → server: one JSON text message per request, {"type": ...}:
// auth, subscribe, unsubscribe, publish (see Request). ParseRequest
// validates a message completely; anything else is refused.
package wire
