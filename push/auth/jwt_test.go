package auth_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldpush/herald/push/auth"
)

func TestAuthenticateEveryAlgorithm(t *testing.T) {
	k := newKeyset(t)
	a := mustNew(t, k.config())
	for _, alg := range auth.Algorithms() {
		t.Run(alg, func(t *testing.T) {
			c := claims()
			tok := sign(t, alg, k.signKey(alg), alg, c, nil)
			p, err := a.Authenticate(bearer(tok), false)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if p.Subject != "alice" || p.Tenant != "alice" || p.Kind != auth.KindJWT || p.KeyID != alg || p.TokenID != "t-1" {
				t.Errorf("principal = %+v", p)
			}
			if want := time.Unix(c["exp"].(int64), 0); !p.Expires.Equal(want) {
				t.Errorf("Expires = %v, want %v", p.Expires, want)
			}
			if !p.CanSubscribe("chat.lobby") || !p.CanSubscribe("news") || !p.CanPublish("chat.room1") {
				t.Errorf("granted topics refused")
			}
			if p.CanSubscribe("newsroom") || p.CanPublish("chat.room2") || p.CanPublish("news") {
				t.Errorf("ungranted topics allowed")
			}
		})
	}
}

// TestAuthenticateRejects covers the RFC 8725 / OWASP JWT attack classes.
func TestAuthenticateRejects(t *testing.T) {
	k := newKeyset(t)
	a := mustNew(t, k.config())
	rsaPubPEM := mustRead(t, k.rsaPub)
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := claims()
		edit(c)
		return c
	}
	now := time.Now()
	tests := []struct {
		name string
		tok  func(t *testing.T) string
		want error // additionally wrapped, besides ErrInvalidCredentials
	}{
		{"expired", func(t *testing.T) string {
			return sign(t, "RS256", k.rsa, "RS256", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-5 * time.Minute).Unix() }), nil)
		}, jwt.ErrTokenExpired},
		{"missing exp", func(t *testing.T) string {
			return sign(t, "ES256", k.p256, "ES256", with(func(c jwt.MapClaims) { delete(c, "exp") }), nil)
		}, jwt.ErrTokenRequiredClaimMissing},
		{"exp not a number", func(t *testing.T) string {
			return sign(t, "ES256", k.p256, "ES256", with(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }), nil)
		}, nil},
		{"nbf in future", func(t *testing.T) string {
			return sign(t, "EdDSA", k.ed, "EdDSA", with(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() }), nil)
		}, jwt.ErrTokenNotValidYet},
		{"iat in future", func(t *testing.T) string {
			return sign(t, "EdDSA", k.ed, "EdDSA", with(func(c jwt.MapClaims) { c["iat"] = now.Add(5 * time.Minute).Unix() }), nil)
		}, jwt.ErrTokenUsedBeforeIssued},
		{"wrong aud", func(t *testing.T) string {
			return sign(t, "HS256", k.hmac, "HS256", with(func(c jwt.MapClaims) { c["aud"] = "other-service" }), nil)
		}, jwt.ErrTokenInvalidAudience},
		{"aud list without us", func(t *testing.T) string {
			return sign(t, "HS256", k.hmac, "HS256", with(func(c jwt.MapClaims) { c["aud"] = []string{"a", "b"} }), nil)
		}, jwt.ErrTokenInvalidAudience},
		{"missing aud", func(t *testing.T) string {
			return sign(t, "HS256", k.hmac, "HS256", with(func(c jwt.MapClaims) { delete(c, "aud") }), nil)
		}, jwt.ErrTokenRequiredClaimMissing},
		{"wrong iss", func(t *testing.T) string {
			return sign(t, "PS256", k.rsa, "PS256", with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), nil)
		}, jwt.ErrTokenInvalidIssuer},
		{"missing iss with allow-list", func(t *testing.T) string {
			return sign(t, "PS256", k.rsa, "PS256", with(func(c jwt.MapClaims) { delete(c, "iss") }), nil)
		}, jwt.ErrTokenInvalidIssuer},
		{"issuer-bound key used for another allowed iss", func(t *testing.T) string {
			return sign(t, "ES256", k.p256, boundKID, with(func(c jwt.MapClaims) { c["iss"] = issuerB }), nil)
		}, jwt.ErrTokenInvalidIssuer},
		{"issuer-bound key without iss", func(t *testing.T) string {
			return sign(t, "ES256", k.p256, boundKID, with(func(c jwt.MapClaims) { delete(c, "iss") }), nil)
		}, jwt.ErrTokenRequiredClaimMissing},
		{"alg none with kid", func(t *testing.T) string {
			return sign(t, "none", jwt.UnsafeAllowNoneSignatureType, "HS256", claims(), nil)
		}, jwt.ErrTokenSignatureInvalid},
		{"alg none without kid", func(t *testing.T) string {
			return sign(t, "none", jwt.UnsafeAllowNoneSignatureType, "", claims(), nil)
		}, nil},
		{"alg NONE with HS256 signature", func(t *testing.T) string {
			return sign(t, "HS256", k.hmac, "HS256", claims(), map[string]any{"alg": "NONE"})
		}, nil},
		{"HS256 signed with RSA public PEM, RS256 kid", func(t *testing.T) string {
			return sign(t, "HS256", rsaPubPEM, "RS256", claims(), nil)
		}, jwt.ErrTokenSignatureInvalid},
		{"RS256 token presented under ES256 kid", func(t *testing.T) string {
			return sign(t, "RS256", k.rsa, "ES256", claims(), nil)
		}, jwt.ErrTokenSignatureInvalid},
		{"HS384 token under HS256 kid", func(t *testing.T) string {
			return sign(t, "HS384", k.hmac, "HS256", claims(), nil)
		}, jwt.ErrTokenSignatureInvalid},
		{"unknown kid", func(t *testing.T) string {
			return sign(t, "RS256", k.rsa, "RS257", claims(), nil)
		}, nil},
		{"kid differs in case", func(t *testing.T) string {
			return sign(t, "RS256", k.rsa, "rs256", claims(), nil)
		}, nil},
		{"kid path traversal", func(t *testing.T) string {
			return sign(t, "RS256", k.rsa, "../../RS256", claims(), nil)
		}, nil},
		{"kid not a string", func(t *testing.T) string {
			return sign(t, "RS256", k.rsa, "", claims(), map[string]any{"kid": 7})
		}, jwt.ErrTokenMalformed},
		{"no kid with several keys", func(t *testing.T) string {
			return sign(t, "RS256", k.rsa, "", claims(), nil)
		}, nil},
		{"signed by another RSA key", func(t *testing.T) string {
			return sign(t, "RS256", k.rsaOther, "RS256", claims(), nil)
		}, jwt.ErrTokenSignatureInvalid},
		{"attacker key advertised with jku and jwk", func(t *testing.T) string {
			return sign(t, "RS256", k.rsaOther, "RS256", claims(), map[string]any{
				"jku": "https://evil.example/jwks.json", "x5u": "https://evil.example/cert.pem",
				"jwk": map[string]any{"kty": "RSA"},
			})
		}, jwt.ErrTokenSignatureInvalid},
		{"tampered payload", func(t *testing.T) string {
			tok := sign(t, "ES384", k.p384, "ES384", claims(), nil)
			parts := strings.Split(tok, ".")
			c := claims()
			c["herald"] = map[string]any{"sub": []string{"*"}, "pub": []string{"*"}}
			forged := sign(t, "ES384", k.p384, "ES384", c, nil)
			parts[1] = strings.Split(forged, ".")[1]
			return strings.Join(parts, ".")
		}, jwt.ErrTokenSignatureInvalid},
		{"missing sub", func(t *testing.T) string {
			return sign(t, "HS512", k.hmac, "HS512", with(func(c jwt.MapClaims) { delete(c, "sub") }), nil)
		}, nil},
		{"sub with control character", func(t *testing.T) string {
			return sign(t, "HS512", k.hmac, "HS512", with(func(c jwt.MapClaims) { c["sub"] = "alice\nlevel=admin" }), nil)
		}, nil},
		{"crit header", func(t *testing.T) string {
			return sign(t, "HS512", k.hmac, "HS512", claims(), map[string]any{"crit": []string{"exp"}})
		}, nil},
		{"invalid grant pattern", func(t *testing.T) string {
			return sign(t, "RS512", k.rsa, "RS512", with(func(c jwt.MapClaims) {
				c["herald"] = map[string]any{"sub": []string{"chat/[a-z]"}}
			}), nil)
		}, nil},
		{"herald claim of wrong type", func(t *testing.T) string {
			return sign(t, "RS512", k.rsa, "RS512", with(func(c jwt.MapClaims) { c["herald"] = "everything" }), nil)
		}, jwt.ErrTokenMalformed},
		{"tenant of wrong type", func(t *testing.T) string {
			return sign(t, "RS512", k.rsa, "RS512", with(func(c jwt.MapClaims) { c["tenant"] = 42 }), nil)
		}, jwt.ErrTokenMalformed},
		{"tenant claim outside the tenant grammar", func(t *testing.T) string {
			return sign(t, "RS512", k.rsa, "RS512", with(func(c jwt.MapClaims) { c["tenant"] = "ta/x" }), nil)
		}, nil},
		{"tenant claim too long", func(t *testing.T) string {
			return sign(t, "RS512", k.rsa, "RS512", with(func(c jwt.MapClaims) { c["tenant"] = strings.Repeat("t", 65) }), nil)
		}, nil},
		{"garbage in three parts", func(*testing.T) string { return "a.b.c" }, jwt.ErrTokenMalformed},
		{"padded segments", func(t *testing.T) string {
			parts := strings.Split(sign(t, "HS256", k.hmac, "HS256", claims(), nil), ".")
			for i := range parts {
				parts[i] = base64.URLEncoding.EncodeToString(mustDecode(t, parts[i])) // padded form
			}
			return strings.Join(parts, ".")
		}, jwt.ErrTokenMalformed},
		{"non-canonical base64 in signature", func(t *testing.T) string {
			// 32-byte HMAC: the last of 43 characters carries 2 unused bits.
			// Setting one keeps the decoded bytes but not the encoding.
			tok := sign(t, "HS256", k.hmac, "HS256", claims(), nil)
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			last := strings.IndexByte(alphabet, tok[len(tok)-1])
			return tok[:len(tok)-1] + string(alphabet[last|1])
		}, jwt.ErrTokenMalformed},
		{"empty signature", func(t *testing.T) string {
			tok := sign(t, "HS256", k.hmac, "HS256", claims(), nil)
			return tok[:strings.LastIndexByte(tok, '.')+1]
		}, jwt.ErrTokenSignatureInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.tok(t)
			p, err := a.Authenticate(bearer(tok), false)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Fatalf("err = %v, want ErrInvalidCredentials", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want it to wrap %v", err, tt.want)
			}
			assertNoLeak(t, err, tok)
		})
	}
}

