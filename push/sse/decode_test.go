package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func ev(id, typ, data string) Event { return Event{ID: id, Type: typ, Data: data} }
func msg(id, data string) Event     { return Event{ID: id, Type: "message", Data: data} }

const noRetry = -1

func TestDecoder(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   []Event
		lastID string
		retry  time.Duration // noRetry: none set
	}{
		// Line endings.
		{"LF", "data: a\n\n", []Event{msg("", "a")}, "", noRetry},
		{"CRLF", "data: a\r\ndata: b\r\n\r\n", []Event{msg("", "a\nb")}, "", noRetry},
		{"bare CR", "data: a\rdata: b\r\r", []Event{msg("", "a\nb")}, "", noRetry},
		{"mixed", "data: a\r\n\ndata: b\r\rdata: c\n\r\n", []Event{msg("", "a"), msg("", "b"), msg("", "c")}, "", noRetry},
		{"LF CR is two line ends", "data: a\n\rdata: b\n\n", []Event{msg("", "a"), msg("", "b")}, "", noRetry},
		{"CR CR LF", "data: a\r\r\n", []Event{msg("", "a")}, "", noRetry},
		{"CRLF CRLF", "data: a\r\n\r\ndata: b\r\n\r\n", []Event{msg("", "a"), msg("", "b")}, "", noRetry},

		// BOM.
		{"BOM stripped", "\uFEFFdata: x\n\n", []Event{msg("", "x")}, "", noRetry},
		{"two BOMs: second is part of the field name", "\uFEFF\uFEFFdata: x\n\ndata: y\n\n", []Event{msg("", "y")}, "", noRetry},
		{"BOM after start is data", "data: x\n\n\uFEFFdata: y\n\n", []Event{msg("", "x")}, "", noRetry},
		{"BOM inside value kept", "data: \uFEFFx\n\n", []Event{msg("", "\uFEFFx")}, "", noRetry},
		{"partial BOM is not stripped", "\xEF\xBBdata: x\n\ndata: y\n\n", []Event{msg("", "y")}, "", noRetry},

		// Comments.
		{"comments ignored", ": hi\ndata: x\n: there\n\n", []Event{msg("", "x")}, "", noRetry},
		{"empty comment", ":\n\n:\n\ndata: x\n\n", []Event{msg("", "x")}, "", noRetry},
		{"2049-byte comment", ":" + strings.Repeat("c", 2048) + "\ndata: x\n\n", []Event{msg("", "x")}, "", noRetry},
		{"comment does not dispatch", "data: x\n:\n", nil, "", noRetry},

		// Fields and values.
		{"no colon: field is the whole line", "data\n\n", []Event{msg("", "")}, "", noRetry},
		{"two empty data lines", "data\ndata\n\n", []Event{msg("", "\n")}, "", noRetry},
		{"no space after colon", "data:x\n\n", []Event{msg("", "x")}, "", noRetry},
		{"exactly one space stripped", "data:  x\n\n", []Event{msg("", " x")}, "", noRetry},
		{"tab not stripped", "data:\tx\n\n", []Event{msg("", "\tx")}, "", noRetry},
		{"colon in value", "data: a: b\n\n", []Event{msg("", "a: b")}, "", noRetry},
		{"data lines joined", "data: a\ndata:\ndata: b\n\n", []Event{msg("", "a\n\nb")}, "", noRetry},
		{"empty data line dispatches", "data:\n\n", []Event{msg("", "")}, "", noRetry},
		{"NUL in data kept", "data: a\x00b\n\n", []Event{msg("", "a\x00b")}, "", noRetry},
		{"unknown fields ignored", "foo: bar\nfoo\ndata: x\nbar:\n\n", []Event{msg("", "x")}, "", noRetry},
		{"field names are case-sensitive", "Data: x\n\nDATA: y\nEvent: e\nID: 9\ndata: z\n\n", []Event{msg("", "z")}, "", noRetry},
		{"space before field name", " data: x\n\n", nil, "", noRetry},

		// Event type.
		{"event type", "event: add\ndata: x\n\n", []Event{ev("", "add", "x")}, "", noRetry},
		{"empty event type is message", "event:\ndata: x\n\n", []Event{msg("", "x")}, "", noRetry},
		{"last event field wins", "event: a\nevent: b\ndata: x\n\n", []Event{ev("", "b", "x")}, "", noRetry},
		{"type resets after dispatch", "event: a\ndata: x\n\ndata: y\n\n", []Event{ev("", "a", "x"), msg("", "y")}, "", noRetry},
		{"type resets on empty data buffer", "event: a\n\ndata: y\n\n", []Event{msg("", "y")}, "", noRetry},

		// Last event ID.
		{"id", "id: 1\ndata: x\n\n", []Event{msg("1", "x")}, "1", noRetry},
		{"id persists", "id: 1\ndata: a\n\ndata: b\n\n", []Event{msg("1", "a"), msg("1", "b")}, "1", noRetry},
		{"id after data in block", "data: a\nid: 2\n\n", []Event{msg("2", "a")}, "2", noRetry},
		{"id-only block advances id", "id: 5\n\ndata: x\n\n", []Event{msg("5", "x")}, "5", noRetry},
		{"id-only block at end", "id: 1\ndata: x\n\nid: 2\n\n", []Event{msg("1", "x")}, "2", noRetry},
		{"id with NUL ignored", "id: 1\n\nid: 2\x003\ndata: x\n\n", []Event{msg("1", "x")}, "1", noRetry},
		{"empty id resets", "id: 1\ndata: a\n\nid:\ndata: b\n\n", []Event{msg("1", "a"), msg("", "b")}, "", noRetry},
		{"bare id resets", "id: 1\ndata: a\n\nid\ndata: b\n\n", []Event{msg("1", "a"), msg("", "b")}, "", noRetry},
		{"id with colon and spaces", "id: a:b c \ndata: x\n\n", []Event{msg("a:b c ", "x")}, "a:b c ", noRetry},
		{"id of unterminated block not committed", "id: 1\ndata: a\n\nid: 2\ndata: b\n", []Event{msg("1", "a")}, "1", noRetry},

		// Retry.
		{"retry", "retry: 1000\n", nil, "", time.Second},
		{"retry zero", "retry: 0\n", nil, "", 0},
		{"retry leading zeros", "retry: 010\n", nil, "", 10 * time.Millisecond},
		{"retry no space", "retry:250\n", nil, "", 250 * time.Millisecond},
		{"retry exponent ignored", "retry: 1e3\n", nil, "", noRetry},
		{"retry negative ignored", "retry: -1\n", nil, "", noRetry},
		{"retry extra leading space ignored", "retry:  100\n", nil, "", noRetry},
		{"retry trailing space ignored", "retry: 100 \n", nil, "", noRetry},
		{"retry hex ignored", "retry: 0x10\n", nil, "", noRetry},
		{"retry trailing garbage ignored", "retry: 123x\n", nil, "", noRetry},
		{"retry unit ignored", "retry: 100ms\n", nil, "", noRetry},
		{"retry empty ignored", "retry:\nretry\n", nil, "", noRetry},
		{"retry plus sign ignored", "retry: +5\n", nil, "", noRetry},
		{"retry fullwidth digit ignored", "retry: １\n", nil, "", noRetry},
		{"invalid retry keeps previous", "retry: 300\nretry: x\n", nil, "", 300 * time.Millisecond},
		{"retry overflow clamps", "retry: 99999999999999999999999999\n", nil, "", MaxRetry},
		{"retry applies without dispatch", "retry: 7\ndata: partial\n", nil, "", 7 * time.Millisecond},
		{"retry does not dispatch", "retry: 7\ndata: x\n\n", []Event{msg("", "x")}, "", 7 * time.Millisecond},

		// UTF-8.
		{"invalid byte", "data: a\xffb\n\n", []Event{msg("", "a\uFFFDb")}, "", noRetry},
		{"truncated sequence is one U+FFFD", "data: \xF0\x9F\x98\n\n", []Event{msg("", "\uFFFD")}, "", noRetry},
		{"truncated then ASCII", "data: \xE2\x82x\n\n", []Event{msg("", "\uFFFDx")}, "", noRetry},
		{"surrogate is three U+FFFD", "data: \xED\xA0\x80\n\n", []Event{msg("", "\uFFFD\uFFFD\uFFFD")}, "", noRetry},
		{"overlong is U+FFFD per byte", "data: \xC0\xAF\n\n", []Event{msg("", "\uFFFD\uFFFD")}, "", noRetry},
		{"valid 4-byte", "data: \xF0\x9F\x98\x80\n\n", []Event{msg("", "😀")}, "", noRetry},
		{"invalid id bytes", "id: \xff\ndata: x\n\n", []Event{msg("\uFFFD", "x")}, "\uFFFD", noRetry},
		{"invalid type bytes", "event: \xff\ndata: x\n\n", []Event{ev("", "\uFFFD", "x")}, "", noRetry},

		// End of stream.
		{"empty stream", "", nil, "", noRetry},
		{"unterminated event discarded", "data: a\n\ndata: b\n", []Event{msg("", "a")}, "", noRetry},
		{"unterminated line discarded", "data: a\n\ndata: b", []Event{msg("", "a")}, "", noRetry},
		{"unterminated blank-line CR", "data: a\r", nil, "", noRetry},
		{"final CR dispatches", "data: a\r\r", []Event{msg("", "a")}, "", noRetry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := refResult{Events: tt.want, LastID: tt.lastID}
			if tt.retry != noRetry {
				want.Retry, want.RetrySet = tt.retry, true
			}
			for how, r := range readers([]byte(tt.in)) {
				got, err := decodeStream(r(), DecoderConfig{})
				if err != io.EOF {
					t.Fatalf("%s: err = %v, want io.EOF", how, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: input %q\n got %+v\nwant %+v", how, tt.in, got, want)
				}
			}
			if ref := referenceParse([]byte(tt.in)); !reflect.DeepEqual(ref, want) {
				t.Fatalf("reference parser disagrees with the table: %+v", ref)
			}
		})
	}
}

