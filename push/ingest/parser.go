package ingest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/heraldpush/herald/push"
)

// Errors of one line (Line.Err wraps one of them) and of a whole body.
var (
	// ErrInvalidJSON: the line is not exactly one JSON value in valid
	// UTF-8 without duplicate member names.
	ErrInvalidJSON = errors.New("line is not valid JSON")
	// ErrLineTooLong: the line exceeds the event size limit.
	ErrLineTooLong = errors.New("line too long")
	// ErrNoTopic: the line lacks a field of the topic template and there
	// is no default topic.
	ErrNoTopic = errors.New("no topic for line")
	// ErrTooManyLines: the body holds more lines than the limit; nothing
	// of it may be appended.
	ErrTooManyLines = errors.New("too many lines")
)

// Line is one decoded non-blank line. The Parser reuses it and its
// buffers: the callback must copy what it keeps.
type Line struct {
	// Number is the line's 1-based position in the body (blank lines
	// count).
	Number int
	// Data is the line without surrounding whitespace (compacted when it
	// held a CR), valid JSON.
	Data []byte
	// Topic is the line's topic.
	Topic string
	// DedupKey is the line's deduplication key ("" without dedup):
	// "ingest:<base64url SHA-256>" over the dedup scope and the dedup
	// field's value or the line.
	DedupKey string
	// Err, when set, is why the line is refused; the other fields except
	// Number are then unset.
	Err error
}

// dedupPrefix starts every dedup key, apart from publishers' own keys.
const dedupPrefix = "ingest:"

// Parser decodes NDJSON bodies for one request. Build it with NewParser.
type Parser struct {
	profile  *Profile
	topic    string // fixed topic from the URL ("" = render)
	maxLines int
	maxData  int

	dec    jsontext.Decoder
	buf    bytes.Buffer
	vals   []*string         // values of paths (template fields, then dedup field)
	store  []string          // backing for vals
	all    []int             // 0..len(paths)-1
	topics map[string]string // rendered topics seen valid, interned
	scope  string
	paths  [][]string
	tbuf   []byte
	compat []byte
	line   Line
}

// NewParser returns a parser for one request. topic is the URL's topic
// ("" renders it from profile's template, which must then be set);
// profile may be nil (no template, no dedup, event type "log"); maxLines
// bounds the non-blank lines; maxData bounds each line's data.
func NewParser(profile *Profile, topic string, maxLines, maxData int) *Parser {
	p := &Parser{profile: profile, topic: topic, maxLines: maxLines, maxData: maxData, topics: map[string]string{}}
	if profile != nil {
		if topic == "" && profile.Topic != nil {
			p.paths = append(p.paths, profile.Topic.Paths()...)
		}
		if profile.Dedup == DedupField {
			p.paths = append(p.paths, profile.DedupPath)
		}
	}
	p.vals = make([]*string, len(p.paths))
	p.store = make([]string, len(p.paths))
	p.all = make([]int, len(p.paths))
	for i := range p.all {
		p.all[i] = i
	}
	return p
}

// SetDedupScope makes every dedup key depend on scope (the publisher's
// tenant, in an injective encoding), so that two tenants' identical lines
// never share a key. Keys stay "ingest:" plus 43 characters whatever the
// scope.
func (p *Parser) SetDedupScope(scope string) { p.scope = scope }

// Event is the event type of the parser's lines.
func (p *Parser) Event() string {
	if p.profile == nil {
		return DefaultEventType
	}
	return p.profile.Event
}

