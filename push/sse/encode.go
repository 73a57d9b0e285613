package sse

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"
)

// DefaultEventType is the type a parser reports for an event without an
// "event:" field. AppendBody omits the field for it.
const DefaultEventType = "message"

// AppendBody appends the event type line (omitted when eventType is "" or
// DefaultEventType) and the data lines of one event to dst. It appends
// neither the id nor the terminating blank line, so a server can encode the
// body once per event and frame it per connection:
//
//	frame = AppendID(frame[:0], id)
//	frame = append(frame, body...)
//	frame = append(frame, '\n')
//
// data is split on CRLF, LF and bare CR; each line is written as
// "data: " + line + "\n". Empty data is one empty data line. CR, LF and NUL
// in eventType are replaced by spaces (validate types before publishing; see
// push.ValidateEventType).
func AppendBody(dst []byte, eventType string, data []byte) []byte {
	if eventType != "" && eventType != DefaultEventType {
		dst = append(dst, "event: "...)
		dst = appendSingleLine(dst, eventType)
		dst = append(dst, '\n')
	}
	return appendData(dst, data)
}

// AppendID appends the line "id: <id>\n".
//
// Contract: id satisfies ValidID. An id containing NUL makes parsers ignore
// the field (the client's resume cursor silently stalls), and one containing
// CR or LF would end the line early; to keep the frame well-formed even when
// the contract is broken, CR, LF and NUL are replaced by spaces, which
// still yields a wrong cursor. AppendID does not otherwise check id.
func AppendID(dst []byte, id string) []byte {
	dst = append(dst, "id: "...)
	dst = appendSingleLine(dst, id)
	return append(dst, '\n')
}

// ValidID reports whether id is transmitted intact as an SSE "id:" value and
// comes back unchanged in a Last-Event-ID header: valid UTF-8 without CR, LF
// or NUL. The empty id is valid (on the wire it resets the client's last
// event ID).
func ValidID(id string) bool {
	for i := 0; i < len(id); i++ {
		switch id[i] {
		case '\r', '\n', 0:
			return false
		}
	}
	return utf8.ValidString(id)
}

// AppendEvent appends a complete event: the id line (when id is not empty),
// the body (see AppendBody) and the terminating blank line that makes the
// client dispatch it. The id contract of AppendID applies.
func AppendEvent(dst []byte, id, eventType string, data []byte) []byte {
	if id != "" {
		dst = AppendID(dst, id)
	}
	dst = AppendBody(dst, eventType, data)
	return append(dst, '\n')
}

// AppendRetry appends "retry: <ms>\n\n", setting the client's reconnection
// time. d is truncated to whole milliseconds; a positive d below 1ms becomes
// 1ms and a negative d becomes 0. The trailing blank line makes the frame
// self-contained: it dispatches nothing because it carries no data, and it
// cannot merge with a following event. Do not write it between the lines of
// another event.
func AppendRetry(dst []byte, d time.Duration) []byte {
	ms := d.Milliseconds()
	switch {
	case d <= 0:
		ms = 0
	case ms == 0:
		ms = 1
	}
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, ms, 10)
	return append(dst, '\n', '\n')
}

// AppendComment appends the comment frame ": <text>\n\n", or ":\n\n" when
// text is empty (the usual keep-alive). CR and LF in text are replaced by
// spaces, so the comment is always one line. Like AppendRetry, the frame ends
// with a blank line and must not be written inside another event.
func AppendComment(dst []byte, text string) []byte {
	dst = append(dst, ':')
	if text != "" {
		dst = append(dst, ' ')
		dst = appendSingleLine(dst, text)
	}
	return append(dst, '\n', '\n')
}

// appendSingleLine appends s with CR, LF and NUL replaced by spaces. The
// common case (nothing to replace) is one bulk copy.
func appendSingleLine(dst []byte, s string) []byte {
	for {
		i := indexLineBreakOrNUL(s)
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, ' ')
		s = s[i+1:]
	}
}

func indexLineBreakOrNUL(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r', '\n', 0:
			return i
		}
	}
	return -1
}

// appendData writes data as "data: " lines. The next CR and LF positions are
// cached so that data with many lines of one kind and few of the other is
// still scanned once (two IndexByte passes total, not one per line).
func appendData(dst, data []byte) []byte {
	nextCR := indexFrom(data, 0, '\r')
	nextLF := indexFrom(data, 0, '\n')
	start := 0
	for {
		end := min(nextCR, nextLF)
		dst = append(dst, "data: "...)
		dst = append(dst, data[start:end]...)
		dst = append(dst, '\n')
		if end == len(data) {
			return dst
		}
		start = end + 1
		if data[end] == '\r' && start < len(data) && data[start] == '\n' {
			start++
		}
		if nextCR < start {
			nextCR = indexFrom(data, start, '\r')
		}
		if nextLF < start {
			nextLF = indexFrom(data, start, '\n')
		}
	}
}

// indexFrom returns the index of c in data at or after from, or len(data).
func indexFrom(data []byte, from int, c byte) int {
	if i := bytes.IndexByte(data[from:], c); i >= 0 {
		return from + i
	}
	return len(data)
}
