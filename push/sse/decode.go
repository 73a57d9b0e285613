package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// Errors returned by Decoder.Next besides those of the underlying reader.
var (
	// ErrTooLarge: a line or an event's data exceeded the decoder's limits.
	// The decoder stops; the stream cannot be resynchronised.
	ErrTooLarge = errors.New("sse: line or event too large")
)

// Default decoder limits.
const (
	DefaultMaxLineLen   = 64 << 10
	DefaultMaxEventSize = 1 << 20
	// MaxRetry is the largest reconnection time Retry reports: retry values
	// beyond it (up to any number of digits) are clamped to it, not ignored.
	MaxRetry = time.Duration(math.MaxInt64/int64(time.Millisecond)) * time.Millisecond
)

const readBufSize = 16 << 10

// DecoderConfig tunes a Decoder. The zero value gives the defaults.
type DecoderConfig struct {
	// MaxLineLen caps the length in bytes of any line other than a data line
	// or a comment, excluding the line break. Zero means DefaultMaxLineLen.
	MaxLineLen int
	// MaxEventSize caps an event's data: the sum of its data values plus the
	// LFs joining them. A single data line may be up to this long, so events
	// sent as one long line (typical for JSON) need no larger MaxLineLen.
	// Zero means DefaultMaxEventSize.
	MaxEventSize int
	// LastEventID seeds the last event ID, as a browser does on reconnection:
	// events of the new connection that carry no id report it, and
	// LastEventID returns it until the stream sets another.
	LastEventID string
}

// Event is one dispatched event.
type Event struct {
	// ID is the last event ID when the event was dispatched: the value of the
	// most recent "id:" field of the stream (which may precede this event),
	// or the seed. It is "" when none was seen or an empty "id:" reset it.
	ID string
	// Type is the event type; DefaultEventType when the event named none.
	Type string
	// Data is the event's data lines joined with LF.
	Data string
}

// Decoder parses an event stream. See the package documentation for its
// guarantees. The zero value is not usable; use NewDecoder.
type Decoder struct {
	r       io.Reader
	readErr error // error returned by r alongside data, reported once the data is consumed
	err     error // sticky error returned by Next

	buf    []byte
	r0, w0 int // unread bytes are buf[r0:w0]
	// nextCR and nextLF cache the position of the next CR / LF in buf at or
	// after r0 (w0 when there is none). They are valid while >= r0 and are
	// reset by fill. The cache keeps a stream that uses only one kind of line
	// break from rescanning the buffer for the other kind on every line.
	nextCR, nextLF int

	started bool // BOM check done
	skipLF  bool // the previous line ended with CR: a following LF belongs to it
	line    []byte

	maxLine, maxEvent int

	data      []byte
	eventType []byte
	idBuf     []byte
	idBufSet  bool   // idBuf differs from lastID
	lastID    string // the last event ID string: updated at dispatch
	lastType  string // the most recent Type, reused to avoid an allocation

	retry    time.Duration
	retrySet bool
}

// NewDecoder returns a Decoder with the default limits reading from r.
func NewDecoder(r io.Reader) *Decoder { return DecoderConfig{}.NewDecoder(r) }

// NewDecoder returns a Decoder with c's limits reading from r.
func (c DecoderConfig) NewDecoder(r io.Reader) *Decoder {
	d := &Decoder{
		maxLine:  c.MaxLineLen,
		maxEvent: c.MaxEventSize,
		lastID:   c.LastEventID,
		buf:      make([]byte, readBufSize),
	}
	if d.maxLine <= 0 {
		d.maxLine = DefaultMaxLineLen
	}
	if d.maxEvent <= 0 {
		d.maxEvent = DefaultMaxEventSize
	}
	d.idBuf = append(d.idBuf, d.lastID...)
	d.Reset(r)
	return d
}

// Reset makes d parse a new stream from r, as a reconnecting EventSource
// does: the last event ID and the reconnection time carry over, everything
// else (pending event, partial line, BOM state, errors) is discarded.
func (d *Decoder) Reset(r io.Reader) {
	d.r = r
	d.readErr, d.err = nil, nil
	d.r0, d.w0 = 0, 0
	d.nextCR, d.nextLF = -1, -1
	d.started, d.skipLF = false, false
	d.line = d.line[:0]
	d.resetEvent()
	d.idBuf = append(d.idBuf[:0], d.lastID...)
	d.idBufSet = false
}

// LastEventID returns the last event ID string: the ID of the most recent
// dispatch point (blank line) of the stream, including blocks that carried an
// id but no data. It is the value to send as Last-Event-ID when resuming, and
// never reflects an id of an event that has not been terminated.
func (d *Decoder) LastEventID() string { return d.lastID }

// Retry returns the latest valid reconnection time the stream has set and
// whether one was set. Values above MaxRetry are reported as MaxRetry.
func (d *Decoder) Retry() (time.Duration, bool) { return d.retry, d.retrySet }

