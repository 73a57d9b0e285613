package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/sse"
)

// StreamConfig configures a Stream. Zero values mean the documented defaults.
type StreamConfig struct {
	// Endpoints are Herald base URLs ("https://herald.example.com"), in order
	// of preference. The stream starts at the first and moves to the next
	// (round-robin) after a connection attempt fails or a connection ends
	// without delivering an event. Required.
	Endpoints []string
	// Topics to subscribe to. Required.
	Topics []string
	// LastEventID resumes after this cursor (an Event.ID from an earlier
	// stream over the same topics). It takes precedence over From.
	LastEventID string
	// From selects where a stream without LastEventID starts: "" for new
	// events only, "earliest" for everything the server retains.
	From string
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string
	// Header holds extra request headers. Accept, Cache-Control,
	// Authorization and Last-Event-ID are set by the client.
	Header http.Header
	// HTTPClient performs the requests. It must not have a Timeout: that
	// would cut every stream after it. Nil means a client owned by the
	// Stream with dial, TLS handshake and response header timeouts of 10s,
	// 10s and 30s and no overall timeout.
	HTTPClient *http.Client
	// MinBackoff is the base of the exponential backoff: the first delay is
	// drawn from [0, base), the next from [0, 2·base), and so on. The
	// server's "retry:" replaces it as the base when larger. Zero means 100ms.
	MinBackoff time.Duration
	// MaxBackoff caps the backoff. It does not cap a Retry-After (see
	// MaxRetryAfter). Zero means 30s.
	MaxBackoff time.Duration
	// IdleTimeout closes and re-establishes a connection on which nothing,
	// not even a heartbeat comment (or, before that, the response headers),
	// arrived for this long: it detects half-open TCP connections and
	// paused nodes, and the stream resumes on the next endpoint. Keep it a
	// few heartbeat intervals long.
	// Zero means 45s; negative disables it.
	IdleTimeout time.Duration
	// MaxEventSize caps one event's data. A larger event stops the stream
	// with sse.ErrTooLarge: reconnecting would replay it forever. Zero means
	// sse.DefaultMaxEventSize (1 MiB).
	MaxEventSize int
	// Failback, when positive, returns a stream that runs on another
	// endpoint than the first one (after a failover) to the first one once
	// its /readyz has answered 200 for this long without a failure (probed
	// every Failback/4, at least every 250ms). A stream thus moves at most
	// twice per outage of its home region: away, and back once the home
	// is steadily healthy. Zero means stay where it is.
	Failback time.Duration
	// OnConnect, when set, is called after a connection is established
	// (200 with an event stream), with the endpoint used.
	OnConnect func(endpoint string)
	// OnDisconnect, when set, is called once for every OnConnect, when that
	// connection ends, with the reason: io.EOF for a clean close by the
	// server, ErrIdleTimeout, a network error, the handler's error or the
	// context's error.
	OnDisconnect func(endpoint string, err error)
	// Logger receives connection lifecycle records. Nil discards them.
	Logger *slog.Logger
	// Transport is TransportSSE (GET /v1/stream, the default) or
	// TransportWS (GET /v1/ws). Events, ids and resumption are the same on
	// both: an id from one resumes the other.
	Transport string
}

// Stream transports.
const (
	TransportSSE = "sse"
	TransportWS  = "ws"
)

// Defaults of StreamConfig.
const (
	DefaultMinBackoff  = 100 * time.Millisecond
	DefaultMaxBackoff  = 30 * time.Second
	DefaultIdleTimeout = 45 * time.Second
)

// Stream is a resuming subscription. Create it with Subscribe and consume it
// with Run.
type Stream struct {
	cfg    StreamConfig
	cfgErr error
	// endpoints are the configured ones, then alternates learned from the
	// servers (herald.hello, herald.moved, evacuation errors); names are
	// their strings as given. Owned by the active Run; only appended to.
	endpoints []*url.URL
	names     []string
	hc        *http.Client
	ownHC     bool
	bo        backoff
	log       *slog.Logger
	running   atomic.Bool

	mu     sync.Mutex
	lastID string

	// Owned by the active Run.
	next      int           // index of the endpoint to try next
	connected bool          // a connection was established at least once
	trace     string        // the last herald.hello's session trace (Run's goroutine only)
	retry     time.Duration // latest "retry:" from a server; 0 when none
}

