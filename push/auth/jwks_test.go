package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/auth/jwkstest"
)

// jwksKeys are generated once per test binary (RSA under -race is slow).
var jwksKeys = sync.OnceValues(func() (map[string]jwkstest.Key, error) {
	m := map[string]jwkstest.Key{}
	for _, alg := range []string{"RS256", "PS256", "ES256", "EdDSA"} {
		k, err := jwkstest.GenerateKey(alg, "idp-"+strings.ToLower(alg))
		if err != nil {
			return nil, err
		}
		m[alg] = k
	}
	return m, nil
})

func idpKeys(tb testing.TB) map[string]jwkstest.Key {
	tb.Helper()
	m, err := jwksKeys()
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// observed records the JWKS observer calls.
type observed struct {
	mu sync.Mutex
	c  counts
}

type counts struct {
	ok, failed         int
	keys               int
	refreshed, limited int
}

func (o *observed) JWKSRefreshed(ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ok {
		o.c.ok++
	} else {
		o.c.failed++
	}
}

func (o *observed) JWKSKeysLoaded(n int) {
	o.mu.Lock()
	o.c.keys = n
	o.mu.Unlock()
}

func (o *observed) JWKSUnknownKID(refreshed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if refreshed {
		o.c.refreshed++
	} else {
		o.c.limited++
	}
}

func (o *observed) snapshot() counts {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.c
}

func jwksConfig(urls ...string) auth.Config {
	return auth.Config{
		Audience: testAud, JWKSURLs: urls,
		JWKSRefreshInterval: time.Hour, JWKSMinRefreshInterval: time.Hour, JWKSTimeout: 2 * time.Second,
	}
}

func newJWKSAuth(tb testing.TB, cfg auth.Config) *auth.Authenticator {
	tb.Helper()
	a := mustNew(tb, cfg)
	tb.Cleanup(func() { _ = a.Close() })
	return a
}

func authErr(a *auth.Authenticator, tok string) error {
	_, err := a.Authenticate(bearer(tok), false)
	return err
}

func eventuallyTrue(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Tokens signed with each supported key type published by the IdP verify;
// a key never verifies another algorithm, a forged signature or HMAC.
func TestJWKSVerifiesEveryKeyType(t *testing.T) {
	t.Parallel()
	keys := idpKeys(t)
	srv := jwkstest.NewServer(t, keys["RS256"], keys["PS256"], keys["ES256"], keys["EdDSA"])
	obs := &observed{}
	cfg := jwksConfig(srv.URL)
	cfg.JWKSObserver = obs
	a := newJWKSAuth(t, cfg)
	if got := obs.snapshot(); got.ok != 1 || got.keys != 4 {
		t.Fatalf("after New: %+v, want 1 ok refresh and 4 keys", got)
	}
	for alg, k := range keys {
		p, err := a.Authenticate(bearer(k.Sign(t, claims(), nil)), false)
		if err != nil {
			t.Errorf("%s: %v", alg, err)
			continue
		}
		if p.KeyID != k.KID || p.Subject != "alice" || p.Kind != auth.KindJWT {
			t.Errorf("%s: principal %+v", alg, p)
		}
	}

	rs := keys["RS256"]
	forged := jwkstest.NewKey(t, "ES256", keys["ES256"].KID)
	bad := map[string]string{
		// The RS256 key's JWK says alg RS256: PS256 with it is refused.
		"other alg with the key": jwkstest.Key{KID: rs.KID, Alg: "PS256", Private: rs.Private}.Sign(t, claims(), nil),
		"forged signature":       forged.Sign(t, claims(), nil),
		"HMAC":                   sign(t, "HS256", []byte(strings.Repeat("s", 32)), rs.KID, claims(), nil),
		"no kid":                 jwkstest.Key{Alg: "ES256", Private: keys["ES256"].Private}.Sign(t, claims(), nil),
		"wrong audience": keys["EdDSA"].Sign(t, func() jwt.MapClaims {
			c := claims()
			c["aud"] = "other"
			return c
		}(), nil),
	}
	for name, tok := range bad {
		if err := authErr(a, tok); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("%s: err %v, want ErrInvalidCredentials", name, err)
		}
	}
}

// Rotation: a token with the new kid is accepted after the refresh its
// unknown kid triggers; the removed kid is rejected after the next refresh.
func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	keys := idpKeys(t)
	oldKey, newKey := keys["RS256"], keys["ES256"]
	srv := jwkstest.NewServer(t, oldKey)
	obs := &observed{}
	cfg := jwksConfig(srv.URL)
	cfg.JWKSMinRefreshInterval = 20 * time.Millisecond // the periodic refresh stays at 1h
	cfg.JWKSObserver = obs
	a := newJWKSAuth(t, cfg)
	oldTok, newTok := oldKey.Sign(t, claims(), nil), newKey.Sign(t, claims(), nil)
	if err := authErr(a, oldTok); err != nil {
		t.Fatalf("old key before rotation: %v", err)
	}

	srv.SetKeys(t, oldKey, newKey)
	before := srv.Fetches()
	eventuallyTrue(t, "the new kid is accepted", func() bool { return authErr(a, newTok) == nil })
	if srv.Fetches() == before {
		t.Fatal("the new kid was accepted without a fetch")
	}
	// The observer hears of the refresh from the fetch's own goroutine,
	// which may finish after the new key became usable.
	eventuallyTrue(t, "the observer sees an unknown-kid refresh and 2 keys", func() bool {
		got := obs.snapshot()
		return got.refreshed > 0 && got.keys == 2
	})
	if err := authErr(a, oldTok); err != nil {
		t.Fatalf("old key during overlap: %v", err)
	}

	srv.SetKeys(t, newKey)
	// Any unknown kid triggers the refresh that drops the old key.
	probe := jwkstest.Key{KID: "probe", Alg: newKey.Alg, Private: newKey.Private}.Sign(t, claims(), nil)
	eventuallyTrue(t, "the removed kid is rejected", func() bool {
		_ = authErr(a, probe)
		return errors.Is(authErr(a, oldTok), auth.ErrInvalidCredentials)
	})
	if err := authErr(a, newTok); err != nil {
		t.Fatalf("new key after rotation: %v", err)
	}
}

