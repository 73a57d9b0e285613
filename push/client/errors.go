package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Test with errors.Is.
var (
	// ErrConfig: the configuration is unusable (no endpoints, bad URL, no topics).
	ErrConfig = errors.New("client: invalid configuration")
	// ErrRunning: Run was called while another Run of the same Stream is active.
	ErrRunning = errors.New("client: stream is already running")
	// ErrStopped: the server answered 204 No Content, its signal that the
	// client must not reconnect.
	ErrStopped = errors.New("client: server asked the client to stop (204 No Content)")
	// ErrNotEventStream: a 200 response whose Content-Type is not
	// text/event-stream (typically a proxy or a wrong endpoint). Permanent,
	// as for a browser EventSource.
	ErrNotEventStream = errors.New("client: response is not text/event-stream")
	// ErrIdleTimeout: the server sent nothing, not even a heartbeat, for
	// StreamConfig.IdleTimeout; the connection was presumed dead and closed.
	ErrIdleTimeout = errors.New("client: stream idle timeout")
)

// APIError is a response from Herald that is not a success.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the stable machine-readable code from the body
	// ({"error":{"code":…}}), or "" when the body carried none.
	Code string
	// Message is the human-readable message from the body, or the status text.
	Message string
	// RetryAfter is the server's Retry-After, or 0.
	RetryAfter time.Duration
	// Alternates are other regions' endpoints the server pointed to (its
	// region is being evacuated), or nil.
	Alternates []string
	// Cursor is where a stream without a cursor of its own resumes after a
	// 503 (its position as of the refused attempt), or "". Stream uses it.
	Cursor string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "herald: %d %s", e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Temporary reports whether retrying the same request later may succeed:
// 408, 429 and 5xx.
func (e *APIError) Temporary() bool { return retryableStatus(e.Status) }

func retryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// maxErrorBody bounds what is read of an error response.
const maxErrorBody = 64 << 10

// errorBody is Herald's JSON error shape.
type errorBody struct {
	Error *struct {
		Code       string   `json:"code"`
		Message    string   `json:"message"`
		Alternates []string `json:"alternates"`
		Cursor     string   `json:"cursor"`
	} `json:"error"`
}

// readAPIError builds an APIError from a non-success response, consuming at
// most maxErrorBody bytes of its body (the caller closes it).
func readAPIError(resp *http.Response, now time.Time) *APIError {
	e := &APIError{Status: resp.StatusCode}
	e.RetryAfter, _ = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != nil {
		e.Code, e.Message, e.Alternates, e.Cursor = eb.Error.Code, eb.Error.Message, eb.Error.Alternates, eb.Error.Cursor
		return e
	}
	if text := strings.TrimSpace(string(body)); text != "" && utf8.ValidString(text) {
		if len(text) > 200 {
			text = strings.ToValidUTF8(text[:200], "") + "…"
		}
		e.Message = text
	}
	return e
}

// drain consumes what is left of a small response body so that its
// connection can be reused, then closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxErrorBody))
	_ = body.Close()
}
