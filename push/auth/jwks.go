package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

const (
	// maxJWKSBytes bounds one JWKS response body.
	maxJWKSBytes = 1 << 20
	// maxJWKSKeys bounds the keys taken from one URL.
	maxJWKSKeys = 256
)

// JWKSObserver receives the JWKS cache's events. observability.Metrics
// implements it. Calls come from the fetcher goroutine and from requests;
// they must be fast and must not block.
type JWKSObserver interface {
	// JWKSRefreshed counts one fetch of one URL, successful or not.
	JWKSRefreshed(ok bool)
	// JWKSKeysLoaded reports the keys usable after a refresh (all URLs).
	JWKSKeysLoaded(n int)
	// JWKSUnknownKID counts a token whose kid no cached key has; refreshed
	// tells whether it was allowed to trigger a refresh (false: the
	// refresh-rate bound refused it and the token was rejected at once).
	JWKSUnknownKID(refreshed bool)
}

// jwksConfig is the validated JWKS part of Config.
type jwksConfig struct {
	urls        []string
	algs        []string
	interval    time.Duration
	minInterval time.Duration
	timeout     time.Duration
	observer    JWKSObserver
	logger      *slog.Logger
}

// compileJWKS validates the JWKS fields of cfg, reporting problems to fail.
func compileJWKS(cfg Config, fail func(string, ...any)) *jwksConfig {
	c := &jwksConfig{
		urls:        slices.Clone(cfg.JWKSURLs),
		algs:        slices.Clone(cfg.JWKSAlgorithms),
		interval:    cfg.JWKSRefreshInterval,
		minInterval: cfg.JWKSMinRefreshInterval,
		timeout:     cfg.JWKSTimeout,
		observer:    cfg.JWKSObserver,
		logger:      cfg.Logger,
	}
	if len(c.urls) > maxJWKSURLs {
		fail("jwks_url: %d URLs, at most %d", len(c.urls), maxJWKSURLs)
	}
	for i, u := range c.urls {
		if err := checkJWKSURL(u); err != nil {
			fail("jwks_url[%d] %q: %w", i, clip(redactURL(u)), err)
		} else if slices.Contains(c.urls[:i], u) {
			fail("jwks_url[%d] %q: duplicate", i, clip(redactURL(u)))
		}
	}
	if len(c.algs) == 0 {
		for _, alg := range Algorithms() {
			if _, kind, _ := algorithm(alg); kind != kindHMAC {
				c.algs = append(c.algs, alg)
			}
		}
	}
	for i, alg := range c.algs {
		_, kind, err := algorithm(alg)
		switch {
		case err != nil:
			fail("jwks_algorithms[%d]: %w", i, err)
		case kind == kindHMAC:
			fail("jwks_algorithms[%d] %q: HMAC algorithms cannot be used with a JWKS (a published key would be the secret)", i, alg)
		case slices.Contains(c.algs[:i], alg):
			fail("jwks_algorithms[%d] %q: duplicate", i, alg)
		}
	}
	if c.interval == 0 {
		c.interval = DefaultJWKSRefreshInterval
	}
	if c.minInterval == 0 {
		c.minInterval = DefaultJWKSMinRefreshInterval
	}
	if c.timeout == 0 {
		c.timeout = DefaultJWKSTimeout
	}
	switch {
	case c.minInterval < 0:
		fail("jwks_min_refresh_interval %s: must not be negative (0 means %s)", cfg.JWKSMinRefreshInterval, DefaultJWKSMinRefreshInterval)
	case c.interval < c.minInterval:
		fail("jwks_refresh_interval %s: must be at least jwks_min_refresh_interval (%s)", c.interval, c.minInterval)
	}
	if c.timeout < 0 || c.timeout > MaxJWKSTimeout {
		fail("jwks_timeout %s: must be between 0 (meaning %s) and %s", cfg.JWKSTimeout, DefaultJWKSTimeout, MaxJWKSTimeout)
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// checkJWKSURL accepts absolute https URLs, and http URLs to a loopback
// host: keys fetched in clear text from anywhere else could be replaced on
// the way.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Host == "" || u.Opaque != "" {
		return errors.New("must be an absolute http(s) URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return errors.New("http is accepted only to a loopback host; use https")
	}
	return errors.New("scheme must be https")
}

// redactURL hides a password in u for logs and errors.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

// jwksSnapshot is an immutable view of the keys of every URL.
type jwksSnapshot struct {
	kf keyfunc.Keyfunc // nil when no key is loaded
	n  int
	// started is when the refresh that built this snapshot began.
	started time.Time
	// next is closed when a newer snapshot replaces this one.
	next chan struct{}
}

// jwksCache holds the keys of the configured JWKS URLs. One goroutine owns
// every fetch: the initial one (in startJWKS), the periodic ones and those
// kicked by unknown kids, so fetches never overlap and their rate is
// bounded by the refresh interval plus the limiter. Requests only read the
// current snapshot, and wait for a refresh only when the limiter granted it.
type jwksCache struct {
	cfg     *jwksConfig
	client  *http.Client
	tr      *http.Transport // the cache's own: Close drops its idle connections
	limiter *rate.Limiter
	kick    chan struct{} // cap 1: a refresh is wanted now
	snap    atomic.Pointer[jwksSnapshot]
	// last holds each URL's last successfully fetched keys; only the
	// fetcher goroutine touches it.
	last map[string][]jwkset.JWK

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// startJWKS fetches every URL once (bounded by the timeout per URL), then
// starts the refresh goroutine. A failed fetch does not fail the start: its
// keys are missing (tokens that need them get 401) until a retry succeeds.
func startJWKS(cfg *jwksConfig) *jwksCache {
	ctx, cancel := context.WithCancel(context.Background())
	c := &jwksCache{
		cfg:     cfg,
		limiter: rate.NewLimiter(rate.Every(cfg.minInterval), 1),
		kick:    make(chan struct{}, 1),
		last:    make(map[string][]jwkset.JWK, len(cfg.urls)),
		ctx:     ctx,
		cancel:  cancel,
	}
	c.tr = http.DefaultTransport.(*http.Transport).Clone()
	c.client = &http.Client{
		Timeout:   cfg.timeout,
		Transport: limitBody{c.tr},
		// A redirect to another host is an IdP's to make, but never to a
		// clear-text one.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			return checkJWKSURL(req.URL.String())
		},
	}
	c.snap.Store(&jwksSnapshot{next: make(chan struct{})})
	ok := c.refresh()
	c.wg.Add(1)
	go c.run(ok)
	return c
}

// close stops the refresh goroutine and waits for it, then closes the idle
// connections to the IdP; an in-flight fetch is cancelled. Cached keys stay
// readable for requests still in flight.
func (c *jwksCache) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		c.tr.CloseIdleConnections()
	})
}

