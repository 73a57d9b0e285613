package server

import (
	"errors"
	"net/http"
	"os"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
)

// Stable error codes of the JSON error body {"error":{"code","message"}}.
const (
	CodeInvalidTopic     = "invalid_topic"
	CodeInvalidEvent     = "invalid_event"
	CodeInvalidJSON      = "invalid_json"
	CodeInvalidCursor    = "invalid_cursor"
	CodeInvalidQuery     = "invalid_query"
	CodeBodyTooLarge     = "body_too_large"
	CodeUnsupportedType  = "unsupported_media_type"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethod           = "method_not_allowed"
	CodeUnavailable      = "unavailable"
	CodeDraining         = "draining"
	CodeEvacuating       = "evacuating"
	CodeRateLimited      = "rate_limited"
	CodeOverloaded       = "overloaded"
	CodeOwnerUnreachable = "owner_unreachable"
	CodeInternal         = "internal"
	CodeRequestTimeout   = "request_timeout"
)

// apiError is an error with its HTTP rendering.
type apiError struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when positive, is sent as Retry-After (seconds).
	RetryAfter int
	// Alternates, when set, are other regions' endpoints to go to.
	Alternates []string
	// Cursor, when set, is where a refused fresh stream resumes (the
	// Last-Event-ID of its retry; ADR 0020).
	Cursor string
	// Close ends the connection after the answer (a slow or refused
	// client must not keep it).
	Close bool
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errf(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

// toAPIError maps any error to its HTTP rendering: one table for every handler.
func toAPIError(err error) *apiError {
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return errf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "request body exceeds "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Only the body deadline (Config.BodyTimeout) reaches here: store
		// calls time out with context.DeadlineExceeded.
		return &apiError{Status: http.StatusRequestTimeout, Code: CodeRequestTimeout,
			Message: "the request body did not arrive in time", Close: true}
	case errors.Is(err, push.ErrInvalidTopic):
		return errf(http.StatusBadRequest, CodeInvalidTopic, err.Error())
	case errors.Is(err, push.ErrInvalidEvent):
		return errf(http.StatusBadRequest, CodeInvalidEvent, err.Error())
	case errors.Is(err, push.ErrMalformedCursor):
		return errf(http.StatusBadRequest, CodeInvalidCursor, err.Error())
	case errors.Is(err, auth.ErrNoCredentials):
		return errf(http.StatusUnauthorized, CodeUnauthorized, "credentials required")
	case errors.Is(err, auth.ErrInvalidCredentials):
		return errf(http.StatusUnauthorized, CodeUnauthorized, "invalid credentials")
	case errors.Is(err, push.ErrUnavailable), errors.Is(err, push.ErrClosed):
		return &apiError{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "event store unavailable or did not confirm; retry with the same Idempotency-Key", RetryAfter: retryAfterOf(err)}
	default:
		return errf(http.StatusInternalServerError, CodeInternal, "internal error")
	}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Alternates are other regions' endpoints (evacuation).
	Alternates []string `json:"alternates,omitempty"`
	// Cursor is where a refused fresh stream resumes: the Last-Event-ID
	// of its retry, so it misses nothing published meanwhile.
	Cursor string `json:"cursor,omitempty"`
}

// writeError renders err as a JSON error body; unknown errors are logged and
// become a generic 500.
func (s *Server) writeError(c *gin.Context, err error) {
	ae := toAPIError(err)
	ctx := c.Request.Context()
	if ae.Status >= 500 && ae.Code == CodeInternal {
		s.log.ErrorContext(ctx, "request failed", "method", c.Request.Method, "path", c.FullPath(), "err", err)
	} else {
		s.log.DebugContext(ctx, "request refused", "method", c.Request.Method, "path", c.FullPath(),
			"status", ae.Status, "code", ae.Code, "err", err)
	}
	if ae.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	if ae.Close && c.Request.ProtoMajor == 1 {
		c.Header("Connection", "close")
	}
	c.AbortWithStatusJSON(ae.Status, errorBody{Error: errorDetail{Code: ae.Code, Message: ae.Message, Alternates: ae.Alternates, Cursor: ae.Cursor}})
}

// isBodyError reports whether err, from reading a request body, must keep
// its own rendering (too large, too slow) rather than become "malformed".
func isBodyError(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe) || errors.Is(err, os.ErrDeadlineExceeded)
}
