package main

import (
	"bytes"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push/auth/jwkstest"
)

func jwksClaims(pub ...string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"sub": "svc", "aud": "herald", "iss": "https://idp.test",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(),
		"herald": map[string]any{"pub": pub, "sub": pub},
	}
}

func jwksRefreshers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "auth.(*jwksCache).run(")
}

// A node configured with an IdP's JWKS URL accepts the IdP's tokens on its
// public API, rejects unknown kids, exports the JWKS metrics on the admin
// listener, and on reload and Close stops the old key refresher.
func TestJWKSEndToEnd(t *testing.T) {
	key := jwkstest.NewKey(t, "ES256", "idp-1")
	idp := jwkstest.NewServer(t, key)
	m := MustRunMain(t, func(c *Config) {
		c.Dev = false
		c.Auth.Audience = "herald"
		c.Auth.Issuers = []string{"https://idp.test"}
		c.Auth.JWKSURLs = []string{idp.URL}
	})
	publish := func(tok string) int {
		req, _ := http.NewRequest(http.MethodPost, m.URL()+"/v1/topics/orders/events", bytes.NewReader([]byte(`{"data":"x"}`)))
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := publish(key.Sign(t, jwksClaims("orders"), nil)); code != http.StatusCreated {
		t.Fatalf("IdP token: %d, want 201", code)
	}
	if code := publish(key.Sign(t, jwksClaims("other"), nil)); code != http.StatusForbidden {
		t.Fatalf("IdP token without the grant: %d, want 403", code)
	}
	unknown := jwkstest.Key{KID: "nope", Alg: key.Alg, Private: key.Private}
	if code := publish(unknown.Sign(t, jwksClaims("orders"), nil)); code != http.StatusUnauthorized {
		t.Fatalf("unknown kid: %d, want 401", code)
	}
	fams := scrapeNode(t, m)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{observability.MetricJWKSKeys, nil, 1},
		{observability.MetricJWKSRefreshes, map[string]string{observability.LabelResult: observability.JWKSRefreshOK}, 2},
		{observability.MetricJWKSUnknownKID, map[string]string{observability.LabelOutcome: observability.JWKSKIDRefresh}, 1},
	} {
		if v, _ := seriesValue(fams, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}

	if n := jwksRefreshers(); n != 1 {
		t.Fatalf("%d JWKS refreshers before reload, want 1", n)
	}
	if err := m.Reload(m.Config); err != nil {
		t.Fatal(err)
	}
	if n := jwksRefreshers(); n != 1 {
		t.Fatalf("%d JWKS refreshers after reload, want 1 (the old one stopped)", n)
	}
	if code := publish(key.Sign(t, jwksClaims("orders"), nil)); code != http.StatusCreated {
		t.Fatalf("IdP token after reload: %d, want 201", code)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := jwksRefreshers(); n != 0 {
		t.Fatalf("%d JWKS refreshers after Close", n)
	}
}