// An attacker's random kids trigger at most one refresh per
// JWKSMinRefreshInterval; the rest are rejected at once without a fetch.
func TestJWKSUnknownKIDRefreshRateIsBounded(t *testing.T) {
	t.Parallel()
	keys := idpKeys(t)
	srv := jwkstest.NewServer(t, keys["ES256"])
	obs := &observed{}
	cfg := jwksConfig(srv.URL)
	cfg.JWKSObserver = obs
	a := newJWKSAuth(t, cfg)
	if n := srv.Fetches(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}
	const attempts = 200
	var wg sync.WaitGroup
	errs := make(chan error, attempts)
	for i := range attempts {
		wg.Go(func() {
			k := jwkstest.Key{KID: fmt.Sprintf("random-%d", i), Alg: "ES256", Private: keys["ES256"].Private}
			errs <- authErr(a, k.Sign(t, claims(), nil))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("random kid: err %v, want ErrInvalidCredentials", err)
		}
	}
	if n := srv.Fetches(); n != 2 {
		t.Errorf("%d fetches for %d random kids, want 2 (start + one refresh)", n, attempts)
	}
	if got := obs.snapshot(); got.refreshed != 1 || got.limited != attempts-1 {
		t.Errorf("observer %+v: want 1 refreshed and %d limited", got, attempts-1)
	}
	// The known key still works.
	if err := authErr(a, keys["ES256"].Sign(t, claims(), nil)); err != nil {
		t.Errorf("known key: %v", err)
	}
}

// With the IdP down no key is loaded and every JWKS token is rejected;
// the failed fetch is retried after JWKSMinRefreshInterval.
func TestJWKSServerDownFailsClosed(t *testing.T) {
	t.Parallel()
	keys := idpKeys(t)
	srv := jwkstest.NewServer(t, keys["EdDSA"])
	srv.SetDown(true)
	obs := &observed{}
	cfg := jwksConfig(srv.URL)
	cfg.JWKSMinRefreshInterval = 20 * time.Millisecond
	cfg.JWKSObserver = obs
	a := newJWKSAuth(t, cfg)
	tok := keys["EdDSA"].Sign(t, claims(), nil)
	if err := authErr(a, tok); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("IdP down: err %v, want ErrInvalidCredentials", err)
	}
	if got := obs.snapshot(); got.failed == 0 || got.ok != 0 || got.keys != 0 {
		t.Fatalf("observer %+v: want failures, no success, 0 keys", got)
	}
	srv.SetDown(false)
	eventuallyTrue(t, "the retried fetch loads the key", func() bool { return authErr(a, tok) == nil })
}