// Next reads until the next event is dispatched and returns it. At the end
// of the stream it returns io.EOF and discards any unterminated event. Errors
// are sticky: after one, Next keeps returning it until Reset.
func (d *Decoder) Next() (Event, error) {
	if d.err != nil {
		return Event{}, d.err
	}
	for {
		line, err := d.readLine()
		if err == nil {
			var ev Event
			var ok bool
			if ev, ok, err = d.processLine(line); err == nil {
				if ok {
					return ev, nil
				}
				continue
			}
		}
		d.err = err
		d.resetEvent()
		return Event{}, err
	}
}

func (d *Decoder) resetEvent() {
	if cap(d.data) > 64<<10 {
		d.data = nil // do not pin a rare huge event's buffer for the stream's life
	}
	d.data = d.data[:0]
	d.eventType = d.eventType[:0]
}

// fill reads into the empty buffer. It returns an error only when no data
// was read.
func (d *Decoder) fill() error {
	if d.readErr != nil {
		return d.readErr
	}
	d.r0, d.w0 = 0, 0
	d.nextCR, d.nextLF = -1, -1
	for range 100 {
		n, err := d.r.Read(d.buf)
		if n < 0 || n > len(d.buf) {
			return fmt.Errorf("sse: reader returned invalid count %d", n)
		}
		if n > 0 {
			d.w0 = n
			d.readErr = err
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// start strips a BOM at the very beginning of the stream, reading as many
// times as needed to see its three bytes.
func (d *Decoder) start() error {
	for empty := 0; d.w0 < len(bom) && bytes.HasPrefix(bom, d.buf[:d.w0]); {
		if d.readErr != nil {
			if d.w0 > 0 {
				break // a BOM prefix, then the end: parse what there is
			}
			return d.readErr
		}
		n, err := d.r.Read(d.buf[d.w0:])
		if n < 0 || n > len(d.buf)-d.w0 {
			return fmt.Errorf("sse: reader returned invalid count %d", n)
		}
		d.w0 += n
		d.readErr = err
		if n == 0 && err == nil {
			if empty++; empty == 100 {
				return io.ErrNoProgress
			}
		}
	}
	d.r0 = 0
	if bytes.HasPrefix(d.buf[:d.w0], bom) {
		d.r0 = len(bom)
	}
	d.started = true
	return nil
}

// commentLine stands for any comment line: its content is never needed.
var commentLine = []byte{':'}

// readLine returns the next complete line without its terminator. The slice
// is valid until the next call. A line cut off by the end of the stream is
// discarded and the read error returned.
func (d *Decoder) readLine() ([]byte, error) {
	if !d.started {
		if err := d.start(); err != nil {
			return nil, err
		}
	}
	d.line = d.line[:0]
	partial, comment := false, false
	for {
		if d.r0 == d.w0 {
			if err := d.fill(); err != nil {
				return nil, err
			}
		}
		if d.skipLF {
			d.skipLF = false
			if d.buf[d.r0] == '\n' {
				d.r0++
				continue
			}
		}
		if !partial && d.buf[d.r0] == ':' {
			comment = true
		}
		i := d.indexLineBreak()
		if i < d.w0 {
			seg := d.buf[d.r0:i]
			d.skipLF = d.buf[i] == '\r'
			d.r0 = i + 1
			switch {
			case comment:
				return commentLine, nil
			case !partial:
				if len(seg) > d.lineLimit(seg) {
					return nil, d.tooLong(seg)
				}
				return seg, nil
			}
			d.line = append(d.line, seg...)
			if len(d.line) > d.lineLimit(d.line) {
				return nil, d.tooLong(d.line)
			}
			return d.line, nil
		}
		if !comment {
			d.line = append(d.line, d.buf[d.r0:d.w0]...)
			if len(d.line) > d.lineLimit(d.line) {
				return nil, d.tooLong(d.line)
			}
		}
		partial = true
		d.r0 = d.w0
	}
}

// indexLineBreak returns the position in buf of the first CR or LF at or
// after r0, or w0.
func (d *Decoder) indexLineBreak() int {
	if d.nextCR < d.r0 {
		d.nextCR = d.w0
		if i := bytes.IndexByte(d.buf[d.r0:d.w0], '\r'); i >= 0 {
			d.nextCR = d.r0 + i
		}
	}
	if d.nextLF < d.r0 {
		d.nextLF = d.w0
		if i := bytes.IndexByte(d.buf[d.r0:d.w0], '\n'); i >= 0 {
			d.nextLF = d.r0 + i
		}
	}
	return min(d.nextCR, d.nextLF)
}

// lineLimit is the length cap of a line starting with prefix: data lines are
// bounded by the event size (checked exactly when the value is appended),
// every other line by MaxLineLen.
func (d *Decoder) lineLimit(prefix []byte) int {
	if bytes.HasPrefix(prefix, dataPrefix) || (len(prefix) < len(dataPrefix) && bytes.HasPrefix(dataPrefix, prefix)) {
		return d.maxEvent + len("data: ")
	}
	return d.maxLine
}

// dataPrefix is how every line of the data field that has a value begins.
var dataPrefix = []byte("data:")

func (d *Decoder) tooLong(line []byte) error {
	if d.lineLimit(line) != d.maxLine {
		return fmt.Errorf("%w: event data exceeds %d bytes", ErrTooLarge, d.maxEvent)
	}
	return fmt.Errorf("%w: line exceeds %d bytes", ErrTooLarge, d.maxLine)
}

var (
	dataField  = []byte("data")
	eventField = []byte("event")
	idField    = []byte("id")
	retryField = []byte("retry")
)

// processLine interprets one line (§9.2.6) and reports a dispatched event.
func (d *Decoder) processLine(line []byte) (Event, bool, error) {
	if len(line) == 0 {
		ev, ok := d.dispatch()
		return ev, ok, nil
	}
	if line[0] == ':' {
		return Event{}, false, nil
	}
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch {
	case bytes.Equal(field, dataField):
		if len(d.data)+len(value) > d.maxEvent {
			return Event{}, false, fmt.Errorf("%w: event data exceeds %d bytes", ErrTooLarge, d.maxEvent)
		}
		d.data = append(d.data, value...)
		d.data = append(d.data, '\n')
	case bytes.Equal(field, eventField):
		d.eventType = append(d.eventType[:0], value...)
	case bytes.Equal(field, idField):
		if bytes.IndexByte(value, 0) < 0 {
			d.idBuf = append(d.idBuf[:0], value...)
			d.idBufSet = true
		}
	case bytes.Equal(field, retryField):
		if ms, ok := parseRetry(value); ok {
			d.retry, d.retrySet = time.Duration(ms)*time.Millisecond, true
		}
	}
	return Event{}, false, nil
}

// dispatch runs the dispatch steps at a blank line.
func (d *Decoder) dispatch() (Event, bool) {
	if d.idBufSet {
		if string(d.idBuf) != d.lastID {
			d.lastID = decodeUTF8(d.idBuf)
		}
		d.idBufSet = false
	}
	if len(d.data) == 0 {
		d.eventType = d.eventType[:0]
		return Event{}, false
	}
	ev := Event{ID: d.lastID, Data: decodeUTF8(d.data[:len(d.data)-1])}
	switch {
	case len(d.eventType) == 0:
		ev.Type = DefaultEventType
	case string(d.eventType) == d.lastType:
		ev.Type = d.lastType
	default:
		ev.Type = decodeUTF8(d.eventType)
		d.lastType = ev.Type
	}
	d.resetEvent()
	return ev, true
}

// parseRetry accepts one or more ASCII digits and nothing else. Values too
// large for a time.Duration in milliseconds saturate at MaxRetry.
func parseRetry(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	const maxMs = int64(MaxRetry / time.Millisecond)
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		digit := int64(c - '0')
		if n > (maxMs-digit)/10 {
			n = maxMs
			continue
		}
		n = n*10 + digit
	}
	return n, true
}

// decodeUTF8 is the Encoding Standard's UTF-8 decode without BOM handling:
// each maximal ill-formed subsequence becomes one U+FFFD. Go's own
// conversions replace per byte instead, which would give a different string
// from a browser for truncated sequences.
func decodeUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out := make([]byte, 0, len(b)+8)
	var (
		needed, seen int
		cp           rune
		lower, upper byte = 0x80, 0xBF
	)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if needed == 0 {
			switch {
			case c < 0x80:
				out = append(out, c)
			case c >= 0xC2 && c <= 0xDF:
				needed, cp = 1, rune(c&0x1F)
			case c >= 0xE0 && c <= 0xEF:
				switch c {
				case 0xE0:
					lower = 0xA0
				case 0xED:
					upper = 0x9F
				}
				needed, cp = 2, rune(c&0x0F)
			case c >= 0xF0 && c <= 0xF4:
				switch c {
				case 0xF0:
					lower = 0x90
				case 0xF4:
					upper = 0x8F
				}
				needed, cp = 3, rune(c&0x07)
			default:
				out = utf8.AppendRune(out, utf8.RuneError)
			}
			continue
		}
		if c < lower || c > upper {
			needed, seen, cp, lower, upper = 0, 0, 0, 0x80, 0xBF
			out = utf8.AppendRune(out, utf8.RuneError)
			i-- // reprocess c as the start of a new sequence
			continue
		}
		lower, upper = 0x80, 0xBF
		cp = cp<<6 | rune(c&0x3F)
		if seen++; seen == needed {
			out = utf8.AppendRune(out, cp)
			needed, seen, cp = 0, 0, 0
		}
	}
	if needed != 0 {
		out = utf8.AppendRune(out, utf8.RuneError)
	}
	return string(out)
}
