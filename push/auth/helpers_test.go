package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldpush/herald/push/auth"
)

const (
	testAud  = "herald"
	issuerA  = "https://a.example"
	issuerB  = "https://b.example"
	boundKID = "bound-es256"
)

// material is generated once per test binary: RSA generation is slow under
// -race. Every test writes it to its own t.TempDir().
type material struct {
	hmac     []byte
	rsa      *rsa.PrivateKey
	rsaOther *rsa.PrivateKey
	p256     *ecdsa.PrivateKey
	p384     *ecdsa.PrivateKey
	ed       ed25519.PrivateKey
}

var genMaterial = sync.OnceValues(func() (*material, error) {
	// A text secret, as `openssl rand -base64 48` makes: the file loader
	// strips one trailing newline, so random binary could end in one.
	m := &material{hmac: []byte(rand.Text() + rand.Text())}
	var err error
	if m.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if m.rsaOther, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if m.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if m.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return nil, err
	}
	if _, m.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	return m, nil
})

// keyset is the material written as files in a test's temp dir.
type keyset struct {
	*material
	dir string
	// Public (verification) files.
	hmacFile, rsaPub, rsaPubPKCS1, p256Pub, p384Pub, edPub string
	// Private (signing) files in every supported format.
	rsaPrivPKCS1, rsaPrivPKCS8, p256PrivSEC1, p384PrivPKCS8, edPrivPKCS8 string
}