// A CR ending one read and the LF starting the next are one line end, not a
// line end followed by an empty line (which would dispatch early).
func TestDecoderCRLFSplitAcrossReads(t *testing.T) {
	r := &chunkReader{chunks: [][]byte{
		[]byte("data: a\r"), []byte("\ndata: b\r"), []byte("\n"), []byte("\r"), []byte("\n"),
	}}
	got, err := decodeStream(r, DecoderConfig{})
	if err != io.EOF {
		t.Fatal(err)
	}
	if want := []Event{msg("", "a\nb")}; !reflect.DeepEqual(got.Events, want) {
		t.Fatalf("got %+v, want %+v", got.Events, want)
	}
}

// Next returns as soon as the blank line arrives, without waiting for more
// input: a live stream must not delay events.
func TestDecoderDoesNotReadAhead(t *testing.T) {
	pr, pw := io.Pipe()
	d := NewDecoder(pr)
	go func() {
		_, _ = pw.Write([]byte("\uFEFFdata: a\r"))
		_, _ = pw.Write([]byte("\r"))
	}()
	e, err := d.Next()
	if err != nil || e.Data != "a" {
		t.Fatalf("Next = %+v, %v", e, err)
	}
	go func() {
		_, _ = pw.Write([]byte("\ndata: b\n\n")) // the LF completes the second CR's CRLF
		_ = pw.Close()
	}()
	if _, err := d.Next(); err != nil {
		t.Fatalf("second event: %v", err)
	}
}