// Decode reads body line by line (LF or CRLF) and calls each for every
// non-blank line in order, with the line's topic and dedup key or its
// error. It holds at most one line (maxData plus 1 KiB of whitespace) in
// memory. It returns the number of non-blank lines; its error is
// ErrTooManyLines (each may have been called for the first maxLines
// lines) or the body's read error (a *http.MaxBytesError, a deadline).
func (p *Parser) Decode(body io.Reader, each func(*Line)) (int, error) {
	window := p.maxData + 1024
	br := bufio.NewReaderSize(body, min(window, 64<<10))
	var long []byte // a line longer than br's buffer, assembled
	num, n := 0, 0
	for {
		chunk, err := br.ReadSlice('\n')
		line := chunk
		tooLong := false
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], chunk...)
			for errors.Is(err, bufio.ErrBufferFull) {
				chunk, err = br.ReadSlice('\n')
				if len(long) <= window {
					long = append(long, chunk...)
				}
			}
			tooLong = len(long) > window
			line = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return n, err
		}
		if len(line) > 0 {
			num++
			data := trimJSONSpace(line)
			if len(data) > 0 {
				if n == p.maxLines {
					return n, fmt.Errorf("%w: a request holds at most %d lines", ErrTooManyLines, p.maxLines)
				}
				n++
				p.parse(num, data, tooLong)
				each(&p.line)
			}
		}
		if err != nil {
			return n, nil
		}
	}
}

// parse fills p.line for one trimmed non-blank line.
func (p *Parser) parse(num int, data []byte, tooLong bool) {
	p.line = Line{Number: num}
	if tooLong || len(data) > p.maxData {
		p.line.Err = fmt.Errorf("%w: line %d exceeds %d bytes", ErrLineTooLong, num, p.maxData)
		return
	}
	for i := range p.vals {
		p.vals[i] = nil
	}
	if err := p.scan(data); err != nil {
		p.line.Err = fmt.Errorf("%w: line %d: %s", ErrInvalidJSON, num, jsonReason(err))
		return
	}
	if bytes.IndexByte(data, '\r') >= 0 {
		// A CR between tokens would end an SSE data line; the value
		// compacted has none (escaped inside strings).
		p.compat = append(p.compat[:0], data...)
		v := jsontext.Value(p.compat)
		if err := v.Compact(); err != nil {
			p.line.Err = fmt.Errorf("%w: line %d: %s", ErrInvalidJSON, num, jsonReason(err))
			return
		}
		data = v
		if len(data) > p.maxData {
			p.line.Err = fmt.Errorf("%w: line %d exceeds %d bytes", ErrLineTooLong, num, p.maxData)
			return
		}
	}
	topic, err := p.topicOf(num)
	if err != nil {
		p.line.Err = err
		return
	}
	p.line.Data = data
	p.line.Topic = topic
	p.line.DedupKey = p.dedupKey(data)
}

func (p *Parser) topicOf(num int) (string, error) {
	if p.topic != "" {
		return p.topic, nil
	}
	if p.profile == nil || p.profile.Topic == nil {
		return "", fmt.Errorf("%w: line %d: no topic in the URL and no topic template for this key", ErrNoTopic, num)
	}
	t := p.profile.Topic
	if t.Fixed() {
		return t.String(), nil
	}
	var ok bool
	p.tbuf, ok = t.render(p.vals[:len(t.Paths())], p.tbuf)
	switch {
	case !ok && p.profile.DefaultTopic != "":
		return p.profile.DefaultTopic, nil
	case !ok:
		return "", fmt.Errorf("%w: line %d lacks a field of %q and no default_topic is configured", ErrNoTopic, num, t.String())
	}
	if topic, ok := p.topics[string(p.tbuf)]; ok {
		return topic, nil
	}
	topic := string(p.tbuf)
	if err := push.ValidateTopic(topic); err != nil {
		return "", fmt.Errorf("line %d: template %q: %w", num, t.String(), err)
	}
	if len(p.topics) < maxTopicsCached {
		p.topics[topic] = topic
	}
	return topic, nil
}

// maxTopicsCached bounds a parser's cache of rendered topics.
const maxTopicsCached = 256

