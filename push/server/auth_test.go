package server_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/server"
)

// authNode runs a node with real authentication: an HS256 JWT key and one
// publisher API key allowed to publish to "orders.*".
func authNode(t *testing.T) (n *testNode, secretFile, apiKey string) {
	t.Helper()
	secretFile, a, apiKey := newAuth(t, "billing", []string{"orders.*"})
	n = startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) { c.Dev = false; c.Auth = a })
	return n, secretFile, apiKey
}

// newAuth builds an authenticator with an HS256 JWT key (kid "k1", audience
// "herald", the secret in secretFile) and one API key of tenant allowed to
// publish to the patterns publish.
func newAuth(t *testing.T, tenant string, publish []string) (secretFile string, a *auth.Authenticator, apiKey string) {
	t.Helper()
	secretFile = filepath.Join(t.TempDir(), "jwt.secret")
	if err := os.WriteFile(secretFile, []byte(strings.Repeat("s3cr3t-", 8)), 0o600); err != nil {
		t.Fatal(err)
	}
	apiKey, hash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err = auth.New(auth.Config{
		Audience: "herald",
		Keys:     []auth.KeyConfig{{ID: "k1", Algorithm: "HS256", File: secretFile}},
		APIKeys:  []auth.APIKeyConfig{{ID: tenant + "-key", Hash: hash, Tenant: tenant, Publish: publish}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return secretFile, a, apiKey
}

func mint(t *testing.T, secretFile string, sub, pub []string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Mint(auth.MintOptions{Algorithm: "HS256", KeyFile: secretFile, KeyID: "k1", Audience: "herald",
		Subject: "alice", TTL: ttl, Subscribe: sub, Publish: pub})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// expired signs a token that expired two hours ago (beyond any leeway).
func expired(t *testing.T, secretFile string) string {
	t.Helper()
	return signRaw(t, secretFile, jwt.MapClaims{
		"sub": "alice", "aud": "herald", "iat": time.Now().Add(-3 * time.Hour).Unix(),
		"exp": time.Now().Add(-2 * time.Hour).Unix(), "herald": map[string]any{"sub": []string{"*"}},
	})
}

// mintAs mints a token for sub allowed to publish everywhere, with a tenant
// claim unless tenant is "".
func mintAs(t *testing.T, secretFile, sub, tenant string) string {
	t.Helper()
	tok, err := auth.Mint(auth.MintOptions{Algorithm: "HS256", KeyFile: secretFile, KeyID: "k1", Audience: "herald",
		Subject: sub, Tenant: tenant, TTL: time.Hour, Publish: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// mintUnchecked signs, without Mint's checks, a token for sub with the
// tenant claim tenant, allowed to publish everywhere.
func mintUnchecked(t *testing.T, secretFile, sub, tenant string) string {
	t.Helper()
	return signRaw(t, secretFile, jwt.MapClaims{
		"sub": sub, "tenant": tenant, "aud": "herald", "iat": time.Now().Unix(),
		"exp": time.Now().Add(time.Hour).Unix(), "herald": map[string]any{"pub": []string{"*"}},
	})
}

// signRaw signs claims with HS256 under kid "k1".
func signRaw(t *testing.T, secretFile string, claims jwt.MapClaims) string {
	t.Helper()
	key, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAuthenticatedPaths(t *testing.T) {
	n, secret, apiKey := authNode(t)
	reader := mint(t, secret, []string{"orders.*"}, nil, time.Hour)
	const js = "application/json"
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	cookie := func(tok string) map[string]string { return map[string]string{"Cookie": "herald_token=" + tok} }
	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string
	}{
		{"publish without credentials", "POST", "/v1/topics/orders.eu/events", `{"data":"x"}`, nil, 401, server.CodeUnauthorized},
		{"publish with api key", "POST", "/v1/topics/orders.eu/events", `{"data":"x"}`, bearer(apiKey), 201, ""},
		{"publish with X-API-Key", "POST", "/v1/topics/orders.eu/events", `{"data":"y"}`, map[string]string{"X-API-Key": apiKey}, 201, ""},
		{"publish outside grant", "POST", "/v1/topics/chat/events", `{"data":"x"}`, bearer(apiKey), 403, server.CodeForbidden},
		{"publish with wrong api key", "POST", "/v1/topics/orders.eu/events", `{"data":"x"}`, bearer("hk_wrong"), 401, server.CodeUnauthorized},
		{"publish with cookie refused", "POST", "/v1/topics/orders.eu/events", `{"data":"x"}`, cookie(mint(t, secret, nil, []string{"*"}, time.Hour)), 401, server.CodeUnauthorized},
		{"publish with read-only jwt", "POST", "/v1/topics/orders.eu/events", `{"data":"x"}`, bearer(reader), 403, server.CodeForbidden},
		{"history with jwt cookie", "GET", "/v1/topics/orders.eu/events", "", cookie(reader), 200, ""},
		{"history outside grant", "GET", "/v1/topics/chat/events", "", bearer(reader), 403, server.CodeForbidden},
		{"stream outside grant", "GET", "/v1/stream?topic=orders.eu&topic=chat", "", bearer(reader), 403, server.CodeForbidden},
		{"stream with garbage token", "GET", "/v1/stream?topic=orders.eu", "", bearer("a.b.c"), 401, server.CodeUnauthorized},
		{"stream with expired token", "GET", "/v1/stream?topic=orders.eu", "", bearer(expired(t, secret)), 401, server.CodeUnauthorized},
		{"batch partly forbidden", "POST", "/v1/events", `{"events":[{"topic":"orders.a","data":"1"},{"topic":"chat","data":"2"}]}`, bearer(apiKey), 207, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctype := ""
			if tt.body != "" {
				ctype = js
			}
			status, _, body := do(t, tt.method, n.URL+tt.path, ctype, tt.body, tt.hdr)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.code != "" && !strings.Contains(body, `"code":"`+tt.code+`"`) {
				t.Fatalf("body %s, want code %s", body, tt.code)
			}
			if strings.Contains(body, apiKey) || strings.Contains(body, reader) {
				t.Fatal("credential echoed in response")
			}
		})
	}
	// An EventSource authenticates with the cookie and streams.
	req, _ := http.NewRequest("GET", n.URL+"/v1/stream?topic=orders.eu", nil)
	req.AddCookie(&http.Cookie{Name: "herald_token", Value: reader})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("cookie stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestCORS(t *testing.T) {
	n := startNode(t, newMemStore(t, push.Retention{}), func(c *server.Config) {
		c.CORS = server.CORSConfig{AllowedOrigins: []string{"https://app.example.com"}, AllowCredentials: true}
	})
	hdr := map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "last-event-id"}
	status, h, _ := do(t, "OPTIONS", n.URL+"/v1/stream?topic=a", "", "", hdr)
	if status/100 != 2 || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		h.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "last-event-id") {
		t.Fatalf("preflight: %d %v", status, h)
	}
	hdr["Origin"] = "https://evil.example.com"
	_, h, _ = do(t, "OPTIONS", n.URL+"/v1/stream?topic=a", "", "", hdr)
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin allowed: %v", h)
	}
	if err := (server.CORSConfig{AllowedOrigins: []string{"*"}, AllowCredentials: true}).Validate(); err == nil {
		t.Fatal("wildcard origin with credentials accepted")
	}
}

// A stream ends when its token expires: a final retry:, then close, so the
// client reconnects with a fresh credential.
func TestStreamEndsAtTokenExpiry(t *testing.T) {
	n, secret, _ := authNode(t)
	tok := mint(t, secret, []string{"*"}, nil, 2*time.Second)
	req, _ := http.NewRequest(http.MethodGet, n.URL+"/v1/stream?topic=exp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body) // returns when the server closes the stream
	took := time.Since(start)
	if took < time.Second || took > 10*time.Second {
		t.Fatalf("stream with a 2s token ended after %v", took)
	}
	if !strings.Contains(string(body), "herald.hello") || !strings.Contains(string(body[strings.Index(string(body), "herald.hello"):]), "\nretry: ") {
		t.Fatalf("stream body %q: want hello, then a final retry:", body)
	}
}

// signJSON signs payload, JSON text kept byte for byte (duplicate and
// case-variant members included), with the node's HS256 secret under kid k1.
func signJSON(t *testing.T, secretFile, payload string) string {
	t.Helper()
	key, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	unsigned := enc.EncodeToString([]byte(`{"alg":"HS256","kid":"k1","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(unsigned, key)
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + enc.EncodeToString(sig)
}

// TestAmbiguousClaimsRefused: a validly signed token whose claims JSON can
// be read two ways is refused with a JSON 401 on the real HTTP paths. Before
// strict claim decoding, `"Herald":{"admin":true}` was read as the herald
// claim and opened the admin API, and the last of two `pub` grants won.
func TestAmbiguousClaimsRefused(t *testing.T) {
	n, secret, _ := authNode(t)
	admin, err := auth.Mint(auth.MintOptions{Algorithm: "HS256", KeyFile: secret, KeyID: "k1", Audience: "herald",
		Subject: "ops", Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	if status, _, body := do(t, "GET", n.URL+"/v1/cluster/members", "", "", map[string]string{"Authorization": "Bearer " + admin}); status != http.StatusOK {
		t.Fatalf("admin token: members status %d, want 200: %s", status, body)
	}
	claims := func(extra string) string {
		return fmt.Sprintf(`{"sub":"alice","aud":"herald","exp":%d%s}`, time.Now().Add(time.Hour).Unix(), extra)
	}
	tests := []struct {
		name, method, path, body, payload string
	}{
		{"Herald admin on the admin API", "GET", "/v1/cluster/members", "", claims(`,"Herald":{"admin":true}`)},
		{"herald.Admin on the admin API", "GET", "/v1/cluster/members", "", claims(`,"herald":{"Admin":true}`)},
		{"duplicate pub on publish", "POST", "/v1/topics/orders.eu/events", `{"data":"x"}`, claims(`,"herald":{"pub":["chat"],"pub":["orders.*"]}`)},
		{"PUB after pub on publish", "POST", "/v1/topics/orders.eu/events", `{"data":"x"}`, claims(`,"herald":{"pub":["chat"],"PUB":["orders.*"]}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctype := ""
			if tt.body != "" {
				ctype = "application/json"
			}
			hdr := map[string]string{"Authorization": "Bearer " + signJSON(t, secret, tt.payload)}
			status, h, body := do(t, tt.method, n.URL+tt.path, ctype, tt.body, hdr)
			if status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", status, body)
			}
			if !strings.HasPrefix(h.Get("Content-Type"), "application/json") || !strings.Contains(body, `"code":"`+server.CodeUnauthorized+`"`) {
				t.Fatalf("want a JSON error body with code %s, got %s %s", server.CodeUnauthorized, h.Get("Content-Type"), body)
			}
		})
	}
}
