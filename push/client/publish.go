package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push/wire"
)

// PublisherConfig configures a Publisher. Zero values mean the documented
// defaults.
type PublisherConfig struct {
	// Endpoints are Herald base URLs in order of preference. A Publisher
	// sticks to the first that works and moves to the next after a failure.
	// Required.
	Endpoints []string
	// Token, when set, is sent as "Authorization: Bearer <Token>" (an API
	// key or a JWT).
	Token string
	// Header holds extra request headers.
	Header http.Header
	// HTTPClient performs the requests; its Timeout bounds each attempt.
	// Nil means a client owned by the Publisher with a 10s timeout.
	HTTPClient *http.Client
	// MaxAttempts bounds the attempts of one call (first try included).
	// Zero means 3.
	MaxAttempts int
	// MinBackoff and MaxBackoff shape the full-jitter backoff between
	// attempts (see StreamConfig). Zero means 100ms and 5s. A Retry-After
	// from the server overrides them when longer.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives retry records. Nil discards them.
	Logger *slog.Logger
}

// Defaults of PublisherConfig.
const (
	DefaultPublishTimeout    = 10 * time.Second
	DefaultMaxAttempts       = 3
	DefaultPublishMaxBackoff = 5 * time.Second
)

// Message is one event to publish.
type Message struct {
	// Event is the event type; "" publishes with the server's default
	// ("message").
	Event string
	// Data is the payload as raw JSON (object, array, string, number, …).
	// It must be valid JSON.
	Data json.RawMessage
	// Text is the payload as a string, used when Data is nil; it is sent as
	// a JSON string.
	Text string
	// IdempotencyKey makes retries safe: the server applies one publish per
	// key within its idempotency window. When empty and MaxAttempts > 1, a
	// random key is generated for the call and reused by all its attempts.
	IdempotencyKey string
}

// Result is the server's acknowledgement of one published event (the wire
// type the server sends; Duplicate is true when the idempotency key matched
// an earlier publish, the other fields then describe that earlier event).
type Result = wire.PublishResult

// resultJSON is Result on the wire, tolerant of offsets as strings and times
// as Unix milliseconds.
type resultJSON struct {
	Topic     string     `json:"topic"`
	Origin    string     `json:"origin"`
	Epoch     string     `json:"epoch"`
	Offset    flexUint   `json:"offset"`
	Time      flexTime   `json:"time"`
	Duplicate bool       `json:"duplicate"`
	Error     *errorJSON `json:"error"`
}

type errorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (r resultJSON) result() Result {
	return Result{Topic: r.Topic, Origin: r.Origin, Epoch: r.Epoch, Offset: uint64(r.Offset),
		Time: time.Time(r.Time), Duplicate: r.Duplicate}
}

// BatchItem is one event of a batch.
type BatchItem struct {
	Topic string
	Message
}

// BatchResult is the outcome of one BatchItem: Err is nil on success.
type BatchResult struct {
	Result
	// Err is the item's rejection. Its Status is 0: the server reports
	// per-item errors by code only.
	Err *APIError
}

// Publisher publishes events over HTTP. Safe for concurrent use.
type Publisher struct {
	cfg       PublisherConfig
	cfgErr    error
	mu        sync.Mutex
	endpoints []*url.URL // configured, then alternates learned from evacuating servers
	hc        *http.Client
	bo        backoff
	log       *slog.Logger
	preferred atomic.Int64 // index of the endpoint that worked last
}

// NewPublisher returns a Publisher for cfg. It performs no I/O;
// configuration errors are reported by the publish calls.
func NewPublisher(cfg PublisherConfig) *Publisher {
	p := &Publisher{cfg: cfg, log: cfg.Logger, hc: cfg.HTTPClient}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.hc == nil {
		p.hc = &http.Client{Timeout: DefaultPublishTimeout, Transport: newTransport(DefaultPublishTimeout)}
	}
	if p.cfg.MaxAttempts <= 0 {
		p.cfg.MaxAttempts = DefaultMaxAttempts
	}
	if p.cfg.MinBackoff <= 0 {
		p.cfg.MinBackoff = DefaultMinBackoff
	}
	if p.cfg.MaxBackoff <= 0 {
		p.cfg.MaxBackoff = DefaultPublishMaxBackoff
	}
	p.cfg.MaxBackoff = max(p.cfg.MaxBackoff, p.cfg.MinBackoff)
	p.bo = backoff{base: p.cfg.MinBackoff, max: p.cfg.MaxBackoff}
	p.endpoints, p.cfgErr = parseEndpoints(cfg.Endpoints)
	return p
}

