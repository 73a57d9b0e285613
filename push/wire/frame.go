package wire

import (
	"unicode/utf8"
)

// Frame is one server → client message.
type Frame struct {
	// ID is the stream's cursor after this event ("" for frames that do
	// not move it).
	ID    string `json:"id,omitempty"`
	Event string `json:"event"`
	// Topic is the event's topic ("" for herald.* control events).
	Topic string `json:"topic,omitempty"`
	Data  string `json:"data"`
}

// Control event types only the WebSocket transport sends (the others are
// push.EventHello, push.EventReset, push.EventMoved).
const (
	// EventAck answers a publish: data is {"ref", "result"}, result as the
	// POST answer's body.
	EventAck = "herald.ack"
	// EventError answers a request that failed: data is {"ref", "error":
	// {"code", "message"}} (ref "" for a request that could not be read).
	EventError = "herald.error"
)

// AppendFrameHead appends the start of a frame, `{"id":"<id>"`, or `{`
// when id is empty; AppendFrameTail completes it. id must be JSON-safe
// (a cursor is).
func AppendFrameHead(dst, id []byte) []byte {
	if len(id) == 0 {
		return append(dst, '{')
	}
	dst = append(dst, `{"id":"`...)
	dst = append(dst, id...)
	return append(dst, '"', ',')
}

// AppendFrameTail appends the rest of a frame after AppendFrameHead:
// `"event":...,"topic":...,"data":...}`. Events of one delivery share
// their tail across every subscriber; only the head (the id) differs.
func AppendFrameTail(dst []byte, event, topic string, data []byte) []byte {
	dst = append(dst, `"event":`...)
	dst = appendString(dst, event, false)
	if topic != "" {
		dst = append(dst, `,"topic":`...)
		dst = appendString(dst, topic, false)
	}
	dst = append(dst, `,"data":`...)
	dst = appendString(dst, string(data), true)
	return append(dst, '}')
}

// AppendFrame appends a whole frame.
func AppendFrame(dst []byte, id []byte, event, topic string, data []byte) []byte {
	return AppendFrameTail(AppendFrameHead(dst, id), event, topic, data)
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string. With lines, CR LF and lone CR
// become LF, as an SSE client receives them. Invalid UTF-8 becomes U+FFFD
// (the store never holds any: data is validated at publish).
func appendString(dst []byte, s string, lines bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i++
				start = i
				continue
			}
			if r == '\u2028' || r == '\u2029' {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\u202`...)
				dst = append(dst, hex[r&0xf])
				i += n
				start = i
				continue
			}
			i += n
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			if lines {
				dst = append(dst, '\\', 'n')
				if i+1 < len(s) && s[i+1] == '\n' {
					i++
				}
			} else {
				dst = append(dst, '\\', 'r')
			}
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