// run refreshes every interval, after a failure every minInterval, and when
// kicked, until close.
func (c *jwksCache) run(lastOK bool) {
	defer c.wg.Done()
	t := time.NewTimer(c.delay(lastOK))
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		t.Reset(c.delay(c.refresh()))
	}
}

func (c *jwksCache) delay(ok bool) time.Duration {
	if ok {
		return c.cfg.interval
	}
	return c.cfg.minInterval
}

// refresh fetches every URL and publishes a new snapshot. A URL that fails
// keeps its previous keys. It reports whether every URL succeeded.
func (c *jwksCache) refresh() bool {
	started := time.Now()
	allOK := true
	for _, u := range c.cfg.urls {
		keys, err := c.fetch(u)
		if c.ctx.Err() != nil {
			return false // closing: a cancelled fetch is no IdP failure
		}
		if c.cfg.observer != nil {
			c.cfg.observer.JWKSRefreshed(err == nil)
		}
		if err != nil {
			allOK = false
			c.cfg.logger.Warn("jwks refresh failed; keeping the previous keys of this URL", "url", redactURL(u), "err", err)
			continue
		}
		c.last[u] = keys
	}
	// Merge in URL order; the first URL to publish a kid wins.
	mem := jwkset.NewMemoryStorage()
	n := 0
	seen := make(map[string]bool)
	for _, u := range c.cfg.urls {
		for _, k := range c.last[u] {
			kid := k.Marshal().KID
			if kid == "" || seen[kid] || !usableJWK(k) {
				continue
			}
			seen[kid] = true
			_ = mem.KeyWrite(c.ctx, k) // the memory storage never fails
			n++
		}
	}
	s := &jwksSnapshot{n: n, started: started, next: make(chan struct{})}
	if n > 0 {
		// keyfunc checks the key's own alg and use against the token; a
		// memory storage never refreshes, so lookups never block.
		kf, err := keyfunc.New(keyfunc.Options{
			Ctx: c.ctx, Storage: mem, UseWhitelist: []jwkset.USE{jwkset.UseSig, ""},
		})
		if err == nil {
			s.kf = kf
		} else {
			s.n = 0
		}
	}
	old := c.snap.Swap(s)
	close(old.next)
	if c.cfg.observer != nil {
		c.cfg.observer.JWKSKeysLoaded(s.n)
	}
	return allOK
}

