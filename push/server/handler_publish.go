package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/wire"
)

// publishRequest is the body of POST /v1/topics/{topic}/events.
type publishRequest struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

type batchResult struct {
	*wire.PublishResult
	Error *errorDetail `json:"error,omitempty"`
}

func (s *Server) handlePublish(c *gin.Context) {
	start := time.Now()
	result := observability.PublishRejected
	ctx, srv, span := s.startPublish(c, c.Param("topic"))
	defer func() { s.endPublish(ctx, srv, span, result, start) }()
	topic := c.Param("topic")
	if err := push.ValidateTopic(topic); err != nil {
		s.writeError(c, err)
		return
	}
	p, err := s.principal(c.Request, false)
	if err != nil {
		s.writeError(c, err)
		return
	}
	if !p.CanPublish(topic) {
		s.writeError(c, errf(http.StatusForbidden, CodeForbidden, "not allowed to publish to "+strconv.Quote(topic)))
		return
	}
	endPublish, err := s.beginPublish()
	if err != nil {
		s.writeError(c, err)
		return
	}
	defer endPublish()
	d, err := s.publishBody(c, p)
	if err != nil {
		s.writeError(c, err)
		return
	}
	res, result, err := s.publishDraft(ctx, span, p, topic, d)
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.writePublishResult(c, res)
}

// jsonContentType is the Content-Type gin's c.JSON writes. Read-only.
var jsonContentType = []string{"application/json; charset=utf-8"}

// writePublishResult answers 201 with res, as c.JSON would, without its
// reflection and copies where res encodes by hand (wire.PublishResult.AppendJSON),
// in a buffer borrowed from the SSE writers' pool (Write copies it into
// the connection's buffer before it goes back).
func (s *Server) writePublishResult(c *gin.Context, res wire.PublishResult) {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	b, ok := res.AppendJSON((*bp)[:0])
	if !ok {
		c.JSON(http.StatusCreated, res)
		return
	}
	*bp = b[:0]
	c.Writer.Header()["Content-Type"] = jsonContentType
	c.Writer.WriteHeader(http.StatusCreated)
	_, _ = c.Writer.Write(b)
}

// publishDraft is the end of a single publish on any transport: the
// ingress guard, the append and its result. result is the metric's
// (observability.Publish*), PublishRejected when the guard refused.
func (s *Server) publishDraft(ctx context.Context, span trace.Span, p *auth.Principal, topic string, d push.Draft) (wire.PublishResult, string, error) {
	done, err := s.guardPublish(p.Tenant, topic)
	if err != nil {
		return wire.PublishResult{}, observability.PublishRejected, err
	}
	d.TraceParent = observability.EventTraceparent(ctx)
	res, err := s.append(ctx, topic, []push.Draft{d})
	done(err)
	if err != nil {
		return wire.PublishResult{}, publishResultOf(err), err
	}
	result := observability.PublishOK
	if res[0].Duplicate {
		result = observability.PublishDuplicate
	}
	span.SetAttributes(attribute.Int64("herald.offset", int64(res[0].Offset)))
	return s.result(topic, res[0]), result, nil
}

// startPublish starts the request's server span, a child of the
// publisher's W3C traceparent (publishers are authenticated services) or a
// root, and under it the publish (producer) span whose context is stored
// with the event.
func (s *Server) startPublish(c *gin.Context, topic string) (context.Context, trace.Span, trace.Span) {
	tel := s.cfg.Telemetry
	ctx := c.Request.Context()
	if tel != nil {
		ctx = tel.Propagator().Extract(ctx, propagation.HeaderCarrier(c.Request.Header))
	}
	ctx, srv := tel.StartSpan(ctx, serverSpanName(c), trace.SpanKindServer, serverSpan...)
	ctx, span := tel.StartPublish(ctx, topic)
	c.Request = c.Request.WithContext(ctx) // request-scoped logs carry the trace
	return ctx, srv, span
}