// CloseIdleConnections releases the HTTP client's pooled connections. The
// Publisher stays usable.
func (p *Publisher) CloseIdleConnections() { p.hc.CloseIdleConnections() }

// Publish publishes msg to topic and returns the server's acknowledgement.
// It retries network errors, 408, 429 and 5xx up to MaxAttempts times across
// the endpoints with the same idempotency key, waiting at least the server's
// Retry-After, and never waits past ctx's deadline: when the next wait would
// overrun it, the last error is returned at once. Keys deduplicate within one
// origin (region): when an attempt got no answer and the retry lands in
// another region, the event may be stored in both.
func (p *Publisher) Publish(ctx context.Context, topic string, msg Message) (Result, error) {
	if p.cfgErr != nil {
		return Result{}, p.cfgErr
	}
	if topic == "" || topic == "." || topic == ".." {
		return Result{}, fmt.Errorf("client: invalid topic %q", topic)
	}
	key := msg.IdempotencyKey
	if key == "" && p.cfg.MaxAttempts > 1 {
		key = rand.Text()
	}
	data, err := payload(msg)
	if err != nil {
		return Result{}, err
	}
	body, err := json.Marshal(struct {
		Event string          `json:"event,omitempty"`
		Data  json.RawMessage `json:"data"`
	}{msg.Event, data})
	if err != nil {
		return Result{}, fmt.Errorf("client: encode message: %w", err)
	}
	path := func(ep *url.URL) *url.URL {
		return ep.JoinPath("v1", "topics", url.PathEscape(topic), "events")
	}
	resp, err := p.do(ctx, path, body, key, http.StatusCreated, http.StatusOK)
	if err != nil {
		return Result{}, err
	}
	var r resultJSON
	if err := json.Unmarshal(resp.body, &r); err != nil {
		return Result{}, fmt.Errorf("client: decode publish response: %w", err)
	}
	return r.result(), nil
}

// PublishBatch publishes items in one request. The error is non-nil when the
// request as a whole failed (after retries, as for Publish); otherwise each
// item's outcome is in the result at the same index, and items may have
// failed individually (the server answers 207). Failed items are not
// retried: their errors are typically permanent (validation), and retrying
// them is the caller's decision; their idempotency keys (generated ones
// included) make resubmitting the whole batch safe.
func (p *Publisher) PublishBatch(ctx context.Context, items []BatchItem) ([]BatchResult, error) {
	if p.cfgErr != nil {
		return nil, p.cfgErr
	}
	type wireItem struct {
		Topic          string          `json:"topic"`
		Event          string          `json:"event,omitempty"`
		Data           json.RawMessage `json:"data"`
		IdempotencyKey string          `json:"idempotency_key,omitempty"`
	}
	wire := make([]wireItem, len(items))
	for i, it := range items {
		data, err := payload(it.Message)
		if err != nil {
			return nil, fmt.Errorf("client: batch item %d: %w", i, err)
		}
		key := it.IdempotencyKey
		if key == "" && p.cfg.MaxAttempts > 1 {
			key = rand.Text()
		}
		wire[i] = wireItem{Topic: it.Topic, Event: it.Event, Data: data, IdempotencyKey: key}
	}
	body, err := json.Marshal(struct {
		Events []wireItem `json:"events"`
	}{wire})
	if err != nil {
		return nil, fmt.Errorf("client: encode batch: %w", err)
	}
	path := func(ep *url.URL) *url.URL { return ep.JoinPath("v1", "events") }
	resp, err := p.do(ctx, path, body, "", http.StatusOK, http.StatusMultiStatus)
	if err != nil {
		return nil, err
	}
	var out struct {
		Results []resultJSON `json:"results"`
	}
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return nil, fmt.Errorf("client: decode batch response: %w", err)
	}
	if len(out.Results) != len(items) {
		return nil, fmt.Errorf("client: batch response has %d results for %d items", len(out.Results), len(items))
	}
	results := make([]BatchResult, len(items))
	for i, r := range out.Results {
		if r.Error != nil {
			results[i].Err = &APIError{Code: r.Error.Code, Message: r.Error.Message}
			continue
		}
		results[i].Result = r.result()
	}
	return results, nil
}

