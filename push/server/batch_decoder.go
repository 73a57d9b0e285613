package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// batchItem is one element of the "events" array of POST /v1/events.
type batchItem struct {
	Topic          string          `json:"topic"`
	Event          string          `json:"event"`
	Data           json.RawMessage `json:"data"`
	IdempotencyKey string          `json:"idempotency_key"`
}

// batchItemBytes is the most one batch item may take on the wire (with the
// whitespace and separator before it): the single-publish body cap, so an
// event that POST /v1/topics/{topic}/events would take fits in a batch too.
func batchItemBytes(maxEventBytes int) int { return maxEventBytes*2 + 1024 }

// decodeBatch streams a POST /v1/events body, {"events":[item, …]}, and
// calls each for every item in order, one at a time: the caller keeps what
// it needs (a validated draft or an error), copied, and must not retain the
// item, whose storage the next item reuses. It returns the number of items.
//
// Memory is bounded by the limits, never by the body: decoding stops at the
// first item past maxEvents (400 invalid_event), and no single item, key or
// run of whitespace may make the decoder buffer more than window bytes (413
// body_too_large); the caller caps the whole body. The grammar is today's
// strict one: unknown fields at either level and trailing data are 400
// invalid_json, "events" is matched case-insensitively as encoding/json
// does, and `null` (the body or the array) holds no events. A second
// "events" member is refused rather than resolved (encoding/json keeps the
// last one): two parsers must never disagree on which events a body holds.
//
// Errors are *apiError, *http.MaxBytesError or a body deadline (isBodyError); nothing was appended when
// decodeBatch fails, since the caller appends only after it returns.
func decodeBatch(body io.Reader, maxEvents, window int, each func(*batchItem)) (int, error) {
	wr := &windowReader{r: body}
	dec := json.NewDecoder(wr)
	dec.DisallowUnknownFields()
	// step opens a fresh window at the decoder's position before each token
	// or item: bytes it already buffered past that position count against
	// the window, so the decoder never holds more than window bytes of one
	// step's input.
	step := func() { wr.limit = dec.InputOffset() + int64(window) }
	n := 0
	var it batchItem

	step()
	tok, err := dec.Token()
	if err != nil {
		return n, batchJSONError(err, window)
	}
	if tok == nil { // `null`: no events, as encoding/json decodes it
		return n, batchEOF(dec, step, window)
	}
	if tok != json.Delim('{') {
		return n, errf(http.StatusBadRequest, CodeInvalidJSON, `malformed JSON body: want an object {"events":[…]}`)
	}
	seen := false
	for {
		step()
		if tok, err = dec.Token(); err != nil {
			return n, batchJSONError(err, window)
		}
		if tok == json.Delim('}') {
			break
		}
		key, _ := tok.(string) // the only token json.Decoder yields in key position
		switch {
		case !strings.EqualFold(key, "events"):
			return n, errf(http.StatusBadRequest, CodeInvalidJSON, "malformed JSON body: json: unknown field "+strconv.Quote(clip(key)))
		case seen:
			return n, errf(http.StatusBadRequest, CodeInvalidJSON, `malformed JSON body: duplicate field "events"`)
		}
		seen = true
		step()
		if tok, err = dec.Token(); err != nil {
			return n, batchJSONError(err, window)
		}
		if tok == nil {
			continue
		}
		if tok != json.Delim('[') {
			return n, errf(http.StatusBadRequest, CodeInvalidJSON, `malformed JSON body: "events" must be an array`)
		}
		for {
			step()
			if !dec.More() {
				break // at ']', or an error the Token below reports
			}
			if n == maxEvents {
				return n, errf(http.StatusBadRequest, CodeInvalidEvent,
					fmt.Sprintf("too many events: a batch holds 1..%d events, got more than %d", maxEvents, maxEvents))
			}
			it = batchItem{Data: it.Data[:0]} // Data's buffer is reused
			if err := dec.Decode(&it); err != nil {
				return n, batchJSONError(err, window)
			}
			n++
			each(&it)
		}
		step()
		if _, err := dec.Token(); err != nil { // the ']'
			return n, batchJSONError(err, window)
		}
	}
	return n, batchEOF(dec, step, window)
}

// batchEOF checks that nothing but whitespace follows the body's value.
func batchEOF(dec *json.Decoder, step func(), window int) error {
	step()
	_, err := dec.Token()
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err == nil, isJSONSyntax(err):
		return errf(http.StatusBadRequest, CodeInvalidJSON, "trailing data after the JSON body")
	}
	return batchJSONError(err, window)
}

func isJSONSyntax(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se)
}

// batchJSONError renders a decoding failure: the body or window cap as 413,
// anything else as malformed JSON.
func batchJSONError(err error, window int) error {
	switch {
	case isBodyError(err):
		return err
	case errors.Is(err, errWindow):
		return errf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
			fmt.Sprintf("a batch item (with the whitespace before it) exceeds %d bytes", window))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errf(http.StatusBadRequest, CodeInvalidJSON, "malformed JSON body: unexpected end of JSON input")
	}
	return errf(http.StatusBadRequest, CodeInvalidJSON, "malformed JSON body: "+err.Error())
}

// errWindow is windowReader's refusal.
var errWindow = errors.New("batch item exceeds its window")

// windowReader refuses to read past limit, which the batch decoder moves
// forward before every step. json.Decoder buffers a whole value (and the
// whitespace before it) before decoding it, so this bounds its buffer by
// the window rather than by the body. Reads past the limit keep failing.
type windowReader struct {
	r     io.Reader
	read  int64
	limit int64
}

func (w *windowReader) Read(p []byte) (int, error) {
	room := w.limit - w.read
	if room <= 0 {
		return 0, errWindow
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := w.r.Read(p)
	w.read += int64(n)
	return n, err
}

// clip bounds client-supplied strings quoted in error messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
