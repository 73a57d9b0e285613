// Package jwkstest serves a JSON Web Key Set over real HTTP for tests, the
// way an identity provider does, with keys generated at test time.
//
// A Server counts the fetches it answers, can swap its keys (rotation) and
// can be taken down (every request then gets 503) or made to hang. It listens on a free
// 127.0.0.1 port and is closed by tb.Cleanup. Keys sign tokens with the
// private half; the set publishes only the public half.
package jwkstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing key with its kid and algorithm.
type Key struct {
	KID string
	Alg string
	// Private signs; its public half is what the Server publishes.
	Private any
}

// NewKey generates a key for alg (see GenerateKey) or fails the test.
func NewKey(tb testing.TB, alg, kid string) Key {
	tb.Helper()
	k, err := GenerateKey(alg, kid)
	if err != nil {
		tb.Fatalf("jwkstest: %v", err)
	}
	return k
}

// GenerateKey generates a key for alg: RS256, RS384, RS512 and PS256 get an
// RSA 2048 key, ES256 a P-256 key, ES384 a P-384 key, EdDSA an Ed25519 key.
func GenerateKey(alg, kid string) (Key, error) {
	var (
		priv any
		err  error
	)
	switch alg {
	case "RS256", "RS384", "RS512", "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return Key{}, fmt.Errorf("no key type for algorithm %q", alg)
	}
	if err != nil {
		return Key{}, fmt.Errorf("generate %s key: %w", alg, err)
	}
	return Key{KID: kid, Alg: alg, Private: priv}, nil
}

// Sign signs claims with the key, setting the kid header (omitted when
// KID is ""). extra header members are added.
func (k Key) Sign(tb testing.TB, claims jwt.Claims, extra map[string]any) string {
	tb.Helper()
	m := jwt.GetSigningMethod(k.Alg)
	if m == nil {
		tb.Fatalf("jwkstest: no signing method %q", k.Alg)
	}
	t := jwt.NewWithClaims(m, claims)
	if k.KID != "" {
		t.Header["kid"] = k.KID
	}
	for h, v := range extra {
		t.Header[h] = v
	}
	s, err := t.SignedString(k.Private)
	if err != nil {
		tb.Fatalf("jwkstest: sign %s: %v", k.Alg, err)
	}
	return s
}

// Server is a JWKS endpoint.
type Server struct {
	URL string

	mu      sync.Mutex
	body    []byte
	down    bool
	hang    bool
	fetches atomic.Int64
}

// NewServer starts a JWKS server publishing keys (with their alg and
// use "sig"). The set is served at URL (any path).
func NewServer(tb testing.TB, keys ...Key) *Server {
	tb.Helper()
	s := &Server{}
	s.SetKeys(tb, keys...)
	ts := httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(ts.Close)
	s.URL = ts.URL + "/.well-known/jwks.json"
	return s
}

// SetKeys replaces the published keys.
func (s *Server) SetKeys(tb testing.TB, keys ...Key) {
	tb.Helper()
	set := jwkset.NewMemoryStorage()
	for _, k := range keys {
		j, err := jwkset.NewJWKFromKey(publicOf(k.Private), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.KID, ALG: jwkset.ALG(k.Alg), USE: jwkset.UseSig},
		})
		if err != nil {
			tb.Fatalf("jwkstest: JWK of %s: %v", k.KID, err)
		}
		_ = set.KeyWrite(context.Background(), j)
	}
	b, err := set.JSONPublic(context.Background())
	if err != nil {
		tb.Fatalf("jwkstest: marshal set: %v", err)
	}
	s.SetBody(b)
}

// SetBody replaces the served body verbatim (for malformed sets).
func (s *Server) SetBody(b []byte) {
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

// SetDown makes every request fail with 503 (down) or serve the set again.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// SetHang makes every request hang until the client gives up (hang), or
// be served again.
func (s *Server) SetHang(hang bool) {
	s.mu.Lock()
	s.hang = hang
	s.mu.Unlock()
}

// Fetches is the number of requests answered so far, failed ones included.
func (s *Server) Fetches() int { return int(s.fetches.Load()) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	body, down, hang := s.body, s.down, s.hang
	s.mu.Unlock()
	if hang {
		<-r.Context().Done()
		return
	}
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(body)
}

func publicOf(priv any) any {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	}
	return priv
}