// Span start options the publish path passes on every request, built once
// (an option and its variadic slice were allocations per publish, spent
// even when no exporter is configured). Read-only: the tracer only reads
// them.
var (
	serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// The publish routes as gin's FullPath names them.
const (
	routePublish = "/v1/topics/:topic/events"
	routeBatch   = "/v1/events"
)

// serverSpanName is "<method> <route>", the server span's name, without a
// concatenation for the publish routes' usual POST.
func serverSpanName(c *gin.Context) string {
	if c.Request.Method == http.MethodPost {
		switch c.FullPath() {
		case routePublish:
			return http.MethodPost + " " + routePublish
		case routeBatch:
			return http.MethodPost + " " + routeBatch
		}
	}
	return c.Request.Method + " " + c.FullPath()
}

func (s *Server) endPublish(ctx context.Context, srv, span trace.Span, result string, start time.Time) {
	if result != observability.PublishOK && result != observability.PublishDuplicate {
		span.SetStatus(codes.Error, result)
		srv.SetStatus(codes.Error, result)
	}
	span.End()
	srv.End()
	s.cfg.Telemetry.Metrics().Publish(ctx, result, time.Since(start))
}

// append is Store.Append inside a "store.append" span.
func (s *Server) append(ctx context.Context, topic string, drafts []push.Draft) ([]push.AppendResult, error) {
	ctx, span := s.cfg.Telemetry.StartSpan(ctx, "herald.store.append", trace.SpanKindClient, clientSpan...)
	defer span.End()
	res, err := s.store.Append(ctx, topic, drafts)
	if err != nil {
		span.SetStatus(codes.Error, "append failed")
	}
	return res, err
}

func publishResultOf(err error) string {
	switch toAPIError(err).Status {
	case http.StatusServiceUnavailable:
		return observability.PublishUnavailable
	case http.StatusInternalServerError:
		return observability.PublishError
	}
	return observability.PublishRejected
}

func (s *Server) handleBatch(c *gin.Context) {
	start := time.Now()
	result := observability.PublishRejected
	ctx, srv, span := s.startPublish(c, "")
	defer func() { s.endPublish(ctx, srv, span, result, start) }()
	// refuse answers before the rest of the body is read. On HTTP/1.x,
	// "Connection: close" makes net/http send the answer at once and then
	// drop the connection, where it would first drain up to 256 KiB of the
	// unwanted body (or wait on a client that stalls it) to keep the
	// connection; HTTP/2 resets just the stream.
	refuse := func(err error) {
		if c.Request.ProtoMajor == 1 {
			c.Header("Connection", "close")
		}
		s.writeError(c, err)
	}
	p, err := s.principal(c.Request, false)
	if err != nil {
		refuse(err)
		return
	}
	// Refused before the body is read: a credential that may publish
	// nowhere costs no decoding.
	if !p.CanPublishAny() {
		refuse(errf(http.StatusForbidden, CodeForbidden, "not allowed to publish to any topic"))
		return
	}
	endPublish, err := s.beginPublish()
	if err != nil {
		refuse(err)
		return
	}
	defer endPublish()
	if err := requireJSON(c); err != nil {
		refuse(err)
		return
	}
	// Each item is validated and drafted as it is decoded, so what the
	// batch holds in memory is at most MaxBatchEvents drafts (each within
	// MaxEventBytes) and one raw item, whatever the body (ADR 0015).
	// Nothing is appended, and no rate-limit token taken, until the whole
	// body has decoded.
	type pending struct {
		topic string
		draft push.Draft
		err   error
	}
	items := make([]pending, 0, min(s.cfg.Limits.MaxBatchEvents, 16))
	traceParent := observability.EventTraceparent(ctx)
	window := batchItemBytes(s.cfg.Limits.MaxEventBytes)
	body := http.MaxBytesReader(c.Writer, c.Request.Body, int64(s.cfg.Limits.MaxBatchEvents)*int64(window)+4096)
	n, err := decodeBatch(body, s.cfg.Limits.MaxBatchEvents, window, func(it *batchItem) {
		pi := pending{err: push.ValidateTopic(it.Topic)}
		if pi.err == nil && !p.CanPublish(it.Topic) {
			pi.err = errf(http.StatusForbidden, CodeForbidden, "not allowed to publish to "+strconv.Quote(it.Topic))
		}
		if pi.err == nil {
			pi.topic = it.Topic
			pi.draft, pi.err = s.draft(it.Event, it.Data, it.IdempotencyKey, p)
			pi.draft.TraceParent = traceParent
		}
		items = append(items, pi)
	})
	if err == nil && n == 0 {
		err = errf(http.StatusBadRequest, CodeInvalidEvent, fmt.Sprintf("a batch holds 1..%d events, got 0", s.cfg.Limits.MaxBatchEvents))
	}
	if err != nil {
		refuse(err)
		return
	}
	results := make([]batchResult, len(items))
	// Group valid items by topic, keeping input order within each topic, so
	// each topic's events are appended in one atomic call.
	type group struct {
		idx    []int
		drafts []push.Draft
	}
	groups := map[string]*group{}
	var order []string
	for i, it := range items {
		err := it.err
		if err == nil {
			var done func(error)
			if done, err = s.guardPublish(p.Tenant, it.topic); err == nil {
				defer func() { done(nil) }()
			}
		}
		if err != nil {
			ae := toAPIError(err)
			results[i].Error = &errorDetail{Code: ae.Code, Message: ae.Message}
			continue
		}
		g := groups[it.topic]
		if g == nil {
			g = &group{}
			groups[it.topic] = g
			order = append(order, it.topic)
		}
		g.idx = append(g.idx, i)
		g.drafts = append(g.drafts, it.draft)
	}
	failed := false
	var storeErr error
	for _, topic := range order {
		g := groups[topic]
		res, err := s.append(ctx, topic, g.drafts)
		if err != nil && storeErr == nil {
			storeErr = err
		}
		for j, i := range g.idx {
			if err != nil {
				ae := toAPIError(err)
				results[i].Error = &errorDetail{Code: ae.Code, Message: ae.Message}
				continue
			}
			r := s.result(topic, res[j])
			results[i].PublishResult = &r
		}
	}
	ok := 0
	for _, r := range results {
		if r.Error != nil {
			failed = true
		} else {
			ok++
		}
	}
	result = observability.PublishOK
	if ok == 0 {
		result = observability.PublishRejected
		if storeErr != nil {
			result = publishResultOf(storeErr)
		}
	}
	if ok == 0 && storeErr != nil && toAPIError(storeErr).Status == http.StatusServiceUnavailable {
		// Nothing was accepted because the store is away: one 503 with
		// Retry-After tells publishers to retry the whole batch.
		s.writeError(c, storeErr)
		return
	}
	status := http.StatusOK
	if failed {
		status = http.StatusMultiStatus
	}
	c.JSON(status, gin.H{"results": results})
}

// draft validates one event and turns it into a Draft. JSON string data is
// stored as its text; any other JSON value is stored compacted.
func (s *Server) draft(typ string, raw json.RawMessage, idem string, p *auth.Principal) (push.Draft, error) {
	if typ == "" {
		typ = push.DefaultEventType
	}
	if err := push.ValidateEventType(typ); err != nil {
		return push.Draft{}, err
	}
	if len(raw) == 0 {
		return push.Draft{}, fmt.Errorf("%w: \"data\" is required", push.ErrInvalidEvent)
	}
	var data []byte
	if raw[0] == '"' && plainString(raw) {
		// What json.Unmarshal would return, in one copy instead of its
		// decoder, string and []byte. A copy: a batch's raw item lives in
		// the decoder's window, which the next item overwrites.
		data = bytes.Clone(raw[1 : len(raw)-1])
	} else if raw[0] == '"' {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return push.Draft{}, fmt.Errorf("%w: data: %v", push.ErrInvalidEvent, err)
		}
		data = []byte(str)
	} else {
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return push.Draft{}, fmt.Errorf("%w: data: %v", push.ErrInvalidEvent, err)
		}
		data = buf.Bytes()
	}
	if err := push.ValidateData(data, s.cfg.Limits.MaxEventBytes); err != nil {
		return push.Draft{}, err
	}
	d := push.Draft{Type: typ, Data: data}
	if idem != "" {
		if err := push.ValidateIdempotencyKey(idem); err != nil {
			return push.Draft{}, err
		}
		d.IdempotencyKey = idempotencyScope(p.Tenant, idem)
	}
	return d, nil
}

