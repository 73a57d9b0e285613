package auth_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldpush/herald/push/auth"
)

func TestMintRoundTrip(t *testing.T) {
	k := newKeyset(t)
	cfg := k.config()
	cfg.RequireTyp = "at+jwt"
	a := mustNew(t, cfg)
	for _, alg := range auth.Algorithms() {
		t.Run(alg, func(t *testing.T) {
			before := time.Now().Truncate(time.Second)
			tok, err := auth.Mint(auth.MintOptions{
				Algorithm: alg, KeyFile: k.privFile(alg), KeyID: alg, Type: "at+jwt",
				Issuer: issuerA, Audience: testAud, Subject: "svc-" + alg, Tenant: "acme",
				TTL: 10 * time.Minute, Subscribe: []string{"chat.*"}, Publish: []string{"chat.room1", "alerts"},
			})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			p, err := a.Authenticate(bearer(tok), false)
			if err != nil {
				t.Fatalf("Authenticate minted token: %v", err)
			}
			if p.Subject != "svc-"+alg || p.Tenant != "acme" || p.Kind != auth.KindJWT || p.KeyID != alg || p.TokenID == "" {
				t.Errorf("principal = %+v", p)
			}
			if d := p.Expires.Sub(before); d < 10*time.Minute || d > 10*time.Minute+2*time.Second {
				t.Errorf("Expires %v is not now+10m", p.Expires)
			}
			if !p.CanSubscribe("chat.x") || !p.CanPublish("alerts") || p.CanPublish("chat.x") || p.CanSubscribe("alerts") {
				t.Errorf("grants wrong: sub=%q pub=%q", p.SubscribePatterns(), p.PublishPatterns())
			}
		})
	}
}

func TestMintDefaults(t *testing.T) {
	k := newKeyset(t)
	a := mustNew(t, auth.Config{Audience: testAud, Keys: []auth.KeyConfig{{Algorithm: "EdDSA", File: k.edPub}}})
	tok, err := auth.Mint(auth.MintOptions{Algorithm: "EdDSA", KeyFile: k.edPrivPKCS8, Audience: testAud, Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, _ := strings.Cut(tok, ".")
	if h := string(mustDecode(t, hdr)); strings.Contains(h, "kid") || !strings.Contains(h, `"typ":"JWT"`) {
		t.Errorf("header = %s", h)
	}
	p, err := a.Authenticate(bearer(tok), false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Tenant != "bob" || p.CanSubscribe("anything") {
		t.Errorf("principal = %+v", p)
	}
	if d := time.Until(p.Expires); d < auth.DefaultMintTTL-5*time.Second || d > auth.DefaultMintTTL {
		t.Errorf("default TTL gave Expires in %v", d)
	}
	// Two mints differ in jti.
	tok2, err := auth.Mint(auth.MintOptions{Algorithm: "EdDSA", KeyFile: k.edPrivPKCS8, Audience: testAud, Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := a.Authenticate(bearer(tok2), false)
	if err != nil || p2.TokenID == p.TokenID {
		t.Errorf("jti not unique: %q %q (%v)", p.TokenID, p2.TokenID, err)
	}
}

func TestMintErrors(t *testing.T) {
	k := newKeyset(t)
	short := k.write(t, "short.key", []byte("too-short"))
	ok := auth.MintOptions{Algorithm: "ES256", KeyFile: k.p256PrivSEC1, Audience: testAud, Subject: "s"}
	tests := []struct {
		name string
		edit func(o *auth.MintOptions)
		want string
	}{
		{"unknown algorithm", func(o *auth.MintOptions) { o.Algorithm = "none" }, `unknown algorithm "none"`},
		{"no audience", func(o *auth.MintOptions) { o.Audience = "" }, "audience: required"},
		{"no subject", func(o *auth.MintOptions) { o.Subject = "" }, "subject: required"},
		{"tenant outside the grammar", func(o *auth.MintOptions) { o.Tenant = "ta/x" }, `tenant "ta/x": character 2 not allowed`},
		{"negative ttl", func(o *auth.MintOptions) { o.TTL = -time.Minute }, "ttl -1m0s"},
		{"bad pattern", func(o *auth.MintOptions) { o.Publish = []string{"a", "b c"} }, "publish: pattern 1"},
		{"short HMAC secret", func(o *auth.MintOptions) { o.Algorithm, o.KeyFile = "HS256", short }, "HMAC secret is 9 bytes"},
		{"RSA key for ES256", func(o *auth.MintOptions) { o.KeyFile = k.rsaPrivPKCS1 }, "needs an ECDSA P-256 key, file holds an RSA private key"},
		{"P-256 key for ES384", func(o *auth.MintOptions) { o.Algorithm = "ES384" }, "curve P-256"},
		{"public key as signing key", func(o *auth.MintOptions) { o.KeyFile = k.p256Pub }, `unsupported PEM block "PUBLIC KEY"`},
		{"Ed25519 key for RS256", func(o *auth.MintOptions) { o.Algorithm, o.KeyFile = "RS256", k.edPrivPKCS8 }, "needs an RSA private key"},
		{"missing key file", func(o *auth.MintOptions) { o.KeyFile = "" }, "key file: file is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			_, err := auth.Mint(o)
			if !errors.Is(err, auth.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalidConfig containing %q", err, tt.want)
			}
		})
	}
	if _, err := auth.Mint(ok); err != nil {
		t.Fatalf("baseline options rejected: %v", err)
	}
}

// TestMintedTokenIsStandard checks the minted claims with golang-jwt alone,
// as a third-party verifier would.
func TestMintedTokenIsStandard(t *testing.T) {
	k := newKeyset(t)
	tok, err := auth.Mint(auth.MintOptions{Algorithm: "HS256", KeyFile: k.hmacFile, Issuer: issuerA, Audience: testAud, Subject: "s", Tenant: "t", Subscribe: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.MapClaims
	if _, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return k.hmac, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience(testAud), jwt.WithIssuer(issuerA), jwt.WithExpirationRequired()); err != nil {
		t.Fatalf("golang-jwt rejects minted token (secret must exclude the file's trailing newline): %v", err)
	}
	for _, claim := range []string{"iat", "nbf", "exp", "jti", "tenant", "herald"} {
		if _, ok := c[claim]; !ok {
			t.Errorf("claim %q missing", claim)
		}
	}
}
