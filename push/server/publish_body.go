package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"unicode/utf8"
)

// errAfter is a reader of b that then fails with err: the bytes a
// streaming reader delivered before its error, replayed.
type errAfter struct {
	b   []byte
	err error
}

func (r *errAfter) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, r.err
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// parsePublishBody is the fast path of a POST /v1/topics/{topic}/events
// body: it accepts only the plain shape publishers send,
//
//	{"event":"<type>","data":<value>}
//
// (either member optional and in either order, each at most once, the
// names lowercase and unescaped, the type a string without escapes or
// control characters, data any valid JSON value but null, JSON whitespace
// anywhere) and reports ok=false for anything else, which the caller then
// decodes with encoding/json exactly as before. Whatever it accepts,
// encoding/json (strict: unknown fields and trailing data refused) decodes
// to the same event and data (FuzzParsePublishBody). event and data are
// subslices of b.
func parsePublishBody(b []byte) (event, data []byte, ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, nil, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, nil, skipWS(b, i+1) == len(b)
	}
	var seenEvent, seenData bool
	for {
		var key []byte
		if key, i, ok = plainJSONString(b, i); !ok {
			return nil, nil, false
		}
		key = key[1 : len(key)-1]
		i = skipWS(b, i)
		if i >= len(b) || b[i] != ':' {
			return nil, nil, false
		}
		i = skipWS(b, i+1)
		switch {
		case string(key) == "event" && !seenEvent:
			seenEvent = true
			var s []byte
			if s, i, ok = plainJSONString(b, i); !ok {
				return nil, nil, false
			}
			event = s[1 : len(s)-1]
		case string(key) == "data" && !seenData:
			seenData = true
			end, ok := valueEnd(b, i)
			if !ok || b[i] == 'n' || !json.Valid(b[i:end]) {
				return nil, nil, false
			}
			data, i = b[i:end], end
		default:
			return nil, nil, false
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return nil, nil, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return event, data, skipWS(b, i+1) == len(b)
		default:
			return nil, nil, false
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainJSONString returns the JSON string starting at b[i], quotes
// included, and the index after it, when it has no escape and no control
// character and is valid UTF-8 (so it means exactly its bytes).
func plainJSONString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	j := bytes.IndexByte(b[i+1:], '"')
	if j < 0 {
		return nil, i, false
	}
	s := b[i : i+j+2]
	for _, c := range s[1 : len(s)-1] {
		if c < 0x20 || c == '\\' {
			return nil, i, false
		}
	}
	if !utf8.Valid(s) {
		return nil, i, false
	}
	return s, i + j + 2, true
}

// valueEnd returns where the JSON value starting at b[i] ends, finding
// only its extent (strings with their escapes, nested brackets); the
// caller validates it with json.Valid.
func valueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := stringEnd(b, j)
				if !ok {
					return j, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return len(b), false
	default: // number or literal: up to the next delimiter
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		return j, j > i
	}
}

// stringEnd returns the index after the JSON string starting at b[i].
func stringEnd(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return len(b), false
}

// decodeStrict decodes one JSON value from r into v with encoding/json,
// strictly: unknown fields and trailing data are 400 invalid_json; body
// errors (too large, read deadline) are returned as they are.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if isBodyError(err) {
			return err
		}
		return errf(http.StatusBadRequest, CodeInvalidJSON, "malformed JSON body: "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if isBodyError(err) {
			return err
		}
		return errf(http.StatusBadRequest, CodeInvalidJSON, "trailing data after the JSON body")
	}
	return nil
}