// payload returns msg's data as JSON.
func payload(msg Message) (json.RawMessage, error) {
	if msg.Data != nil {
		if !json.Valid(msg.Data) {
			return nil, errors.New("client: Message.Data is not valid JSON")
		}
		return msg.Data, nil
	}
	b, err := json.Marshal(msg.Text)
	if err != nil {
		return nil, fmt.Errorf("client: encode Message.Text: %w", err)
	}
	return b, nil
}

type response struct {
	status int
	body   []byte
}

// maxResponseBody bounds a success response (a large batch's results).
const maxResponseBody = 8 << 20

// do POSTs body with retries; path maps an endpoint to the request URL.
func (p *Publisher) do(ctx context.Context, path func(*url.URL) *url.URL, body []byte, idemKey string, okStatus ...int) (response, error) {
	start := p.preferred.Load()
	var lastErr error
	var retryAfter time.Duration
	for attempt := range p.cfg.MaxAttempts {
		if attempt > 0 {
			wait := max(p.bo.delay(0, attempt-1), retryAfter)
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				return response{}, fmt.Errorf("client: gave up after %d attempts (next retry in %v would pass the deadline): %w", attempt, wait, lastErr)
			}
			p.log.Warn("publish retry", "attempt", attempt+1, "wait", wait, "err", lastErr)
			if err := sleep(ctx, wait); err != nil {
				return response{}, err
			}
		}
		p.mu.Lock()
		eps := p.endpoints
		p.mu.Unlock()
		n := int64(len(eps))
		idx := (start + int64(attempt)) % n
		resp, err := p.once(ctx, path(eps[idx]), body, idemKey, okStatus)
		if err == nil {
			p.preferred.Store(idx)
			return resp, nil
		}
		if ctx.Err() != nil {
			return response{}, ctx.Err()
		}
		var apiErr *APIError
		if errors.As(err, &apiErr) {
			if !apiErr.Temporary() {
				return response{}, err
			}
			retryAfter = apiErr.RetryAfter
			if alt := p.learn(apiErr.Alternates); alt >= 0 {
				// The region is being evacuated: the next attempt goes to
				// the first alternate it named, without waiting.
				p.preferred.Store(alt)
				start, retryAfter = alt-int64(attempt)-1, 0
				lastErr = err
				continue
			}
		} else {
			retryAfter = 0
		}
		lastErr = err
		p.preferred.CompareAndSwap(idx, (idx+1)%n)
	}
	return response{}, fmt.Errorf("client: gave up after %d attempts: %w", p.cfg.MaxAttempts, lastErr)
}

// learn adds alternates to the endpoints (at most maxLearned) and returns
// the index of the first one, or -1.
func (p *Publisher) learn(alts []string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	first := int64(-1)
	for _, a := range alts {
		idx := -1
		for i, u := range p.endpoints {
			if strings.TrimRight(u.String(), "/") == strings.TrimRight(a, "/") {
				idx = i
				break
			}
		}
		if idx < 0 {
			if len(p.endpoints) >= len(p.cfg.Endpoints)+maxLearned {
				continue
			}
			u, err := url.Parse(a)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				continue
			}
			p.endpoints = append(p.endpoints[:len(p.endpoints):len(p.endpoints)], u)
			idx = len(p.endpoints) - 1
		}
		if first < 0 {
			first = int64(idx)
		}
	}
	return first
}

// once performs one attempt.
func (p *Publisher) once(ctx context.Context, u *url.URL, body []byte, idemKey string, okStatus []int) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return response{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	for k, vs := range p.cfg.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if p.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer drain(resp.Body)
	for _, s := range okStatus {
		if resp.StatusCode == s {
			b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
			if err != nil {
				return response{}, fmt.Errorf("client: read response: %w", err)
			}
			if len(b) > maxResponseBody {
				return response{}, fmt.Errorf("client: response larger than %d bytes", maxResponseBody)
			}
			return response{status: resp.StatusCode, body: b}, nil
		}
	}
	return response{}, readAPIError(resp, time.Now())
}
