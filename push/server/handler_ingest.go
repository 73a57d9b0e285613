package server

import (
	"bytes"
	"context"
	"errors"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/ingest"
)

// NDJSON ingest for log shippers: POST /v1/ingest (topics from the key's
// template) and POST /v1/topics/{topic}/ingest (one topic). The body is
// newline-delimited JSON, one event per line. Lines are decoded, checked
// and drafted as they arrive (at most MaxLines drafts and one line in
// memory), then appended with one store call per topic (one Redis round
// trip: the append script; up to maxIngestCalls topics at once), after the
// ingress guard admitted the topic's lines in one step. A line that cannot be published is reported by
// number in the answer; the others are published.
//
// Answers: 200 with per-topic positions and per-line errors; when lines
// were refused only because a limit (429) or the store (503) refused them,
// the status is that refusal's, with Retry-After, and the body says which
// lines were published: a shipper retries the whole batch, and a dedup
// key (ingest.ProfileConfig.Dedup) makes the retry publish only the rest.

// IngestConfig configures NDJSON ingest.
type IngestConfig struct {
	// Profiles are the per-API-key ingest profiles (topic template,
	// dedup); nil means none: callers name the topic in the URL.
	Profiles *ingest.Profiles
	// MaxLines caps the lines of one request; zero means
	// ingest.DefaultMaxLines.
	MaxLines int
	// MaxBodyBytes caps one request body; zero means
	// ingest.DefaultMaxBodyBytes.
	MaxBodyBytes int
}

// maxIngestErrors bounds the per-line errors listed in one answer (the
// count of refused lines is always exact).
const maxIngestErrors = 100

// ingestState is the server's reloadable ingest profiles.
type ingestState struct {
	profiles atomic.Pointer[ingest.Profiles]
}

// SetIngestProfiles replaces the ingest profiles (SIGHUP reload, with the
// API keys they name). Requests in flight keep the ones they started with.
func (s *Server) SetIngestProfiles(p *ingest.Profiles) { s.ingest.profiles.Store(p) }

func (s *Server) ingestRoutes(v1 *gin.RouterGroup) {
	s.ingest.profiles.Store(s.cfg.Ingest.Profiles)
	v1.POST("/ingest", s.handleIngest)
	v1.POST("/topics/:topic/ingest", s.handleIngest)
}

// ingestAnswer is the body of a 200 (or of the 429/503 of a partly
// refused batch).
type ingestAnswer struct {
	// Accepted counts the lines published by this request.
	Accepted int `json:"accepted"`
	// Duplicates counts the lines whose dedup key was seen within the
	// idempotency window: published before, not again.
	Duplicates int `json:"duplicates"`
	// Rejected counts the lines refused (Errors lists up to 100 of them).
	Rejected int                 `json:"rejected"`
	Topics   []ingestTopicAnswer `json:"topics"`
	Errors   []ingestLineError   `json:"errors,omitempty"`
}

// ingestTopicAnswer is one topic's share of a request.
type ingestTopicAnswer struct {
	Topic      string `json:"topic"`
	Origin     string `json:"origin"`
	Epoch      string `json:"epoch"`
	Accepted   int    `json:"accepted"`
	Duplicates int    `json:"duplicates"`
	// FirstOffset and LastOffset span the events this request appended
	// (0 when it appended none).
	FirstOffset uint64 `json:"first_offset"`
	LastOffset  uint64 `json:"last_offset"`
}