// fetch downloads and parses one key set, with jwkset doing the HTTP
// request and the JWK parsing and validation. Keys of unsupported types
// are skipped; the type check against the token's algorithm happens at use.
func (c *jwksCache) fetch(u string) ([]jwkset.JWK, error) {
	st, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
		Client:      c.client,
		Ctx:         c.ctx,
		HTTPTimeout: c.cfg.timeout,
	})
	if err != nil {
		return nil, err
	}
	keys, err := st.KeyReadAll(c.ctx)
	if err != nil {
		return nil, err
	}
	if len(keys) > maxJWKSKeys {
		return nil, fmt.Errorf("%d keys, at most %d are accepted", len(keys), maxJWKSKeys)
	}
	return keys, nil
}

// usableJWK reports whether k can verify some JWKS token: a signing key
// ("use" sig or absent) of a family and size Herald accepts. Only these
// count as loaded, so herald_jwks_keys 0 means every JWKS token fails.
func usableJWK(k jwkset.JWK) bool {
	if u := k.Marshal().USE; u != jwkset.UseSig && u != "" {
		return false
	}
	key := k.Key()
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	for _, kind := range []keyKind{kindRSA, kindP256, kindP384, kindEd25519} {
		if checkVerifyKey(kind, key) == nil {
			return true
		}
	}
	return false
}

// errUnknownKID is returned when no cached key has the token's kid.
var errUnknownKID = errors.New("token kid matches no known key")

// key resolves the verification key of t (kid, already validated). An
// unknown kid may trigger one refresh, subject to the rate bound, and then
// waits for a refresh that started after the kick, at most one timeout per
// URL and never past ctx.
func (c *jwksCache) key(ctx context.Context, t *jwt.Token) (any, error) {
	s := c.snap.Load()
	key, err := s.lookup(ctx, t)
	if !errors.Is(err, jwkset.ErrKeyNotFound) {
		return key, err
	}
	allowed := c.limiter.Allow()
	if c.cfg.observer != nil {
		c.cfg.observer.JWKSUnknownKID(allowed)
	}
	if !allowed {
		return nil, errUnknownKID
	}
	kicked := time.Now()
	select {
	case c.kick <- struct{}{}:
	default: // a refresh is already due
	}
	wait := time.NewTimer(time.Duration(len(c.cfg.urls))*c.cfg.timeout + time.Second)
	defer wait.Stop()
	for s.started.Before(kicked) {
		select {
		case <-s.next:
			s = c.snap.Load()
		case <-ctx.Done():
			return nil, errUnknownKID
		case <-c.ctx.Done():
			return nil, errUnknownKID
		case <-wait.C:
			return nil, errUnknownKID
		}
	}
	key, err = s.lookup(ctx, t)
	if errors.Is(err, jwkset.ErrKeyNotFound) {
		return nil, errUnknownKID
	}
	return key, err
}

func (s *jwksSnapshot) lookup(ctx context.Context, t *jwt.Token) (any, error) {
	if s.kf == nil {
		return nil, jwkset.ErrKeyNotFound
	}
	return s.kf.KeyfuncCtx(ctx)(t)
}

// limitBody fails a response body longer than maxJWKSBytes.
type limitBody struct{ rt http.RoundTripper }

func (l limitBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = http.MaxBytesReader(nil, resp.Body, maxJWKSBytes)
	return resp, nil
}

// keyfunc returns the golang-jwt key function of JWKS tokens: the parser
// has already checked the token's alg against JWKSAlgorithms; the key must
// be of that algorithm's family (an RSA key never verifies ES256, and so
// on), and at least MinRSABits for RSA.
func (c *jwksCache) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		if t.Method == nil {
			return nil, errors.New("no algorithm")
		}
		_, kind, err := algorithm(t.Method.Alg())
		if err != nil {
			return nil, err
		}
		key, err := c.key(ctx, t)
		if err != nil {
			return nil, err
		}
		if err := checkVerifyKey(kind, key); err != nil {
			return nil, err
		}
		return key, nil
	}
}