func (s *Server) result(topic string, r push.AppendResult) wire.PublishResult {
	return wire.PublishResult{
		Topic: topic, Origin: s.store.Origin(), Epoch: r.Epoch, Offset: r.Offset,
		Time: r.Time.UTC(), Duplicate: r.Duplicate,
	}
}

// plainString reports whether raw, a JSON string the decoder accepted,
// means exactly the bytes between its quotes: no escape, and valid UTF-8
// (json.Unmarshal replaces invalid bytes with U+FFFD).
func plainString(raw json.RawMessage) bool {
	if len(raw) < 2 || raw[len(raw)-1] != '"' {
		return false
	}
	in := raw[1 : len(raw)-1]
	return bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in)
}

// idempotencyScope is the stored form of a publisher's idempotency key:
// "<len(tenant)>:<tenant>/<key>". The length prefix makes it injective, so
// no two (tenant, key) pairs share a scope whatever a tenant holds (a JWT
// subject standing in for the tenant may contain '/' or ':'): tenant "ta"
// with key "x/K" and tenant "ta/x" with key "K" stay apart. Bounded by the
// tenant (at most 256 bytes) and key (128) limits; the Redis store keeps
// only its SHA-256.
func idempotencyScope(tenant, key string) string {
	return strconv.Itoa(len(tenant)) + ":" + tenant + "/" + key
}