// Malformed, oversized and hanging responses fail the refresh (bounded by
// JWKSTimeout) and leave no key.
func TestJWKSBadResponsesFailClosed(t *testing.T) {
	t.Parallel()
	keys := idpKeys(t)
	tok := keys["ES256"].Sign(t, claims(), nil)
	cases := map[string]func(*jwkstest.Server){
		"not JSON":  func(s *jwkstest.Server) { s.SetBody([]byte("<html>")) },
		"oversized": func(s *jwkstest.Server) { s.SetBody([]byte(`{"keys":[],"x":"` + strings.Repeat("a", 2<<20) + `"}`)) },
		"hangs":     func(s *jwkstest.Server) { s.SetHang(true) },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := jwkstest.NewServer(t, keys["ES256"])
			breakIt(srv)
			obs := &observed{}
			cfg := jwksConfig(srv.URL)
			cfg.JWKSTimeout = 300 * time.Millisecond
			cfg.JWKSObserver = obs
			start := time.Now()
			a := newJWKSAuth(t, cfg)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("New took %s with a %s timeout", d, cfg.JWKSTimeout)
			}
			if got := obs.snapshot(); got.failed != 1 || got.keys != 0 {
				t.Errorf("observer %+v: want 1 failure and 0 keys", got)
			}
			if err := authErr(a, tok); !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Errorf("err %v, want ErrInvalidCredentials", err)
			}
		})
	}
}

// Static keys and a JWKS work side by side; the static key wins its kid.
func TestJWKSWithStaticKeys(t *testing.T) {
	t.Parallel()
	ks := newKeyset(t)
	keys := idpKeys(t)
	srv := jwkstest.NewServer(t, keys["PS256"])
	cfg := jwksConfig(srv.URL)
	cfg.Keys = []auth.KeyConfig{{ID: "static", Algorithm: "ES256", File: ks.p256Pub}}
	a := newJWKSAuth(t, cfg)
	if err := authErr(a, sign(t, "ES256", ks.p256, "static", claims(), nil)); err != nil {
		t.Errorf("static key: %v", err)
	}
	if err := authErr(a, keys["PS256"].Sign(t, claims(), nil)); err != nil {
		t.Errorf("JWKS key: %v", err)
	}
}

// Close stops the refresh goroutine.
func TestJWKSCloseStopsRefresher(t *testing.T) {
	keys := idpKeys(t)
	srv := jwkstest.NewServer(t, keys["ES256"])
	cfg := jwksConfig(srv.URL)
	cfg.JWKSRefreshInterval, cfg.JWKSMinRefreshInterval = 10*time.Millisecond, 10*time.Millisecond
	a := mustNew(t, cfg)
	eventuallyTrue(t, "periodic refreshes", func() bool { return srv.Fetches() >= 3 })
	if n := refresherGoroutines(); n == 0 {
		t.Fatal("no refresher goroutine found: the check is broken")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	_ = a.Close() // idempotent
	if n := refresherGoroutines(); n != 0 {
		t.Fatalf("%d refresher goroutines after Close", n)
	}
	// Nor are the idle keep-alive connections to the IdP left behind.
	eventuallyTrue(t, "no connection goroutines of the cache's transport", func() bool {
		return goroutinesIn("net/http.(*persistConn)") == 0
	})
}

func refresherGoroutines() int { return goroutinesIn("auth.(*jwksCache).run(") }

func goroutinesIn(frame string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, frame) {
			n++
		}
	}
	return n
}

func TestJWKSConfigValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(*auth.Config)
		want string
	}{
		{"clear-text remote", func(c *auth.Config) { c.JWKSURLs = []string{"http://idp.example/jwks"} }, "loopback"},
		{"password hidden", func(c *auth.Config) { c.JWKSURLs = []string{"ftp://u:hunter2@idp.example/jwks"} }, "u:xxxxx@"},
		{"other scheme", func(c *auth.Config) { c.JWKSURLs = []string{"ftp://idp.example/jwks"} }, "scheme"},
		{"relative", func(c *auth.Config) { c.JWKSURLs = []string{"/jwks"} }, "absolute"},
		{"duplicate", func(c *auth.Config) { c.JWKSURLs = []string{"https://a/j", "https://a/j"} }, "duplicate"},
		{"no audience", func(c *auth.Config) { c.Audience = "" }, "audience"},
		{"hmac", func(c *auth.Config) { c.JWKSAlgorithms = []string{"HS256"} }, "HMAC"},
		{"unknown alg", func(c *auth.Config) { c.JWKSAlgorithms = []string{"none"} }, "unknown algorithm"},
		{"interval below min", func(c *auth.Config) { c.JWKSRefreshInterval, c.JWKSMinRefreshInterval = time.Second, time.Minute }, "jwks_refresh_interval"},
		{"negative min", func(c *auth.Config) { c.JWKSMinRefreshInterval = -time.Second }, "jwks_min_refresh_interval"},
		{"timeout too long", func(c *auth.Config) { c.JWKSTimeout = time.Hour }, "jwks_timeout"},
	}
	for _, tc := range cases {
		cfg := jwksConfig("https://idp.example/.well-known/jwks.json")
		tc.edit(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, auth.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want ErrInvalidConfig naming %q", tc.name, err, tc.want)
		}
	}
	ok := jwksConfig("https://idp.example/jwks", "http://127.0.0.1:8080/jwks", "http://localhost/jwks")
	ok.JWKSRefreshInterval, ok.JWKSMinRefreshInterval, ok.JWKSTimeout = 0, 0, 0
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// BenchmarkAuthenticateES256 compares a token verified with a static PEM
// key and one verified with the same kind of key from a JWKS (cached).
func BenchmarkAuthenticateES256(b *testing.B) {
	keys := idpKeys(b)
	ks := newKeyset(b)
	srv := jwkstest.NewServer(b, keys["ES256"])
	cfg := jwksConfig(srv.URL)
	cfg.Keys = []auth.KeyConfig{{ID: "static", Algorithm: "ES256", File: ks.p256Pub}}
	a := newJWKSAuth(b, cfg)
	for _, bc := range []struct{ name, tok string }{
		{"key=static", sign(b, "ES256", ks.p256, "static", claims(), nil)},
		{"key=jwks", keys["ES256"].Sign(b, claims(), nil)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := bearer(bc.tok)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(r, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Keys Herald would never use — RSA under 2048 bits, encryption keys — are
// not loaded, so herald_jwks_keys says 0 and their tokens are rejected.
func TestJWKSIgnoresUnusableKeys(t *testing.T) {
	t.Parallel()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec := idpKeys(t)["ES256"]
	set := jwkset.NewMemoryStorage()
	for _, k := range []struct {
		pub any
		md  jwkset.JWKMetadataOptions
	}{
		{&small.PublicKey, jwkset.JWKMetadataOptions{KID: "small", ALG: jwkset.AlgRS256, USE: jwkset.UseSig}},
		{&ec.Private.(*ecdsa.PrivateKey).PublicKey, jwkset.JWKMetadataOptions{KID: "enc", USE: jwkset.UseEnc}},
	} {
		j, err := jwkset.NewJWKFromKey(k.pub, jwkset.JWKOptions{Metadata: k.md})
		if err != nil {
			t.Fatal(err)
		}
		_ = set.KeyWrite(context.Background(), j)
	}
	body, err := set.JSONPublic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv := jwkstest.NewServer(t)
	srv.SetBody(body)
	obs := &observed{}
	cfg := jwksConfig(srv.URL)
	cfg.JWKSObserver = obs
	a := newJWKSAuth(t, cfg)
	if got := obs.snapshot(); got.ok != 1 || got.keys != 0 {
		t.Fatalf("observer %+v: want 1 ok refresh and 0 usable keys", got)
	}
	for name, tok := range map[string]string{
		"RSA-1024": jwkstest.Key{KID: "small", Alg: "RS256", Private: small}.Sign(t, claims(), nil),
		"enc key":  jwkstest.Key{KID: "enc", Alg: "ES256", Private: ec.Private}.Sign(t, claims(), nil),
	} {
		if err := authErr(a, tok); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("%s: err %v, want ErrInvalidCredentials", name, err)
		}
	}
}