// Subscribe returns a Stream for cfg. It performs no I/O; configuration
// errors are reported by Run.
func Subscribe(cfg StreamConfig) *Stream {
	s := &Stream{cfg: cfg, lastID: cfg.LastEventID, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cfg.MinBackoff <= 0 {
		s.cfg.MinBackoff = DefaultMinBackoff
	}
	if s.cfg.MaxBackoff <= 0 {
		s.cfg.MaxBackoff = DefaultMaxBackoff
	}
	s.cfg.MaxBackoff = max(s.cfg.MaxBackoff, s.cfg.MinBackoff)
	if s.cfg.IdleTimeout == 0 {
		s.cfg.IdleTimeout = DefaultIdleTimeout
	}
	s.bo = backoff{base: s.cfg.MinBackoff, max: s.cfg.MaxBackoff}
	s.hc = cfg.HTTPClient
	if s.hc == nil {
		s.hc, s.ownHC = &http.Client{Transport: newTransport(30 * time.Second)}, true
	}
	s.endpoints, s.cfgErr = parseEndpoints(cfg.Endpoints)
	s.names = append([]string(nil), cfg.Endpoints...)
	if s.cfgErr == nil && len(cfg.Topics) == 0 {
		s.cfgErr = fmt.Errorf("%w: no topics", ErrConfig)
	}
	return s
}

// newTransport clones the default transport (proxy from the environment,
// HTTP/2, keep-alives) with bounds on every phase before the body.
func newTransport(responseHeaderTimeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = responseHeaderTimeout
	return t
}

func parseEndpoints(eps []string) ([]*url.URL, error) {
	if len(eps) == 0 {
		return nil, fmt.Errorf("%w: no endpoints", ErrConfig)
	}
	out := make([]*url.URL, len(eps))
	for i, ep := range eps {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: endpoint %q is not an http(s) base URL", ErrConfig, ep)
		}
		out[i] = u
	}
	return out, nil
}

// LastEventID returns the cursor after the last event the handler accepted
// (or a later id the server sent without an event). Store it to resume in a
// later Stream. Safe for concurrent use.
func (s *Stream) LastEventID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

func (s *Stream) setLastID(id string) {
	s.mu.Lock()
	s.lastID = id
	s.mu.Unlock()
}

// Run connects and calls handler for every event until ctx is done (it then
// returns ctx.Err()), the handler returns an error (returned as is; the
// event it failed on is not consumed), or a permanent error occurs: an
// *APIError with a 4xx status other than 408 and 429, ErrStopped,
// ErrNotEventStream, sse.ErrTooLarge or an ErrConfig error. Everything else
// (network errors, 408, 429, 5xx, the server closing the stream) leads to a
// reconnect. Run can be called again after it returns and resumes from
// LastEventID.
func (s *Stream) Run(ctx context.Context, handler func(Event) error) error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)
	if s.ownHC {
		// The live stream's connection is closed with its body; this
		// releases the pooled ones (and their goroutines).
		defer s.hc.CloseIdleConnections()
	}

	failures := 0
	var wait time.Duration
	for {
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		ep := s.endpoints[s.next]
		out := s.connect(ctx, s.next, handler)
		switch {
		case out.handlerErr != nil:
			return out.handlerErr
		case ctx.Err() != nil:
			return ctx.Err()
		case out.permanent:
			s.log.Error("stream stopped", "endpoint", ep.Redacted(), "err", out.err)
			return out.err
		}
		switch {
		case errors.Is(out.err, errFailback):
			// The home endpoint is steadily healthy again: go back now.
			failures = 0
			s.next = 0
			s.log.Info("stream failing back", "from", ep.Redacted(), "to", s.endpoints[0].Redacted())
			continue
		case out.moveTo >= 0:
			// The server's region is being evacuated: go where it said.
			failures = 0
			s.next = out.moveTo
		case out.delivered && errors.Is(out.err, ErrIdleTimeout):
			// The endpoint went silent mid-stream: resume on the next one.
			failures = 0
			s.next = (s.next + 1) % len(s.endpoints)
		case out.delivered:
			failures = 0
		default:
			failures++
			s.next = (s.next + 1) % len(s.endpoints)
		}
		wait = max(s.bo.delay(s.retry, failures), out.retryAfter)
		s.log.Warn("stream disconnected", "endpoint", ep.Redacted(), "err", out.err,
			"failures", failures, "reconnect_in", wait)
	}
}

// outcome is how one connection attempt ended.
type outcome struct {
	err        error
	handlerErr error
	permanent  bool
	delivered  bool          // the handler accepted at least one event
	retryAfter time.Duration // server-imposed minimum wait
	moveTo     int           // endpoint the server sent the client to; -1: none
}

