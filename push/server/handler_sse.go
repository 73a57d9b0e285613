package server

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/stream"
)

// handleStream serves GET /v1/stream. Its goroutine holds the stream for as
// long as the stream lives, so it must keep a small stack: Go grows a
// goroutine's stack to the deepest call it has made and shrinks it only
// when a GC finds it mostly unused, and the connect phase (auth, store reads
// through the protection layers and the Redis client, replay, telemetry) is
// deep enough to double it to 16 KiB, which every idle stream would then
// keep. So the connect phase runs on a short-lived goroutine of its own
// (stream.OnFreshStack), which hands over the opened stream and exits; only
// the live loop runs here.
func (s *Server) handleStream(c *gin.Context) {
	var op *node.Opened
	stream.OnFreshStack(func() {
		req, ok := s.streamRequest(c)
		if !ok {
			return
		}
		op = s.node.Open(c.Request.Context(), req, s.newSSE(c))
	})
	if op == nil {
		return // answered (refused, shed, redirected) or ended during connect
	}
	defer op.Close()
	op.Live()
}

// streamRequest reads, validates and authorises a stream request (topics,
// credentials, grants, from, cursor), answering the request itself when it
// cannot be served.
func (s *Server) streamRequest(c *gin.Context) (node.Request, bool) {
	r := c.Request
	q := r.URL.Query()
	fail := func(err error) (node.Request, bool) {
		s.writeError(c, err)
		s.cfg.Telemetry.Metrics().Connect(r.Context(), observability.ConnectRejected)
		return node.Request{}, false
	}
	topics := q["topic"]
	if len(topics) == 0 || len(topics) > s.cfg.Limits.MaxTopicsPerStream {
		return fail(errf(http.StatusBadRequest, CodeInvalidQuery,
			fmt.Sprintf("give 1..%d topic parameters", s.cfg.Limits.MaxTopicsPerStream)))
	}
	for _, t := range topics {
		if err := push.ValidateTopic(t); err != nil {
			return fail(err)
		}
	}
	p, err := s.principal(r, true)
	if err != nil {
		return fail(err)
	}
	for _, t := range topics {
		if !p.CanSubscribe(t) {
			return fail(errf(http.StatusForbidden, CodeForbidden, "not allowed to subscribe to "+strconv.Quote(t)))
		}
	}
	from := q.Get("from")
	if from != "" && from != "latest" && from != "earliest" {
		return fail(errf(http.StatusBadRequest, CodeInvalidQuery, `from must be "latest" or "earliest"`))
	}
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = q.Get("last_event_id")
	}
	return node.Request{
		Topics: topics, From: from, Cursor: raw, Strict: isSDKClient(r),
		Principal: p.ID(), Expires: p.Expires, ClientIP: c.ClientIP(),
		Traceparent: r.Header.Get("traceparent"), Transport: "sse",
	}, true
}

// isSDKClient reports whether the request comes from a client that says it
// handles HTTP errors itself (the Herald-Client header; a browser
// EventSource cannot send it): it gets 4xx/503 answers where a browser gets
// a 200 with the same information in band.
func isSDKClient(r *http.Request) bool { return r.Header.Get("Herald-Client") != "" }
