// Package sse encodes and decodes the text/event-stream wire format of the
// WHATWG HTML Living Standard, §9.2 "Server-sent events".
//
// Encoding. The Append* functions append one frame piece to a caller-owned
// buffer and return it, like strconv.Append*: with a buffer of sufficient
// capacity they do not allocate. A server encodes an event's body once
// (AppendBody) and prefixes each connection's id (AppendID) before the
// terminating blank line, or writes a whole event with AppendEvent. The
// encoder guarantees that what it appends is parsed back as exactly the
// fields it was given:
//   - data is split on CRLF, LF and bare CR into one "data: " line per line,
//     so a bare CR never reaches the wire inside a data line and a conforming
//     parser returns the data with every line break normalised to LF;
//   - every data line is written as "data: " + line, so a payload that starts
//     with a space keeps it (parsers strip exactly one space);
//   - empty data is written as one empty data line, so the event still fires;
//   - values that must be single-line (event type, id, comment text) are
//     never allowed to inject lines: CR, LF and NUL in them are replaced by
//     a space. Callers are still expected to validate ids (ValidID), since a
//     rewritten id is a wrong resume cursor.
//
// Decoding. Decoder is a streaming parser that follows the standard's
// interpretation rules (§9.2.6) byte for byte: a leading UTF-8 BOM is
// stripped once; CR, LF and CRLF end lines, including a CRLF split across
// reads; comments and unknown fields are ignored; invalid UTF-8 becomes
// U+FFFD with the Encoding Standard's replacement rules; an event is
// returned only when its terminating blank line has been read, so an event
// cut off by the end of the stream is never returned. Memory is bounded:
// lines and the data buffer have configurable caps (DecoderConfig), and
// exceeding one yields ErrTooLarge instead of growth. Comment lines, which
// carry nothing, are skipped without being buffered, whatever their length.
//
// Concurrency. The encoding functions are pure and safe for concurrent use.
// A Decoder is owned by one goroutine; none of its methods may be called
// concurrently with Next.
package sse