// maxLearned bounds the alternates a stream learns from servers.
const maxLearned = 16

// learn adds alternates to the endpoint list and returns the index of the
// first usable one that is not the current endpoint (-1 when none).
func (s *Stream) learn(alts []string, current int) int {
	first := -1
	for _, a := range alts {
		idx := -1
		for i, n := range s.names {
			if n == a || strings.TrimRight(n, "/") == strings.TrimRight(a, "/") {
				idx = i
				break
			}
		}
		if idx < 0 {
			if len(s.names) >= len(s.cfg.Endpoints)+maxLearned {
				continue
			}
			u, err := url.Parse(a)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				continue
			}
			s.endpoints = append(s.endpoints, u)
			s.names = append(s.names, a)
			idx = len(s.names) - 1
		}
		if first < 0 && idx != current {
			first = idx
		}
	}
	return first
}

// errFailback is the cancellation cause of a connection left for the home
// endpoint.
var errFailback = errors.New("failback")

// watchHome probes the first endpoint's /readyz while the stream runs
// elsewhere and cancels the connection once it has been ready for
// Config.Failback. It returns when ctx is done.
func (s *Stream) watchHome(ctx context.Context, cancel context.CancelCauseFunc, probe string) {
	every := max(s.cfg.Failback/4, 250*time.Millisecond)
	var since time.Time
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, every)
		req, _ := http.NewRequestWithContext(pctx, http.MethodGet, probe, nil)
		ok := false
		if resp, err := s.hc.Do(req); err == nil {
			ok = resp.StatusCode == http.StatusOK
			drain(resp.Body)
		}
		pcancel()
		switch {
		case !ok:
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= s.cfg.Failback:
			cancel(errFailback)
			return
		}
	}
}

// errIdle is the cancellation cause of a connection closed by the idle timer.
var errIdle = errors.New("idle")

func (s *Stream) connect(ctx context.Context, epIdx int, handler func(Event) error) outcome {
	if s.cfg.Transport == TransportWS {
		return s.connectWS(ctx, epIdx, handler)
	}
	ep := s.endpoints[epIdx]
	connCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := s.newRequest(connCtx, ep)
	if err != nil {
		return outcome{err: err, permanent: true, moveTo: -1}
	}
	// A node that accepts connections but does not answer (paused, wedged)
	// gets the idle timeout for its response headers too.
	var hdr *time.Timer
	if s.cfg.IdleTimeout > 0 {
		hdr = time.AfterFunc(s.cfg.IdleTimeout, func() { cancel(errIdle) })
	}
	resp, err := s.hc.Do(req)
	if hdr != nil {
		hdr.Stop()
	}
	if err != nil {
		if errors.Is(context.Cause(connCtx), errIdle) {
			err = ErrIdleTimeout
		}
		return outcome{err: err, moveTo: -1}
	}
	defer resp.Body.Close()

	if o, ok := s.checkResponse(resp); !ok {
		drain(resp.Body)
		o.moveTo = -1
		var apiErr *APIError
		if errors.As(o.err, &apiErr) && len(apiErr.Alternates) > 0 {
			o.moveTo = s.learn(apiErr.Alternates, epIdx)
		}
		return o
	}

	endpoint := s.names[epIdx]
	if epIdx != 0 && s.cfg.Failback > 0 {
		home, stop := context.WithCancel(connCtx)
		defer stop()
		go s.watchHome(home, cancel, s.endpoints[0].JoinPath("readyz").String())
	}
	s.connected = true
	s.log.Info("stream connected", "endpoint", ep.Redacted())
	if s.cfg.OnConnect != nil {
		s.cfg.OnConnect(endpoint)
	}
	out := s.read(connCtx, cancel, resp.Body, handler, epIdx)
	switch cause := context.Cause(connCtx); {
	case errors.Is(cause, errIdle):
		out.err = ErrIdleTimeout
	case errors.Is(cause, errFailback) && ctx.Err() == nil:
		out.err = errFailback
	}
	s.disconnected(ctx, endpoint, out)
	return out
}

// disconnected calls OnDisconnect for a connection that ended with out.
func (s *Stream) disconnected(ctx context.Context, endpoint string, out outcome) {
	if s.cfg.OnDisconnect == nil {
		return
	}
	reason := out.err
	switch {
	case out.handlerErr != nil:
		reason = out.handlerErr
	case ctx.Err() != nil:
		reason = ctx.Err()
	}
	s.cfg.OnDisconnect(endpoint, reason)
}