// TestAuthenticateAccepts covers tokens that look unusual but are valid.
func TestAuthenticateAccepts(t *testing.T) {
	k := newKeyset(t)
	a := mustNew(t, k.config())
	tests := []struct {
		name string
		tok  func(t *testing.T) string
	}{
		{"jku and x5u are ignored", func(t *testing.T) string {
			return sign(t, "RS256", k.rsa, "RS256", claims(), map[string]any{"jku": "https://evil.example/jwks", "x5u": "https://evil.example/x"})
		}},
		{"aud list containing us", func(t *testing.T) string {
			c := claims()
			c["aud"] = []string{"other", testAud}
			return sign(t, "HS256", k.hmac, "HS256", c, nil)
		}},
		{"issuer-bound key with its issuer", func(t *testing.T) string {
			return sign(t, "ES256", k.p256, boundKID, claims(), nil)
		}},
		{"unbound key with second allowed issuer", func(t *testing.T) string {
			c := claims()
			c["iss"] = issuerB
			return sign(t, "ES256", k.p256, "ES256", c, nil)
		}},
		{"no typ header (not required)", func(t *testing.T) string {
			return sign(t, "HS256", k.hmac, "HS256", claims(), map[string]any{"typ": nil})
		}},
		{"no herald claim", func(t *testing.T) string {
			c := claims()
			delete(c, "herald")
			return sign(t, "HS256", k.hmac, "HS256", c, nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.Authenticate(bearer(tt.tok(t)), false); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

// TestSingleKey covers key selection without kid and HS/RS confusion
// against a lone RS256 key.
func TestSingleKey(t *testing.T) {
	k := newKeyset(t)
	a := mustNew(t, auth.Config{Audience: testAud, Keys: []auth.KeyConfig{{Algorithm: "RS256", File: k.rsaPubPKCS1}}})
	if _, err := a.Authenticate(bearer(sign(t, "RS256", k.rsa, "", claims(), nil)), false); err != nil {
		t.Fatalf("token without kid for the only key: %v", err)
	}
	if _, err := a.Authenticate(bearer(sign(t, "RS256", k.rsa, "k1", claims(), nil)), false); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("kid for an unnamed key: err = %v, want ErrInvalidCredentials", err)
	}
	for _, pemFile := range []string{k.rsaPub, k.rsaPubPKCS1} {
		tok := sign(t, "HS256", mustRead(t, pemFile), "", claims(), nil)
		_, err := a.Authenticate(bearer(tok), false)
		if !errors.Is(err, jwt.ErrTokenSignatureInvalid) || !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("HS256 signed with RSA public key %s: err = %v", pemFile, err)
		}
	}

	named := mustNew(t, auth.Config{Audience: testAud, Keys: []auth.KeyConfig{{ID: "k1", Algorithm: "EdDSA", File: k.edPub}}})
	for _, kid := range []string{"", "k1"} {
		if _, err := named.Authenticate(bearer(sign(t, "EdDSA", k.ed, kid, claims(), nil)), false); err != nil {
			t.Errorf("kid %q: %v", kid, err)
		}
	}
}

func TestHMACSecretFile(t *testing.T) {
	k := newKeyset(t)
	secret := []byte(strings.Repeat("0123456789abcdef", 2))
	for name, content := range map[string]string{"raw": "", "lf": "\n", "crlf": "\r\n"} {
		file := k.write(t, "secret-"+name, append(append([]byte(nil), secret...), content...))
		a := mustNew(t, auth.Config{Audience: testAud, Keys: []auth.KeyConfig{{Algorithm: "HS384", File: file}}})
		if _, err := a.Authenticate(bearer(sign(t, "HS384", secret, "", claims(), nil)), false); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestLeeway(t *testing.T) {
	k := newKeyset(t)
	tests := []struct {
		name   string
		leeway time.Duration
		claim  string
		offset time.Duration
		want   error // nil = accepted
	}{
		{"exp 10s ago, default leeway", 0, "exp", -10 * time.Second, nil},
		{"exp 45s ago, default leeway", 0, "exp", -45 * time.Second, jwt.ErrTokenExpired},
		{"exp 45s ago, 60s leeway", 60 * time.Second, "exp", -45 * time.Second, nil},
		{"exp 5m ago, 60s leeway", 60 * time.Second, "exp", -5 * time.Minute, jwt.ErrTokenExpired},
		{"exp 10s ago, 1s leeway", time.Second, "exp", -10 * time.Second, jwt.ErrTokenExpired},
		{"nbf in 10s, default leeway", 0, "nbf", 10 * time.Second, nil},
		{"nbf in 45s, default leeway", 0, "nbf", 45 * time.Second, jwt.ErrTokenNotValidYet},
		{"nbf in 45s, 60s leeway", 60 * time.Second, "nbf", 45 * time.Second, nil},
		{"nbf in 5m, 60s leeway", 60 * time.Second, "nbf", 5 * time.Minute, jwt.ErrTokenNotValidYet},
		{"iat in 10s, default leeway", 0, "iat", 10 * time.Second, nil},
		{"iat in 45s, default leeway", 0, "iat", 45 * time.Second, jwt.ErrTokenUsedBeforeIssued},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := k.config()
			cfg.Leeway = tt.leeway
			a := mustNew(t, cfg)
			c := claims()
			c[tt.claim] = time.Now().Add(tt.offset).Unix()
			_, err := a.Authenticate(bearer(sign(t, "HS256", k.hmac, "HS256", c, nil)), false)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("rejected: %v", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRequireTyp(t *testing.T) {
	k := newKeyset(t)
	cfg := k.config()
	cfg.RequireTyp = "at+jwt"
	a := mustNew(t, cfg)
	for typ, ok := range map[string]bool{"at+jwt": true, "AT+JWT": true, "application/at+jwt": true, "JWT": false, "": false} {
		hdr := map[string]any{"typ": typ}
		if typ == "" {
			hdr["typ"] = nil
		}
		_, err := a.Authenticate(bearer(sign(t, "HS256", k.hmac, "HS256", claims(), hdr)), false)
		if ok != (err == nil) {
			t.Errorf("typ %q: err = %v, want accepted=%v", typ, err, ok)
		}
	}
}

func TestCredentialSources(t *testing.T) {
	k := newKeyset(t)
	cfg := k.config()
	key, hash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: hash, Publish: []string{"*"}}}
	a := mustNew(t, cfg)
	tok := sign(t, "HS256", k.hmac, "HS256", claims(), nil)

	type hdrs map[string][]string
	tests := []struct {
		name        string
		header      hdrs
		cookie      string
		allowCookie bool
		want        error // nil = accepted
		wantKind    auth.Kind
	}{
		{"bearer jwt", hdrs{"Authorization": {"Bearer " + tok}}, "", false, nil, auth.KindJWT},
		{"lower-case scheme and extra spaces", hdrs{"Authorization": {"  bearer   " + tok + " "}}, "", false, nil, auth.KindJWT},
		{"bearer api key", hdrs{"Authorization": {"Bearer " + key}}, "", false, nil, auth.KindAPIKey},
		{"x-api-key", hdrs{"X-Api-Key": {key}}, "", false, nil, auth.KindAPIKey},
		{"jwt in x-api-key", hdrs{"X-Api-Key": {tok}}, "", false, nil, auth.KindJWT},
		{"nothing", nil, "", false, auth.ErrNoCredentials, ""},
		{"nothing, cookies allowed", nil, "", true, auth.ErrNoCredentials, ""},
		{"cookie not allowed", nil, tok, false, auth.ErrNoCredentials, ""},
		{"cookie allowed", nil, tok, true, nil, auth.KindJWT},
		{"header wins over cookie", hdrs{"Authorization": {"Bearer hk_wrong"}}, tok, true, auth.ErrInvalidCredentials, ""},
		{"basic scheme", hdrs{"Authorization": {"Basic dXNlcjpwYXNz"}}, "", false, auth.ErrInvalidCredentials, ""},
		{"bearer without token", hdrs{"Authorization": {"Bearer"}}, "", false, auth.ErrInvalidCredentials, ""},
		{"bearer with blank token", hdrs{"Authorization": {"Bearer    "}}, "", false, auth.ErrInvalidCredentials, ""},
		{"empty authorization", hdrs{"Authorization": {""}}, "", false, auth.ErrInvalidCredentials, ""},
		{"two authorization headers", hdrs{"Authorization": {"Bearer " + tok, "Bearer " + tok}}, "", false, auth.ErrInvalidCredentials, ""},
		{"authorization and x-api-key", hdrs{"Authorization": {"Bearer " + tok}, "X-Api-Key": {key}}, "", false, auth.ErrInvalidCredentials, ""},
		{"token with space inside", hdrs{"Authorization": {"Bearer " + tok[:10] + " " + tok[10:]}}, "", false, auth.ErrInvalidCredentials, ""},
		{"control character", hdrs{"X-Api-Key": {key + "\x00"}}, "", false, auth.ErrInvalidCredentials, ""},
		{"too long", hdrs{"X-Api-Key": {strings.Repeat("k", auth.MaxCredentialLen+1)}}, "", false, auth.ErrInvalidCredentials, ""},
		{"unknown api key", hdrs{"X-Api-Key": {"hk_unknown"}}, "", false, auth.ErrInvalidCredentials, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/stream", nil)
			for h, vs := range tt.header {
				for _, v := range vs {
					r.Header.Add(h, v)
				}
			}
			if tt.cookie != "" {
				r.AddCookie(&http.Cookie{Name: auth.DefaultCookieName, Value: tt.cookie})
			}
			p, err := a.Authenticate(r, tt.allowCookie)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				assertNoLeak(t, err, tok)
				assertNoLeak(t, err, key)
				return
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if p.Kind != tt.wantKind {
				t.Errorf("Kind = %q, want %q", p.Kind, tt.wantKind)
			}
		})
	}
}

func TestCookieName(t *testing.T) {
	k := newKeyset(t)
	cfg := k.config()
	cfg.CookieName = "__Host-herald"
	a := mustNew(t, cfg)
	if a.CookieName() != "__Host-herald" {
		t.Fatalf("CookieName = %q", a.CookieName())
	}
	tok := sign(t, "HS256", k.hmac, "HS256", claims(), nil)
	for name, want := range map[string]error{"__Host-herald": nil, auth.DefaultCookieName: auth.ErrNoCredentials} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: name, Value: tok})
		if _, err := a.Authenticate(r, true); !errors.Is(err, want) {
			t.Errorf("cookie %q: err = %v, want %v", name, err, want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: "__Host-herald", Value: ""})
	if _, err := a.Authenticate(r, true); !errors.Is(err, auth.ErrNoCredentials) {
		t.Errorf("empty cookie: err = %v, want ErrNoCredentials", err)
	}
}

// TestReload shows the SIGHUP contract: New is pure, the old Authenticator
// keeps working until swapped.
func TestReload(t *testing.T) {
	k := newKeyset(t)
	cfg := auth.Config{Audience: testAud, Keys: []auth.KeyConfig{{ID: "k", Algorithm: "HS256", File: k.hmacFile}}}
	var cur atomicAuth
	cur.Store(mustNew(t, cfg))
	oldTok := sign(t, "HS256", k.hmac, "k", claims(), nil)

	newSecret := []byte(strings.Repeat("n", 40))
	k.write(t, "hmac.key", newSecret)
	if _, err := cur.Load().Authenticate(bearer(oldTok), false); err != nil {
		t.Fatalf("old authenticator changed after key file rewrite: %v", err)
	}
	cur.Store(mustNew(t, cfg))
	if _, err := cur.Load().Authenticate(bearer(oldTok), false); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Errorf("old token after reload: err = %v, want signature invalid", err)
	}
	if _, err := cur.Load().Authenticate(bearer(sign(t, "HS256", newSecret, "k", claims(), nil)), false); err != nil {
		t.Errorf("new token after reload: %v", err)
	}
}

func TestConcurrentAuthenticate(t *testing.T) {
	k := newKeyset(t)
	cfg := k.config()
	key, hash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: hash, Publish: []string{"chat.*"}}}
	a := mustNew(t, cfg)
	var toks []string
	for _, alg := range auth.Algorithms() {
		toks = append(toks, sign(t, alg, k.signKey(alg), alg, claims(), nil))
	}
	toks = append(toks, key)
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(toks))
	for g := range 8 {
		wg.Go(func() {
			for i := range toks {
				tok := toks[(i+g)%len(toks)]
				p, err := a.Authenticate(bearer(tok), false)
				if err != nil {
					errs <- err
					continue
				}
				_ = p.CanSubscribe("chat.x") && p.CanPublish("chat.y")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func assertNoLeak(t *testing.T, err error, cred string) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, cred) {
		t.Errorf("error text contains the credential: %q", msg)
	}
	for _, part := range strings.Split(cred, ".") {
		if len(part) >= 8 && strings.Contains(msg, part) {
			t.Errorf("error text contains a credential segment: %q", msg)
		}
	}
}

func mustDecode(t *testing.T, seg string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTenantFromClaimOrSubject: an explicit tenant claim inside the grammar
// is the tenant; without one the subject is, verbatim, even outside the
// tenant grammar (identity providers choose subjects, not Herald).
func TestTenantFromClaimOrSubject(t *testing.T) {
	k := newKeyset(t)
	a := mustNew(t, k.config())
	for _, tt := range []struct{ sub, tenant, want string }{
		{"alice", "acme.eu-1", "acme.eu-1"},
		{"auth0|ta/x", "", "auth0|ta/x"},
	} {
		c := claims()
		c["sub"] = tt.sub
		if tt.tenant != "" {
			c["tenant"] = tt.tenant
		}
		p, err := a.Authenticate(bearer(sign(t, "HS256", k.hmac, "HS256", c, nil)), false)
		if err != nil || p.Tenant != tt.want {
			t.Errorf("sub %q tenant %q: principal %+v, err %v; want tenant %q", tt.sub, tt.tenant, p, err, tt.want)
		}
	}
}