func TestDecoderLimits(t *testing.T) {
	small := DecoderConfig{MaxLineLen: 16, MaxEventSize: 10}
	tests := []struct {
		name    string
		cfg     DecoderConfig
		in      string
		want    []Event
		tooLong bool
	}{
		{"event line too long", small, "event: " + strings.Repeat("x", 10) + "\n", nil, true},
		{"unknown field too long", small, strings.Repeat("x", 17) + "\n", nil, true},
		{"line at limit", small, "event: 123456789\ndata: x\n\n", []Event{ev("", "123456789", "x")}, false},
		{"data line longer than MaxLineLen", small, "data: 0123456789\n\n", []Event{msg("", "0123456789")}, false},
		{"event at size limit", small, "data: 1234\ndata: 56789\n\n", []Event{msg("", "1234\n56789")}, false},
		{"event over size limit", small, "data: 12345\ndata: 67890\n\n", nil, true},
		{"one data line over size limit", small, "data: 01234567890\n\n", nil, true},
		{"events before the error delivered", small, "data: ok\n\ndata: 01234567890\n\n", []Event{msg("", "ok")}, true},
		{"long comment is fine", small, ":" + strings.Repeat("c", 100_000) + "\ndata: x\n\n", []Event{msg("", "x")}, false},
		{"size resets per event", small, "data: 0123456789\n\ndata: 0123456789\n\n", []Event{msg("", "0123456789"), msg("", "0123456789")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for how, r := range readers([]byte(tt.in)) {
				got, err := decodeStream(r(), tt.cfg)
				if tt.tooLong != errors.Is(err, ErrTooLarge) || (!tt.tooLong && err != io.EOF) {
					t.Fatalf("%s: err = %v, tooLong = %v", how, err, tt.tooLong)
				}
				if !reflect.DeepEqual(got.Events, tt.want) {
					t.Fatalf("%s: got %+v, want %+v", how, got.Events, tt.want)
				}
			}
		})
	}
}

