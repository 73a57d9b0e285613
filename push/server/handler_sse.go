package server

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
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

// streamRequest reads, validates and authorises an SSE stream request
// (topics, credentials, grants, from, cursor), answering the request itself
// when it cannot be served.
func (s *Server) streamRequest(c *gin.Context) (node.Request, bool) {
	r := c.Request
	req, err := s.streamQuery(r, observability.TransportSSE)
	if err == nil {
		var p *auth.Principal
		if p, err = s.principal(r, true); err == nil {
			err = s.authorise(&req, p)
		}
	}
	if err != nil {
		s.writeError(c, err)
		s.cfg.Telemetry.Metrics().Connect(r.Context(), observability.TransportSSE, observability.ConnectRejected)
		return node.Request{}, false
	}
	req.ClientIP = c.ClientIP()
	return req, true
}

// streamQuery reads a stream request's query and headers: topics, from,
// cursor (Last-Event-ID header, else last_event_id), traceparent.
func (s *Server) streamQuery(r *http.Request, transport string) (node.Request, error) {
	q := r.URL.Query()
	topics := q["topic"]
	if len(topics) == 0 || len(topics) > s.cfg.Limits.MaxTopicsPerStream {
		return node.Request{}, errf(http.StatusBadRequest, CodeInvalidQuery,
			fmt.Sprintf("give 1..%d topic parameters", s.cfg.Limits.MaxTopicsPerStream))
	}
	for _, t := range topics {
		if err := push.ValidateTopic(t); err != nil {
			return node.Request{}, err
		}
	}
	from := q.Get("from")
	if from != "" && from != "latest" && from != "earliest" {
		return node.Request{}, errf(http.StatusBadRequest, CodeInvalidQuery, `from must be "latest" or "earliest"`)
	}
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = q.Get("last_event_id")
	}
	return node.Request{
		Topics: topics, From: from, Cursor: raw, Strict: isSDKClient(r),
		Traceparent: r.Header.Get("traceparent"), Transport: transport,
	}, nil
}

// authorise checks that p may subscribe to every topic of req and binds
// req to p.
func (s *Server) authorise(req *node.Request, p *auth.Principal) error {
	for _, t := range req.Topics {
		if !p.CanSubscribe(t) {
			return errf(http.StatusForbidden, CodeForbidden, "not allowed to subscribe to "+strconv.Quote(t))
		}
	}
	req.Principal, req.Expires = p.ID(), p.Expires
	return nil
}

// isSDKClient reports whether the request comes from a client that says it
// handles HTTP errors itself (the Herald-Client header; a browser
// EventSource cannot send it): it gets 4xx/503 answers where a browser gets
// a 200 with the same information in band.
func isSDKClient(r *http.Request) bool { return r.Header.Get("Herald-Client") != "" }