// requireJSON refuses a body that is not declared JSON: a form or
// text/plain post is refused, which also keeps publishing out of reach of
// cross-site forms.
func requireJSON(c *gin.Context) error {
	ct := c.GetHeader("Content-Type")
	if ct == "application/json" { // the usual header, without ParseMediaType's map
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return errf(http.StatusUnsupportedMediaType, CodeUnsupportedType, "Content-Type must be application/json")
	}
	return nil
}

// decodeJSON reads a JSON body of at most limit bytes into v, strictly: the
// content type must be JSON (see requireJSON), unknown fields and trailing
// data are errors.
func (s *Server) decodeJSON(c *gin.Context, limit int, v any) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	return decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, int64(limit)), v)
}

// publishBody reads and validates a single publish's body into a draft,
// as decodeJSON and draft would: the body (at most MaxEventBytes*2+4096
// bytes) is read whole into a pooled buffer, the usual shape is parsed in
// place (parsePublishBody) and anything else is decoded by encoding/json
// from the same bytes, followed by the same read error if there was one, so
// every body gets the answer it got from the streaming decoder. draft
// copies what it keeps, so the buffer goes back to the pool.
func (s *Server) publishBody(c *gin.Context, p *auth.Principal) (push.Draft, error) {
	if err := requireJSON(c); err != nil {
		return push.Draft{}, err
	}
	limit := s.cfg.Limits.MaxEventBytes*2 + 4096
	bp := s.bufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			s.bufs.Put(bp)
		}
	}()
	body := bytes.NewBuffer((*bp)[:0])
	_, rerr := body.ReadFrom(http.MaxBytesReader(c.Writer, c.Request.Body, int64(limit)))
	b := body.Bytes()
	*bp = b[:0]
	if rerr == nil {
		if event, data, ok := parsePublishBody(b); ok {
			return s.draft(string(event), data, c.GetHeader("Idempotency-Key"), p)
		}
	}
	var req publishRequest
	if err := decodeStrict(&errAfter{b: b, err: orEOF(rerr)}, &req); err != nil {
		return push.Draft{}, err
	}
	return s.draft(req.Event, req.Data, c.GetHeader("Idempotency-Key"), p)
}

func orEOF(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}

// topicInfo is the body of GET /v1/topics/{topic}.
type topicInfo struct {
	Topic     string        `json:"topic"`
	Origin    string        `json:"origin"`
	Epoch     string        `json:"epoch"`
	First     uint64        `json:"first_offset"`
	Last      uint64        `json:"last_offset"`
	Length    int64         `json:"length"`
	Retention retentionInfo `json:"retention"`
}