func newKeyset(tb testing.TB) *keyset {
	tb.Helper()
	m, err := genMaterial()
	if err != nil {
		tb.Fatalf("generate keys: %v", err)
	}
	k := &keyset{material: m, dir: tb.TempDir()}
	// Trailing newline as left by `echo`; it is not part of the secret.
	k.hmacFile = k.write(tb, "hmac.key", append(append([]byte(nil), k.hmac...), '\n'))
	k.rsaPub = k.writePEM(tb, "rsa.pub.pem", "PUBLIC KEY", mustPKIX(tb, &k.rsa.PublicKey))
	k.rsaPubPKCS1 = k.writePEM(tb, "rsa.pkcs1.pub.pem", "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey))
	k.p256Pub = k.writePEM(tb, "p256.pub.pem", "PUBLIC KEY", mustPKIX(tb, &k.p256.PublicKey))
	k.p384Pub = k.writePEM(tb, "p384.pub.pem", "PUBLIC KEY", mustPKIX(tb, &k.p384.PublicKey))
	k.edPub = k.writePEM(tb, "ed.pub.pem", "PUBLIC KEY", mustPKIX(tb, k.ed.Public()))

	k.rsaPrivPKCS1 = k.writePEM(tb, "rsa.pkcs1.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa))
	k.rsaPrivPKCS8 = k.writePEM(tb, "rsa.pkcs8.pem", "PRIVATE KEY", mustPKCS8(tb, k.rsa))
	sec1, err := x509.MarshalECPrivateKey(k.p256)
	if err != nil {
		tb.Fatal(err)
	}
	// As written by `openssl ecparam -genkey`: EC PARAMETERS first.
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	k.p256PrivSEC1 = k.write(tb, "p256.sec1.pem", append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...))
	k.p384PrivPKCS8 = k.writePEM(tb, "p384.pkcs8.pem", "PRIVATE KEY", mustPKCS8(tb, k.p384))
	k.edPrivPKCS8 = k.writePEM(tb, "ed.pkcs8.pem", "PRIVATE KEY", mustPKCS8(tb, k.ed))
	return k
}

func (k *keyset) write(tb testing.TB, name string, b []byte) string {
	tb.Helper()
	p := filepath.Join(k.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func (k *keyset) writePEM(tb testing.TB, name, typ string, der []byte) string {
	tb.Helper()
	return k.write(tb, name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func mustPKIX(tb testing.TB, pub any) []byte {
	tb.Helper()
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustPKCS8(tb testing.TB, priv any) []byte {
	tb.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// pubFile is the verification file for alg.
func (k *keyset) pubFile(alg string) string {
	switch alg[:2] {
	case "HS":
		return k.hmacFile
	case "RS", "PS":
		return k.rsaPub
	case "ES":
		if alg == "ES384" {
			return k.p384Pub
		}
		return k.p256Pub
	}
	return k.edPub
}

// privFile is a signing file for alg, rotating through the PEM formats.
func (k *keyset) privFile(alg string) string {
	switch alg {
	case "HS256", "HS384", "HS512":
		return k.hmacFile
	case "RS256", "PS256":
		return k.rsaPrivPKCS1
	case "RS384", "RS512":
		return k.rsaPrivPKCS8
	case "ES256":
		return k.p256PrivSEC1
	case "ES384":
		return k.p384PrivPKCS8
	}
	return k.edPrivPKCS8
}

// signKey is the in-memory signing key for alg.
func (k *keyset) signKey(alg string) any {
	switch alg[:2] {
	case "HS":
		return k.hmac
	case "RS", "PS":
		return k.rsa
	case "ES":
		if alg == "ES384" {
			return k.p384
		}
		return k.p256
	}
	return k.ed
}

// config has one unbound key per algorithm (kid = algorithm name), one ES256
// key bound to issuerA, and the issuer allow-list {issuerA, issuerB}.
func (k *keyset) config() auth.Config {
	var cfg auth.Config
	for _, alg := range auth.Algorithms() {
		cfg.Keys = append(cfg.Keys, auth.KeyConfig{ID: alg, Algorithm: alg, File: k.pubFile(alg)})
	}
	cfg.Keys = append(cfg.Keys, auth.KeyConfig{ID: boundKID, Issuer: issuerA, Algorithm: "ES256", File: k.p256Pub})
	cfg.Audience = testAud
	cfg.Issuers = []string{issuerA, issuerB}
	return cfg
}

func mustNew(tb testing.TB, cfg auth.Config) *auth.Authenticator {
	tb.Helper()
	a, err := auth.New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return a
}

// claims returns valid claims relative to now; edit the map to break them.
func claims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":    issuerA,
		"sub":    "alice",
		"aud":    testAud,
		"exp":    now.Add(5 * time.Minute).Unix(),
		"iat":    now.Unix(),
		"nbf":    now.Unix(),
		"jti":    "t-1",
		"herald": map[string]any{"sub": []string{"chat.*", "news"}, "pub": []string{"chat.room1"}},
	}
}

// sign signs c with method alg and key; kid "" omits the header; extra
// header members are added (a nil value deletes one).
func sign(tb testing.TB, alg string, key any, kid string, c jwt.Claims, extra map[string]any) string {
	tb.Helper()
	m := jwt.GetSigningMethod(alg)
	if m == nil {
		tb.Fatalf("no signing method %q", alg)
	}
	t := jwt.NewWithClaims(m, c)
	if kid != "" {
		t.Header["kid"] = kid
	}
	for h, v := range extra {
		if v == nil {
			delete(t.Header, h)
		} else {
			t.Header[h] = v
		}
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatalf("sign %s: %v", alg, err)
	}
	return s
}

func bearer(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/stream", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// signRaw signs header and payload JSON byte for byte as given (jwt.MapClaims
// is re-encoded by encoding/json and so cannot carry a duplicate or
// case-variant member) with method alg and key.
func signRaw(tb testing.TB, alg string, key any, header, payload string) string {
	tb.Helper()
	enc := base64.RawURLEncoding
	unsigned := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := jwt.GetSigningMethod(alg).Sign(unsigned, key)
	if err != nil {
		tb.Fatalf("sign %s: %v", alg, err)
	}
	return unsigned + "." + enc.EncodeToString(sig)
}

// rawClaims is a valid payload, as claims() but as JSON text, with extra
// (members starting with a comma, or "") appended verbatim.
func rawClaims(extra string) string {
	now := time.Now().Unix()
	return fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,"exp":%d,"iat":%d,"nbf":%d,"jti":"t-1"%s}`,
		issuerA, testAud, now+300, now, now, extra)
}