// ingestLineError is one refused line.
type ingestLineError struct {
	Line    int    `json:"line"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ingestGroup is one topic's lines of a request, in input order.
type ingestGroup struct {
	topic   string
	lines   []int
	drafts  []push.Draft
	results []push.AppendResult // of the appended prefix; nil when none
	// refused is why the lines from refusedFrom on were not published
	// (nil: all were).
	refused     error
	refusedFrom int
}

// ingestRun collects one request's outcome.
type ingestRun struct {
	ans ingestAnswer
	// retry is the refusal that makes the whole answer retriable (the
	// 503 wins over a 429), nil when none.
	retry *apiError
	// first is the first permanent refusal, the answer's status when no
	// line was published.
	first *apiError
	// limited and unavailable count the lines refused with 429 and 503.
	limited, unavailable int
}

func (r *ingestRun) refuseLines(lines []int, err error) {
	for _, l := range lines {
		r.refuse(l, err)
	}
}

func (r *ingestRun) refuse(line int, err error) {
	ae := toAPIError(err)
	r.ans.Rejected++
	if len(r.ans.Errors) < maxIngestErrors {
		r.ans.Errors = append(r.ans.Errors, ingestLineError{Line: line, Code: ae.Code, Message: ae.Message})
	}
	switch ae.Status {
	case http.StatusTooManyRequests:
		r.limited++
	case http.StatusServiceUnavailable:
		r.unavailable++
	}
	switch {
	case ae.Status == http.StatusTooManyRequests || ae.Status == http.StatusServiceUnavailable:
		if r.retry == nil || ae.Status > r.retry.Status || (ae.Status == r.retry.Status && ae.RetryAfter > r.retry.RetryAfter) {
			r.retry = ae
		}
	case r.first == nil:
		r.first = ae
	}
}

func (s *Server) handleIngest(c *gin.Context) {
	start := time.Now()
	result := observability.PublishRejected
	urlTopic := c.Param("topic")
	ctx, srv, span := s.startPublish(c, urlTopic)
	defer func() { s.endPublish(ctx, srv, span, result, start) }()
	// As for batches: a refusal is answered before the body is read and
	// the HTTP/1.x connection is closed rather than drained.
	refuse := func(err error) {
		if c.Request.ProtoMajor == 1 {
			c.Header("Connection", "close")
		}
		s.writeError(c, err)
	}
	if urlTopic != "" {
		if err := push.ValidateTopic(urlTopic); err != nil {
			refuse(err)
			return
		}
	}
	p, err := s.principal(c.Request, false)
	if err != nil {
		refuse(err)
		return
	}
	switch {
	case urlTopic != "" && !p.CanPublish(urlTopic):
		refuse(errf(http.StatusForbidden, CodeForbidden, "not allowed to publish to "+strconv.Quote(urlTopic)))
		return
	case !p.CanPublishAny():
		refuse(errf(http.StatusForbidden, CodeForbidden, "not allowed to publish to any topic"))
		return
	}
	profile := s.ingest.profiles.Load().For(p.KeyID, p.Kind == auth.KindAPIKey)
	if urlTopic == "" && (profile == nil || profile.Topic == nil) {
		refuse(errf(http.StatusBadRequest, CodeInvalidTopic,
			"no topic: post to /v1/topics/{topic}/ingest, or configure an ingest profile with a topic template for this key"))
		return
	}
	endPublish, err := s.beginPublish()
	if err != nil {
		refuse(err)
		return
	}
	defer endPublish()
	if err := requireNDJSON(c); err != nil {
		refuse(err)
		return
	}
	maxLines, maxBody := s.ingestLimits()
	parser := ingest.NewParser(profile, urlTopic, maxLines, s.cfg.Limits.MaxEventBytes)
	parser.SetDedupScope(idempotencyScope(p.Tenant, ""))
	event := parser.Event()
	traceParent := observability.EventTraceparent(ctx)
	var run ingestRun
	groups := map[string]*ingestGroup{}
	var order []*ingestGroup
	allowed := map[string]bool{}
	body := http.MaxBytesReader(c.Writer, c.Request.Body, int64(maxBody))
	n, err := parser.Decode(body, func(l *ingest.Line) {
		if l.Err != nil {
			run.refuse(l.Number, ingestLineErr(l.Err))
			return
		}
		ok, seen := allowed[l.Topic]
		if !seen {
			ok = p.CanPublish(l.Topic)
			allowed[l.Topic] = ok
		}
		if !ok {
			run.refuse(l.Number, errf(http.StatusForbidden, CodeForbidden, "not allowed to publish to "+strconv.Quote(l.Topic)))
			return
		}
		g := groups[l.Topic]
		if g == nil {
			g = &ingestGroup{topic: l.Topic}
			groups[l.Topic] = g
			order = append(order, g)
		}
		d := push.Draft{Type: event, Data: bytes.Clone(l.Data), TraceParent: traceParent}
		if l.DedupKey != "" {
			d.IdempotencyKey = l.DedupKey // already scoped to the tenant
		}
		g.lines = append(g.lines, l.Number)
		g.drafts = append(g.drafts, d)
	})
	switch {
	case errors.Is(err, ingest.ErrTooManyLines):
		refuse(errf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, err.Error()+"; send smaller batches"))
		return
	case err != nil:
		refuse(err)
		return
	case n == 0:
		refuse(errf(http.StatusBadRequest, CodeInvalidEvent, "empty body: send one JSON value per line"))
		return
	}
	span.SetAttributes(attribute.Int("herald.ingest.lines", n), attribute.Int("herald.ingest.topics", len(order)))
	s.ingestGroups(c.Request.Context(), p.Tenant, order)
	for _, g := range order {
		if g.refused != nil {
			run.refuseLines(g.lines[g.refusedFrom:], g.refused)
		}
	}
	s.answerIngest(c, &run, order, &result)
}

// maxIngestCalls bounds the store calls one ingest request has in flight.
const maxIngestCalls = 8

// ingestGroups admits and appends the request's topic groups, up to
// maxIngestCalls of them at once (order matters within a topic only). After
// a store failure (503) the groups not yet started are refused with it
// without another call.
func (s *Server) ingestGroups(ctx context.Context, tenant string, order []*ingestGroup) {
	var storeDown atomic.Pointer[error]
	run := func(g *ingestGroup) {
		if err := storeDown.Load(); err != nil {
			g.refused = *err
			return
		}
		if err := s.ingestGroup(ctx, tenant, g); err != nil && toAPIError(err).Status == http.StatusServiceUnavailable {
			storeDown.CompareAndSwap(nil, &err)
		}
	}
	if len(order) == 1 {
		run(order[0])
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxIngestCalls)
	for _, g := range order {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			run(g)
		})
	}
	wg.Wait()
}

// ingestGroup admits and appends one topic's lines: the ingress guard
// takes them in one step (as many as it admits, in order), the store in
// one call. It records the lines it could not publish in g (refused from
// refusedFrom on) and returns the store's error, if any.
func (s *Server) ingestGroup(ctx context.Context, tenant string, g *ingestGroup) error {
	n := len(g.drafts)
	k, done, gerr := s.guardIngest(tenant, g.topic, n)
	// Append the admitted lines. A line the store answers as a duplicate
	// (a shipper's retry) was paid for when it was first published: its
	// token goes to the next line, in a further call. Without that, a
	// retried batch larger than the tenant's bucket would pay for its
	// published head on every retry and never get past it.
	next, budget := 0, k
	var err error
	for budget > 0 && next < n {
		var res []push.AppendResult
		res, err = s.append(ctx, g.topic, g.drafts[next:next+min(budget, n-next)])
		if err != nil {
			break
		}
		budget = 0
		for _, r := range res {
			if r.Duplicate {
				budget++
			}
		}
		next += len(res)
		g.results = append(g.results, res...)
	}
	done(err)
	switch {
	case err != nil:
		// Lines after the failed call were not published; the call's
		// own were not acknowledged.
		g.refused, g.refusedFrom = err, next
	case next < n:
		g.refused, g.refusedFrom = gerr, next
	}
	return err
}

// answerIngest writes the answer: per-topic positions, then the status
// (see the top of this file).
func (s *Server) answerIngest(c *gin.Context, run *ingestRun, order []*ingestGroup, result *string) {
	a := &run.ans
	a.Topics = make([]ingestTopicAnswer, 0, len(order))
	for _, g := range order {
		if g.results == nil {
			continue
		}
		a.Topics = append(a.Topics, ingestTopicAnswer{Topic: g.topic, Origin: s.store.Origin()})
		t := &a.Topics[len(a.Topics)-1]
		for _, r := range g.results {
			t.Epoch = r.Epoch
			if r.Duplicate {
				t.Duplicates++
				continue
			}
			t.Accepted++
			if t.FirstOffset == 0 {
				t.FirstOffset = r.Offset
			}
			t.LastOffset = r.Offset
		}
		a.Accepted += t.Accepted
		a.Duplicates += t.Duplicates
	}
	m := s.cfg.Telemetry.Metrics()
	ctx := c.Request.Context()
	m.IngestLines(ctx, observability.IngestOK, a.Accepted)
	m.IngestLines(ctx, observability.IngestDuplicate, a.Duplicates)
	m.IngestLines(ctx, observability.IngestLimited, run.limited)
	m.IngestLines(ctx, observability.IngestUnavailable, run.unavailable)
	m.IngestLines(ctx, observability.IngestRejected, a.Rejected-run.limited-run.unavailable)
	// Lines are answered in input order.
	slices.SortFunc(a.Errors, func(x, y ingestLineError) int { return x.Line - y.Line })
	switch {
	case a.Accepted > 0:
		*result = observability.PublishOK
	case a.Duplicates > 0:
		*result = observability.PublishDuplicate
	case run.retry != nil:
		*result = publishResultOf(run.retry)
	}
	status := http.StatusOK
	switch {
	case run.retry != nil:
		status = run.retry.Status
		c.Header("Retry-After", strconv.Itoa(max(1, run.retry.RetryAfter)))
	case a.Accepted+a.Duplicates == 0 && run.first != nil:
		// Nothing of the batch can ever be published: the shipper should
		// log it, not retry it.
		status = run.first.Status
	}
	c.JSON(status, a)
}

// guardIngest admits up to n publishes of tenant to topic at once: a guard
// that takes a batch's tokens in one step (PublishN) is asked once,
// another one line at a time. It returns how many were admitted, a done
// for them (valid when k > 0), and the refusal of the rest (a 429
// apiError) when k < n.
func (s *Server) guardIngest(tenant, topic string, n int) (int, func(error), error) {
	g := s.cfg.Guard
	if g == nil {
		return n, nopErr, nil
	}
	if bg, ok := g.(batchGuard); ok {
		k, done, err := bg.PublishN(tenant, topic, n)
		if err != nil {
			err = rateLimited(err)
		}
		if k == 0 {
			done = nopErr
		}
		return k, done, err
	}
	var dones []func(error)
	for range n {
		done, err := s.guardPublish(tenant, topic)
		if err != nil {
			return len(dones), doneAll(dones), err
		}
		dones = append(dones, done)
	}
	return n, doneAll(dones), nil
}

// batchGuard is implemented by guards that admit a batch in one step.
type batchGuard interface {
	// PublishN admits up to n publishes by tenant to topic; err is set
	// when fewer than n were admitted, done is valid when k > 0.
	PublishN(tenant, topic string, n int) (k int, done func(error), err error)
}

func doneAll(dones []func(error)) func(error) {
	return func(err error) {
		for _, d := range dones {
			d(err)
		}
	}
}

// rateLimited renders an ingress refusal as 429 with Retry-After.
func rateLimited(err error) error {
	return &apiError{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
		Message:    "publish rate limit exceeded for this tenant or topic; retry after the Retry-After delay",
		RetryAfter: retryAfterOf(err)}
}

// ingestLineErr maps a line's decoding error to its rendering.
func ingestLineErr(err error) error {
	switch {
	case errors.Is(err, ingest.ErrInvalidJSON):
		return errf(http.StatusBadRequest, CodeInvalidJSON, err.Error())
	case errors.Is(err, ingest.ErrLineTooLong):
		return errf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, err.Error())
	case errors.Is(err, ingest.ErrNoTopic), errors.Is(err, push.ErrInvalidTopic):
		return errf(http.StatusBadRequest, CodeInvalidTopic, err.Error())
	}
	return errf(http.StatusBadRequest, CodeInvalidEvent, err.Error())
}

// ndjsonTypes are the accepted Content-Types of an ingest body.
var ndjsonTypes = map[string]bool{"application/x-ndjson": true, "application/ndjson": true, "application/jsonl": true}

func requireNDJSON(c *gin.Context) error {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || !ndjsonTypes[mt] {
		return errf(http.StatusUnsupportedMediaType, CodeUnsupportedType,
			"Content-Type must be application/x-ndjson (one JSON value per line)")
	}
	return nil
}

func (s *Server) ingestLimits() (maxLines, maxBody int) {
	maxLines, maxBody = s.cfg.Ingest.MaxLines, s.cfg.Ingest.MaxBodyBytes
	if maxLines <= 0 {
		maxLines = ingest.DefaultMaxLines
	}
	if maxBody <= 0 {
		maxBody = ingest.DefaultMaxBodyBytes
	}
	return maxLines, maxBody
}