func (p *Parser) dedupKey(data []byte) string {
	if p.profile == nil || p.profile.Dedup == DedupNone {
		return ""
	}
	// The hash covers the scope, a kind byte and the source: no field
	// value can stand for a line, nor one scope's key for another's.
	src := append(p.tbuf[:0], p.scope...)
	if v := p.fieldValue(); v != "" {
		src = append(src, 'f')
		src = append(src, v...)
	} else {
		src = append(src, 'h')
		src = append(src, data...)
	}
	p.tbuf = src
	sum := sha256.Sum256(src)
	var key [len(dedupPrefix) + 43]byte // 43: base64url of 32 bytes, unpadded
	copy(key[:], dedupPrefix)
	base64.RawURLEncoding.Encode(key[len(dedupPrefix):], sum[:])
	return string(key[:])
}

// fieldValue is the dedup field's value ("" when absent or not DedupField).
func (p *Parser) fieldValue() string {
	if p.profile.Dedup != DedupField {
		return ""
	}
	if v := p.vals[len(p.vals)-1]; v != nil {
		return *v
	}
	return ""
}

// scan validates data as exactly one JSON value and records the values of
// p.paths found in it.
func (p *Parser) scan(data []byte) error {
	p.buf = *bytes.NewBuffer(data)
	p.dec.Reset(&p.buf)
	if len(p.paths) == 0 || p.dec.PeekKind() != '{' {
		if err := p.dec.SkipValue(); err != nil {
			return err
		}
	} else {
		if _, err := p.dec.ReadToken(); err != nil {
			return err
		}
		if err := p.object(0, p.all); err != nil {
			return err
		}
	}
	if _, err := p.dec.ReadToken(); !errors.Is(err, io.EOF) {
		if err == nil {
			return errors.New("more than one JSON value on the line")
		}
		return err
	}
	return nil
}

// object reads the members of an object whose '{' was read, at path depth
// depth, recording the scalar values of the candidate paths (those whose
// first depth segments led here).
func (p *Parser) object(depth int, cands []int) error {
	var next, deeper []int
	for p.dec.PeekKind() != '}' {
		raw, err := p.dec.ReadValue() // a member name: a quoted string
		if err != nil {
			return err
		}
		name := raw[1 : len(raw)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			s, err := jsontext.AppendUnquote(nil, raw)
			if err != nil {
				return err
			}
			name = s
		}
		next, deeper = next[:0], deeper[:0]
		for _, c := range cands {
			if path := p.paths[c]; path[depth] == string(name) {
				if len(path) == depth+1 {
					next = append(next, c)
				} else {
					deeper = append(deeper, c)
				}
			}
		}
		kind := p.dec.PeekKind()
		switch {
		case len(next) > 0 && (kind == '"' || kind == '0' || kind == 't' || kind == 'f'):
			tok, err := p.dec.ReadToken()
			if err != nil {
				return err
			}
			var s string
			switch kind {
			case '"':
				s = tok.String()
			case '0':
				s = tok.String() // the number's literal text
			case 't':
				s = "true"
			default:
				s = "false"
			}
			for _, c := range next {
				p.store[c] = s
				p.vals[c] = &p.store[c]
			}
		case len(deeper) > 0 && kind == '{':
			if _, err := p.dec.ReadToken(); err != nil {
				return err
			}
			if err := p.object(depth+1, append([]int(nil), deeper...)); err != nil {
				return err
			}
		default:
			if err := p.dec.SkipValue(); err != nil {
				return err
			}
		}
	}
	_, err := p.dec.ReadToken() // '}', or the syntax error PeekKind saw
	return err
}

// trimJSONSpace trims JSON whitespace (space, tab, CR, LF) from both ends.
func trimJSONSpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// jsonReason is a JSON error without the decoder's package prefix, bounded.
func jsonReason(err error) string {
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		return clip(se.Err.Error()) + " at byte " + strconv.FormatInt(se.ByteOffset, 10)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of line"
	}
	return clip(err.Error())
}
