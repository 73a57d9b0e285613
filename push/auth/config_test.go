package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/auth"
)

func TestConfigValidate(t *testing.T) {
	k := newKeyset(t)
	short := k.write(t, "short.key", []byte(strings.Repeat("s", 31)+"\n"))
	pemSecret := k.write(t, "pem-as-secret.key", mustRead(t, k.rsaPub))
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallPub := k.writePEM(t, "rsa1024.pub.pem", "PUBLIC KEY", mustPKIX(t, &small.PublicKey))
	_, hash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	hmacKey := func(id string) auth.KeyConfig { return auth.KeyConfig{ID: id, Algorithm: "HS256", File: k.hmacFile} }
	base := func() auth.Config { return auth.Config{Audience: testAud} }

	tests := []struct {
		name string
		edit func(c *auth.Config)
		want []string // substrings of the error
	}{
		{"short HMAC secret", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{ID: "h", Algorithm: "HS256", File: short}}
		}, []string{`keys[0] (id "h")`, "HMAC secret is 31 bytes, need at least 32"}},
		{"PEM file as HMAC secret", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{Algorithm: "HS512", File: pemSecret}}
		}, []string{"keys[0]:", "holds a PEM block"}},
		{"unknown algorithm", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{ID: "x", Algorithm: "HS1024", File: k.hmacFile}}
		}, []string{`keys[0] (id "x")`, `unknown algorithm "HS1024"`}},
		{"alg none", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{Algorithm: "none", File: k.hmacFile}}
		}, []string{`unknown algorithm "none"`}},
		{"algorithm names are case-sensitive", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{Algorithm: "rs256", File: k.rsaPub}}
		}, []string{`unknown algorithm "rs256"`}},
		{"missing key file", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{ID: "gone", Algorithm: "RS256", File: k.dir + "/nope.pem"}}
		}, []string{`keys[0] (id "gone")`, "nope.pem"}},
		{"empty file path", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{Algorithm: "RS256"}}
		}, []string{"keys[0]: file is required"}},
		{"RSA key for ES256", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{ID: "e", Algorithm: "ES256", File: k.rsaPub}}
		}, []string{`keys[0] (id "e")`, "needs an ECDSA P-256 key, file holds an RSA public key"}},
		{"P-384 key for ES256", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{Algorithm: "ES256", File: k.p384Pub}}
		}, []string{"curve P-384"}},
		{"EC key for RS256", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{Algorithm: "RS256", File: k.p256Pub}}
		}, []string{"needs an RSA public key"}},
		{"Ed25519 key for PS256", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{Algorithm: "PS256", File: k.edPub}}
		}, []string{"needs an RSA public key, file holds an Ed25519 public key"}},
		{"RSA 1024", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{Algorithm: "RS256", File: smallPub}}
		}, []string{"RSA key is 1024 bits, need at least 2048"}},
		{"private key as verification key", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{ID: "p", Algorithm: "EdDSA", File: k.edPrivPKCS8}}
		}, []string{`keys[0] (id "p")`, "holds a private key"}},
		{"not PEM", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{Algorithm: "ES384", File: k.hmacFile}}
		}, []string{"no PEM block"}},
		{"several keys without id", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{hmacKey("a"), hmacKey("")}
		}, []string{"keys[1]: id is required when more than one key"}},
		{"duplicate kid", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{hmacKey("a"), hmacKey("a")}
		}, []string{`keys[1] (id "a"): duplicate id`}},
		{"audience missing", func(c *auth.Config) {
			c.Audience = ""
			c.Keys = []auth.KeyConfig{hmacKey("a")}
		}, []string{"audience: required"}},
		{"bound issuer not allowed", func(c *auth.Config) {
			c.Issuers = []string{issuerA}
			c.Keys = []auth.KeyConfig{{ID: "b", Issuer: issuerB, Algorithm: "HS256", File: k.hmacFile}}
		}, []string{`keys[0] (id "b"): issuer "https://b.example" is not in issuers`}},
		{"empty and duplicate issuers", func(c *auth.Config) {
			c.Issuers = []string{issuerA, "", issuerA}
		}, []string{"issuers[1]: empty issuer", `issuers[2] "https://a.example": duplicate`}},
		{"leeway too large", func(c *auth.Config) { c.Leeway = 2 * time.Minute }, []string{"leeway 2m0s"}},
		{"negative leeway", func(c *auth.Config) { c.Leeway = -time.Second }, []string{"leeway -1s"}},
		{"bad cookie name", func(c *auth.Config) { c.CookieName = "herald token" }, []string{"cookie_name"}},
		{"bad require_typ", func(c *auth.Config) { c.RequireTyp = "at jwt" }, []string{"require_typ"}},
		{"bad subscribe pattern", func(c *auth.Config) {
			c.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: hash, Subscribe: []string{"ok.*", "a/b"}}}
		}, []string{`api_keys[0] (id "svc"): subscribe: pattern 1: pattern "a/b"`}},
		{"bad publish pattern", func(c *auth.Config) {
			c.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: hash, Publish: []string{"[abc]"}}}
		}, []string{`api_keys[0] (id "svc"): publish: pattern 0`}},
		{"hash without prefix", func(c *auth.Config) {
			c.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: strings.TrimPrefix(hash, "sha256:")}}
		}, []string{`api_keys[0] (id "svc"): hash: must be "sha256:<64 hex digits>"`}},
		{"hash with other algorithm", func(c *auth.Config) {
			c.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: "md5:" + strings.Repeat("0", 32)}}
		}, []string{`api_keys[0] (id "svc"): hash: must be`}},
		{"hash too short", func(c *auth.Config) {
			c.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: hash[:len(hash)-2]}}
		}, []string{"want 64 hex digits", "got 62"}},
		{"hash not hex", func(c *auth.Config) {
			c.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: "sha256:" + strings.Repeat("zz", 32)}}
		}, []string{"hash: not hexadecimal"}},
		{"tenant outside the grammar", func(c *auth.Config) {
			c.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: hash, Tenant: "ta/x"}}
		}, []string{`api_keys[0] (id "svc"): tenant "ta/x": character 2 not allowed`}},
		{"tenant too long", func(c *auth.Config) {
			c.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: hash, Tenant: strings.Repeat("t", 65)}}
		}, []string{`api_keys[0] (id "svc"): tenant "ttt`, "length must be 1..64"}},
		{"id as tenant outside the grammar", func(c *auth.Config) {
			c.APIKeys = []auth.APIKeyConfig{{ID: "ta/x", Hash: hash}}
		}, []string{`api_keys[0] (id "ta/x"): tenant is empty and the id is not a tenant name`, "set tenant"}},
		{"api key without id", func(c *auth.Config) {
			c.APIKeys = []auth.APIKeyConfig{{Hash: hash}}
		}, []string{"api_keys[0]: id is required"}},
		{"duplicate api key id and hash", func(c *auth.Config) {
			c.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: hash}, {ID: "svc", Hash: hash}}
		}, []string{`api_keys[1] (id "svc"): duplicate id`, `api_keys[1] (id "svc"): same hash as api_keys[0] (id "svc")`}},
		{"every problem is reported", func(c *auth.Config) {
			c.Keys = []auth.KeyConfig{{ID: "a", Algorithm: "XX", File: k.hmacFile}, {ID: "b", Algorithm: "HS256", File: short}}
			c.APIKeys = []auth.APIKeyConfig{{ID: "c", Hash: "nope"}}
		}, []string{`keys[0] (id "a")`, `keys[1] (id "b")`, `api_keys[0] (id "c")`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.edit(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatal("Validate accepted")
			}
			if !errors.Is(err, auth.ErrInvalidConfig) {
				t.Errorf("err does not wrap ErrInvalidConfig: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q\nwant it to contain %q", err, w)
				}
			}
			if a, nerr := auth.New(cfg); a != nil || nerr == nil || nerr.Error() != err.Error() {
				t.Errorf("New disagrees with Validate: %v / %v", a, nerr)
			}
			// Secrets never reach error text.
			if strings.Contains(err.Error(), string(k.hmac)) || strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error text contains key material: %q", err)
			}
		})
	}
}

func TestConfigValid(t *testing.T) {
	k := newKeyset(t)
	cert := k.writePEM(t, "cert.pem", "CERTIFICATE", selfSigned(t, k))
	for name, cfg := range map[string]auth.Config{
		"zero config":   {},
		"every key":     k.config(),
		"certificate":   {Audience: testAud, Keys: []auth.KeyConfig{{Algorithm: "RS256", File: cert}}},
		"leeway limit":  {Leeway: auth.MaxLeeway},
		"api keys only": {APIKeys: []auth.APIKeyConfig{{ID: "a", Hash: auth.HashAPIKey("k"), Publish: []string{"*"}}}},
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func selfSigned(t *testing.T, k *keyset) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: bigOne(), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.rsa.PublicKey, k.rsa)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