func (s *Stream) newRequest(ctx context.Context, ep *url.URL) (*http.Request, error) {
	u := ep.JoinPath("v1", "stream")
	q := u.Query()
	for _, t := range s.cfg.Topics {
		q.Add("topic", t)
	}
	lastID := s.LastEventID()
	header := lastID != "" && s.connected
	switch {
	case header:
		// Reconnects carry the cursor in the header only (Herald's contract,
		// and what a browser EventSource does); the first request's query
		// cursor would be stale.
	case lastID != "":
		q.Set("last_event_id", lastID)
	case s.cfg.From != "":
		q.Set("from", s.cfg.From)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	for k, vs := range s.cfg.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	// Declares an SDK client: the server may then answer overload with 503
	// and Retry-After instead of the browser-safe 200 + retry: + close.
	req.Header.Set("Herald-Client", "herald-go")
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	req.Header.Del("Last-Event-ID")
	if s.trace != "" && req.Header.Get("traceparent") == "" {
		req.Header.Set("traceparent", s.trace)
	}
	if header {
		req.Header.Set("Last-Event-ID", lastID)
	}
	return req, nil
}

// checkResponse classifies a response; ok means it is an event stream.
func (s *Stream) checkResponse(resp *http.Response) (outcome, bool) {
	switch {
	case resp.StatusCode == http.StatusOK:
		mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if err != nil || mt != "text/event-stream" {
			return outcome{err: fmt.Errorf("%w: %q", ErrNotEventStream, resp.Header.Get("Content-Type")), permanent: true}, false
		}
		return outcome{}, true
	case resp.StatusCode == http.StatusNoContent:
		return outcome{err: ErrStopped, permanent: true}, false
	}
	apiErr := readAPIError(resp, time.Now())
	if apiErr.Cursor != "" && s.LastEventID() == "" {
		// A fresh stream turned away: its position as of this attempt, so
		// the retry misses nothing published meanwhile.
		s.setLastID(apiErr.Cursor)
	}
	return outcome{err: apiErr, permanent: !apiErr.Temporary(), retryAfter: apiErr.RetryAfter}, false
}

// read decodes the body and hands events to handler until the body ends.
func (s *Stream) read(ctx context.Context, cancel context.CancelCauseFunc, body io.Reader, handler func(Event) error, epIdx int) outcome {
	if s.cfg.IdleTimeout > 0 {
		idle := &idleReader{r: body, d: s.cfg.IdleTimeout}
		idle.t = time.AfterFunc(idle.d, func() { cancel(errIdle) })
		defer idle.t.Stop()
		body = idle
	}
	dec := sse.DecoderConfig{MaxEventSize: s.cfg.MaxEventSize, LastEventID: s.LastEventID()}.NewDecoder(body)
	out := outcome{moveTo: -1}
	for {
		ev, err := dec.Next()
		if r, ok := dec.Retry(); ok {
			s.retry = r
		}
		if err != nil {
			// Every event dispatched before this point was handled, so the
			// decoder's committed id (which includes id-only blocks) is ours.
			s.setLastID(dec.LastEventID())
			out.err = err
			out.permanent = errors.Is(err, sse.ErrTooLarge)
			return out
		}
		if err := ctx.Err(); err != nil {
			// Cancelled (or idle) with events still buffered: stop without
			// handing them over; they are not consumed.
			out.err = err
			return out
		}
		if !s.handle(Event{ID: ev.ID, Type: ev.Type, Data: ev.Data}, handler, epIdx, &out) {
			return out
		}
	}
}

// handle hands one event to handler, after learning what the server's
// control events say; false when the handler failed (out.handlerErr).
func (s *Stream) handle(ev Event, handler func(Event) error, epIdx int, out *outcome) bool {
	if ev.Type == push.EventHello {
		// The server's session span: sent back as traceparent on the
		// next connection so that its span links to this one.
		var h push.Hello
		if json.Unmarshal([]byte(ev.Data), &h) == nil {
			if len(h.Trace) <= 128 {
				s.trace = h.Trace
			}
			s.learn(h.Alternates, epIdx)
		}
	}
	if ev.Type == push.EventMoved {
		var m push.Moved
		if json.Unmarshal([]byte(ev.Data), &m) == nil {
			out.moveTo = s.learn(m.Alternates, epIdx)
		}
	}
	if err := handler(ev); err != nil {
		out.handlerErr = err
		return false
	}
	s.setLastID(ev.ID)
	out.delivered = true
	return true
}

// idleReader re-arms t for d after every read that returns data.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if n > 0 {
		ir.t.Reset(ir.d)
	}
	return n, err
}