// retentionInfo is a topic's retention as JSON: max_age as a Go duration
// string ("24h0m0s") and in seconds, never in nanoseconds.
type retentionInfo struct {
	MaxLen        int64   `json:"max_len"`
	MaxAge        string  `json:"max_age"`
	MaxAgeSeconds float64 `json:"max_age_seconds"`
}

func newRetentionInfo(r push.Retention) retentionInfo {
	return retentionInfo{MaxLen: r.MaxLen, MaxAge: r.MaxAge.String(), MaxAgeSeconds: r.MaxAge.Seconds()}
}

func (s *Server) handleTopic(c *gin.Context) {
	topic, ok := s.readableTopic(c)
	if !ok {
		return
	}
	infos, err := s.store.Info(c.Request.Context(), []string{topic})
	if err != nil {
		s.writeError(c, err)
		return
	}
	in := infos[0]
	c.JSON(http.StatusOK, topicInfo{
		Topic: topic, Origin: in.Origin, Epoch: in.Epoch, First: in.First, Last: in.Last,
		Length: in.Length, Retention: newRetentionInfo(s.cfg.Retention.For(topic)),
	})
}

type historyEvent struct {
	Offset uint64    `json:"offset"`
	Event  string    `json:"event"`
	Data   string    `json:"data"`
	Time   time.Time `json:"time"`
}

func (s *Server) handleHistory(c *gin.Context) {
	topic, ok := s.readableTopic(c)
	if !ok {
		return
	}
	after, err := queryUint(c, "after", 0)
	if err != nil {
		s.writeError(c, err)
		return
	}
	limit, err := queryUint(c, "limit", 100)
	if err != nil || limit < 1 || limit > 1000 {
		s.writeError(c, errf(http.StatusBadRequest, CodeInvalidQuery, "limit must be 1..1000"))
		return
	}
	evs, in, err := s.store.Read(c.Request.Context(), topic, after, int(limit))
	if err != nil {
		s.writeError(c, err)
		return
	}
	out := make([]historyEvent, len(evs))
	next := after
	for i, e := range evs {
		out[i] = historyEvent{Offset: e.Offset, Event: e.Type, Data: string(e.Data), Time: e.Time.UTC()}
		next = e.Offset
	}
	c.JSON(http.StatusOK, gin.H{
		"topic": topic, "origin": in.Origin, "epoch": in.Epoch,
		"first_offset": in.First, "last_offset": in.Last,
		"events": out, "next_after": next,
	})
}

// readableTopic validates the path topic and the caller's right to read it.
func (s *Server) readableTopic(c *gin.Context) (string, bool) {
	topic := c.Param("topic")
	if err := push.ValidateTopic(topic); err != nil {
		s.writeError(c, err)
		return "", false
	}
	p, err := s.principal(c.Request, true)
	if err != nil {
		s.writeError(c, err)
		return "", false
	}
	if !p.CanSubscribe(topic) {
		s.writeError(c, errf(http.StatusForbidden, CodeForbidden, "not allowed to read "+strconv.Quote(topic)))
		return "", false
	}
	return topic, true
}

func queryUint(c *gin.Context, name string, def uint64) (uint64, error) {
	v, ok := c.GetQuery(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, errf(http.StatusBadRequest, CodeInvalidQuery, name+" must be a non-negative integer")
	}
	return n, nil
}

// guardPublish asks the ingress layer; a refusal renders as 429 with
// Retry-After.
func (s *Server) guardPublish(tenant, topic string) (func(error), error) {
	if s.cfg.Guard == nil {
		return nopErr, nil
	}
	done, err := s.cfg.Guard.Publish(tenant, topic)
	if err != nil {
		return nil, &apiError{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
			Message:    "publish rate limit exceeded for this tenant or topic; retry after the Retry-After delay",
			RetryAfter: retryAfterOf(err)}
	}
	return done, nil
}

// beginPublish admits a publish unless the region is being evacuated; the
// returned func ends it.
func (s *Server) beginPublish() (func(), error) {
	end, err := s.node.BeginPublish()
	if err != nil {
		return nil, &apiError{Status: http.StatusServiceUnavailable, Code: CodeEvacuating,
			Message: err.Error(), RetryAfter: 1, Alternates: s.node.Alternates()}
	}
	return end, nil
}