// endless yields prefix then an unbounded run of fill bytes.
type endless struct {
	prefix []byte
	fill   byte
	n      int64 // bytes produced
}

func (r *endless) Read(p []byte) (int, error) {
	n := copy(p, r.prefix)
	r.prefix = r.prefix[n:]
	for i := n; i < len(p); i++ {
		p[i] = r.fill
	}
	r.n += int64(len(p))
	return len(p), nil
}

// An endless line must end in ErrTooLarge with bounded reading, not OOM.
func TestDecoderEndlessLine(t *testing.T) {
	for _, prefix := range []string{"data: ", "event: ", "x", "dat"} {
		r := &endless{prefix: []byte(prefix), fill: 'a'}
		d := NewDecoder(r)
		if _, err := d.Next(); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%q: err = %v, want ErrTooLarge", prefix, err)
		}
		if r.n > DefaultMaxEventSize+2*readBufSize {
			t.Fatalf("%q: read %d bytes before giving up", prefix, r.n)
		}
		if _, err := d.Next(); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%q: error not sticky: %v", prefix, err)
		}
	}
}

// An endless comment is skipped without buffering.
func TestDecoderEndlessCommentBounded(t *testing.T) {
	in := io.MultiReader(
		strings.NewReader(":"),
		io.LimitReader(&endless{fill: 'c'}, 8<<20),
		strings.NewReader("\ndata: x\n\n"),
	)
	d := NewDecoder(in)
	e, err := d.Next()
	if err != nil || e.Data != "x" {
		t.Fatalf("Next = %+v, %v", e, err)
	}
	if cap(d.line) > 0 {
		t.Fatalf("comment was buffered: cap(line) = %d", cap(d.line))
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestDecoderReaderError(t *testing.T) {
	boom := errors.New("boom")
	d := NewDecoder(&failingReader{data: []byte("id: 1\ndata: a\n\nid: 2\ndata: b\n"), err: boom})
	if e, err := d.Next(); err != nil || e != msg("1", "a") {
		t.Fatalf("Next = %+v, %v", e, err)
	}
	if _, err := d.Next(); err != boom {
		t.Fatalf("err = %v, want boom", err)
	}
	if _, err := d.Next(); err != boom {
		t.Fatalf("error not sticky: %v", err)
	}
	if got := d.LastEventID(); got != "1" {
		t.Fatalf("LastEventID = %q, want 1 (id 2 was never dispatched)", got)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestDecoderNoProgress(t *testing.T) {
	if _, err := NewDecoder(zeroReader{}).Next(); err != io.ErrNoProgress {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
	d := NewDecoder(io.MultiReader(strings.NewReader("data: x"), zeroReader{}))
	if _, err := d.Next(); err != io.ErrNoProgress {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

// Reset models a reconnection: the last event ID and retry carry over, a
// pending event and a half-read line do not, and the BOM rule starts over.
func TestDecoderResetAndSeed(t *testing.T) {
	d := DecoderConfig{LastEventID: "seed"}.NewDecoder(strings.NewReader("data: a\n\nretry: 50\nid: 7\ndata: partial\n\ndata: cut"))
	if d.LastEventID() != "seed" {
		t.Fatalf("seeded LastEventID = %q", d.LastEventID())
	}
	if e, _ := d.Next(); e != msg("seed", "a") {
		t.Fatalf("event = %+v, want the seed as its ID", e)
	}
	if e, _ := d.Next(); e != msg("7", "partial") {
		t.Fatalf("event = %+v", e)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatal(err)
	}
	d.Reset(strings.NewReader("\uFEFFdata: b\n\n"))
	if e, err := d.Next(); err != nil || e != msg("7", "b") {
		t.Fatalf("after Reset: %+v, %v", e, err)
	}
	if r, ok := d.Retry(); !ok || r != 50*time.Millisecond {
		t.Fatalf("Retry = %v, %v", r, ok)
	}
}

func TestDecodeUTF8(t *testing.T) {
	// Vectors from the Encoding Standard's UTF-8 decoder (maximal subparts).
	tests := []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"\x80", "\uFFFD"},
		{"\xC2", "\uFFFD"},
		{"\xC2\x41", "\uFFFDA"},
		{"\xE0\x80\x80", "\uFFFD\uFFFD\uFFFD"},
		{"\xE0\xA0", "\uFFFD"},
		{"\xF4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"\xF0\x90\x80", "\uFFFD"},
		{"\xF0\x90\x80\xF0\x90\x80\x80", "\uFFFD\U00010000"},
		{"\xF5", "\uFFFD"},
		{"\xFF\xFE", "\uFFFD\uFFFD"},
		{"a\xED\x9F\xBFb", "a\uD7FFb"},
	}
	for _, tt := range tests {
		if got := decodeUTF8([]byte(tt.in)); got != tt.want {
			t.Errorf("decodeUTF8(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// normalise is what a receiver gets for data sent through the encoder.
func normalise(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return decodeUTF8([]byte(s))
}

func TestRoundTrip(t *testing.T) {
	alphabet := []string{"a", "b", " ", "  ", "\n", "\r", "\r\n", ":", "é", "😀", "\x00", "data: ", "\uFEFF", "\xff"}
	seed := uint64(1)
	next := func(n int) int { // xorshift: deterministic, no shared state
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return int(seed % uint64(n))
	}
	var stream []byte
	var want []Event
	for i := range 2000 {
		var b strings.Builder
		for range next(12) {
			b.WriteString(alphabet[next(len(alphabet))])
		}
		data := b.String()
		id := []string{"", "1", "AQID-_", "x y"}[next(4)]
		typ := []string{"", "message", "update", "herald.reset"}[next(4)]
		stream = AppendEvent(stream, id, typ, []byte(data))
		if i%7 == 0 {
			stream = AppendComment(stream, "hb")
		}
		if i%11 == 0 {
			stream = AppendRetry(stream, time.Duration(i)*time.Millisecond)
		}
		wantID := id
		if id == "" && len(want) > 0 {
			wantID = want[len(want)-1].ID
		}
		wantType := typ
		if typ == "" {
			wantType = "message"
		}
		want = append(want, Event{ID: wantID, Type: wantType, Data: normalise(data)})
	}
	for how, r := range readers(stream) {
		got, err := decodeStream(r(), DecoderConfig{})
		if err != io.EOF {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Events, want) {
			for i := range min(len(got.Events), len(want)) {
				if got.Events[i] != want[i] {
					t.Fatalf("%s: event %d: got %+v, want %+v", how, i, got.Events[i], want[i])
				}
			}
			t.Fatalf("%s: got %d events, want %d", how, len(got.Events), len(want))
		}
	}
}

// seeds are real frames plus the table inputs.
func seeds() [][]byte {
	s := [][]byte{
		[]byte("retry: 2500\n\nid: AQIDBAUGBwgJ\nevent: herald.hello\ndata: {\"session\":\"s1\",\"node\":\"n1\",\"topics\":[\"a\"],\"cursor\":\"AQIDBAUGBwgJ\"}\n\n"),
		[]byte("id: AQIDBAUGBwgK\nevent: herald.reset\ndata: {\"topic\":\"a\",\"origin\":\"eu\",\"reason\":\"trimmed\",\"lost_from\":1,\"lost_to\":9}\n\n:\n\n"),
		AppendEvent(nil, "AQID", "update", []byte("multi\r\nline\rdata\n with space")),
		[]byte("\uFEFFdata: a\r\n\r\ndata: b\r\r"),
		[]byte("id: 1\x00\nretry: 0x10\nretry: 010\nData: y\ndata\n\n"),
		[]byte("data: \xF0\x9F\x98\n\n"),
	}
	return s
}

func FuzzDecoder(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s, uint8(1))
		f.Add(s, uint8(200))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		// Unlimited: must agree exactly with the reference parser, whatever
		// the read boundaries.
		want := referenceParse(in)
		got, err := decodeStream(splitEvery(in, int(chunk%9)+1), DecoderConfig{MaxLineLen: len(in) + 1, MaxEventSize: len(in) + 1})
		if err != io.EOF {
			t.Fatalf("err = %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoder and reference disagree on %q\n got %+v\nwant %+v", in, got, want)
		}

		// Small limits: memory stays bounded and what is delivered before an
		// error is a prefix of the truth.
		cfg := DecoderConfig{MaxLineLen: 32, MaxEventSize: 64}
		d := cfg.NewDecoder(splitEvery(in, int(chunk%5)+1))
		var events []Event
		for {
			e, err := d.Next()
			if len(d.line) > max(cfg.MaxLineLen, cfg.MaxEventSize+6)+readBufSize || len(d.data) > cfg.MaxEventSize+1 {
				t.Fatalf("buffers over the limits: line %d, data %d", len(d.line), len(d.data))
			}
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if len(e.Data) > 3*cfg.MaxEventSize { // U+FFFD can triple invalid bytes
				t.Fatalf("event of %d bytes", len(e.Data))
			}
			events = append(events, e)
		}
		if len(events) > len(want.Events) || !slices.Equal(events, want.Events[:len(events)]) {
			t.Fatalf("limited decoder delivered %+v, reference %+v", events, want.Events)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add("AQID", "update", []byte("multi\r\nline\rdata\n with space"))
	f.Add("", "", []byte(""))
	f.Add("1", "message", []byte("\r\r\n\n"))
	f.Add("x", "herald.hello", []byte(`{"session":"s"}`))
	f.Fuzz(func(t *testing.T, id, typ string, data []byte) {
		if !ValidID(id) {
			id = ""
		}
		frame := AppendEvent(nil, id, typ, data)
		frame = AppendComment(frame, "between")
		frame = AppendEvent(frame, id, typ, data)
		got, err := decodeStream(bytes.NewReader(frame), DecoderConfig{MaxEventSize: len(data) + 1})
		if err != io.EOF {
			t.Fatalf("err = %v", err)
		}
		if len(got.Events) != 2 || got.Events[0] != got.Events[1] {
			t.Fatalf("got %+v, want two equal events", got.Events)
		}
		e := got.Events[0]
		if want := normalise(string(data)); e.Data != want {
			t.Fatalf("Data = %q, want %q", e.Data, want)
		}
		if e.ID != id {
			t.Fatalf("ID = %q, want %q", e.ID, id)
		}
		sanitised := []byte(typ)
		for i, c := range sanitised {
			if c == '\r' || c == '\n' || c == 0 {
				sanitised[i] = ' '
			}
		}
		wantType := decodeUTF8(sanitised)
		if wantType == "" {
			wantType = "message"
		}
		if e.Type != wantType {
			t.Fatalf("Type = %q, want %q", e.Type, wantType)
		}
	})
}

func benchmarkDecode(b *testing.B, size, events int) {
	var stream []byte
	data := []byte(strings.Repeat("x", size))
	for range events {
		stream = AppendEvent(stream, "AQIDBAUGBwgJCgsMDQ4PEA", "update", data)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	r := bytes.NewReader(stream)
	d := NewDecoder(r)
	for b.Loop() {
		r.Reset(stream)
		d.Reset(r)
		for {
			if _, err := d.Next(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, size := range []int{64, 1024, 16 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			benchmarkDecode(b, size, 100)
		})
	}
}
