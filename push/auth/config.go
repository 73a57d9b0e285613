package auth

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults and bounds of Config.
const (
	// DefaultLeeway is the clock-skew allowance used when Config.Leeway is 0.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest Config.Leeway accepted (RFC 8725: keep it small).
	MaxLeeway = 60 * time.Second
	// DefaultCookieName is the cookie read when Config.CookieName is "".
	DefaultCookieName = "herald_token"
	// maxIDLen bounds key and API key IDs.
	maxIDLen = 256

	// DefaultJWKSRefreshInterval is the periodic JWKS refresh used when
	// Config.JWKSRefreshInterval is 0.
	DefaultJWKSRefreshInterval = 15 * time.Minute
	// DefaultJWKSMinRefreshInterval is Config.JWKSMinRefreshInterval's
	// default: the least time between two refreshes triggered by unknown
	// kids, and the retry delay after a failed refresh.
	DefaultJWKSMinRefreshInterval = 30 * time.Second
	// DefaultJWKSTimeout bounds one JWKS fetch when Config.JWKSTimeout is 0.
	DefaultJWKSTimeout = 5 * time.Second
	// MaxJWKSTimeout is the largest Config.JWKSTimeout accepted.
	MaxJWKSTimeout = time.Minute
	// maxJWKSURLs bounds Config.JWKSURLs.
	maxJWKSURLs = 16
)

// Config configures an Authenticator. Every field may be given in YAML with
// its snake_case koanf name. The zero Config is valid and rejects every
// credential.
type Config struct {
	// Keys verify JWTs. With more than one key every key needs an ID and
	// tokens must carry a matching `kid`.
	Keys []KeyConfig `koanf:"keys"`
	// APIKeys are the accepted API keys, by hash. Two entries with different
	// IDs and hashes rotate a key without downtime.
	APIKeys []APIKeyConfig `koanf:"api_keys"`
	// Audience is the value tokens must carry in `aud` (any one of their
	// audiences must equal it). Required when Keys is not empty.
	Audience string `koanf:"audience"`
	// Issuers is the allow-list of `iss` values. Empty means: a key bound to
	// an issuer accepts only that issuer, and an unbound key accepts any
	// `iss` (or none). Non-empty means every token's `iss` must be listed,
	// and every bound key's Issuer must be listed too.
	Issuers []string `koanf:"issuers"`
	// Leeway is the clock-skew allowance for exp, nbf and iat. Zero means
	// DefaultLeeway (30s); at most MaxLeeway (60s).
	Leeway time.Duration `koanf:"leeway"`
	// CookieName is the cookie holding a JWT for browser EventSource
	// subscribers, read only where the caller allows cookies. Zero means
	// DefaultCookieName ("herald_token").
	CookieName string `koanf:"cookie_name"`
	// RequireTyp, when set, is the JOSE `typ` header every token must carry
	// (RFC 8725 §3.11), e.g. "at+jwt"; compared case-insensitively with an
	// optional "application/" prefix. Empty means `typ` is not checked.
	RequireTyp string `koanf:"require_typ"`

	// JWKSURLs are JSON Web Key Set endpoints of identity providers (for
	// example https://idp.example/.well-known/jwks.json). Their keys verify
	// tokens whose `kid` is not one of Keys; such tokens must carry a kid.
	// Each URL must be https, or http to a loopback host. Empty means no
	// JWKS. At most 16. Audience is required when set; set Issuers to the
	// identity provider's issuer so that its keys accept only its tokens.
	JWKSURLs []string `koanf:"jwks_url"`
	// JWKSAlgorithms are the algorithms a JWKS key may verify; the token's
	// `alg` must be listed and match the key's type (and the key's own `alg`
	// when it has one). Zero means every asymmetric algorithm of Algorithms
	// (RS256, RS384, RS512, PS256, ES256, ES384, EdDSA); HMAC algorithms
	// are refused.
	JWKSAlgorithms []string `koanf:"jwks_algorithms"`
	// JWKSRefreshInterval is how often the key sets are fetched again. Zero
	// means DefaultJWKSRefreshInterval (15m). At least
	// JWKSMinRefreshInterval.
	JWKSRefreshInterval time.Duration `koanf:"jwks_refresh_interval"`
	// JWKSMinRefreshInterval bounds the fetch rate: a token with an unknown
	// kid triggers a refresh at most once per this interval (other unknown
	// kids are rejected at once, without a fetch), and a failed refresh is
	// retried after it. Zero means DefaultJWKSMinRefreshInterval (30s).
	JWKSMinRefreshInterval time.Duration `koanf:"jwks_min_refresh_interval"`
	// JWKSTimeout bounds one fetch of one URL (connect, headers and body).
	// Zero means DefaultJWKSTimeout (5s); at most MaxJWKSTimeout (1m).
	JWKSTimeout time.Duration `koanf:"jwks_timeout"`

	// JWKSObserver, when set, receives the JWKS cache's events (metrics).
	// Not configuration: the composition root sets it.
	JWKSObserver JWKSObserver `koanf:"-"`
	// Logger receives JWKS refresh failures. Nil discards them.
	Logger *slog.Logger `koanf:"-"`
}

// KeyConfig is one JWT verification key.
type KeyConfig struct {
	// ID is the key's `kid`, matched exactly (an opaque string). Optional
	// when only one key is configured; a token without `kid` then uses it.
	ID string `koanf:"id"`
	// Issuer, when set, binds the key to one issuer: tokens it verifies must
	// carry exactly this `iss`. Keys are never pooled across issuers.
	Issuer string `koanf:"issuer"`
	// Algorithm is pinned; the token's `alg` must equal it. One of HS256,
	// HS384, HS512, RS256, RS384, RS512, PS256, ES256, ES384, EdDSA.
	Algorithm string `koanf:"algorithm"`
	// File holds the key: a PEM public key (PUBLIC KEY, RSA PUBLIC KEY or
	// CERTIFICATE) for asymmetric algorithms, or the raw secret for HMAC, at
	// least MinHMACSecretLen (32) bytes; one trailing newline is ignored.
	File string `koanf:"file"`
}

// APIKeyConfig is one accepted API key.
type APIKeyConfig struct {
	// ID names the key in logs and becomes the Principal's Subject.
	ID string `koanf:"id"`
	// Hash is "sha256:<64 hex digits>" of the full key (see GenerateAPIKey,
	// HashAPIKey). The key itself is never configured.
	Hash string `koanf:"hash"`
	// Tenant scopes the key: its rate-limit bucket and its idempotency
	// keys. It must match the tenant grammar (see ValidateTenant). Zero
	// means the ID, which must then match it too.
	Tenant string `koanf:"tenant"`
	// Publish are the topic patterns the key may publish to (see
	// ValidatePattern). Empty means none.
	Publish []string `koanf:"publish"`
	// Subscribe are the topic patterns the key may subscribe to and read
	// the history of. Empty means none.
	Subscribe []string `koanf:"subscribe"`
	// Admin grants the cluster admin API (members, sessions).
	Admin bool `koanf:"admin"`
}

// Validate checks the configuration, including reading and type-checking the
// key files, exactly as New does. Every problem is reported, each naming its
// entry (for example `keys[1] (id "k2")`).
func (c Config) Validate() error {
	_, err := compile(c)
	return err
}

// compile validates cfg and builds the immutable Authenticator.
func compile(cfg Config) (*Authenticator, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	a := &Authenticator{
		audience:   cfg.Audience,
		leeway:     cfg.Leeway,
		cookieName: cfg.CookieName,
	}
	switch {
	case a.leeway == 0:
		a.leeway = DefaultLeeway
	case a.leeway < 0 || a.leeway > MaxLeeway:
		fail("leeway %s: must be between 0 (meaning %s) and %s", cfg.Leeway, DefaultLeeway, MaxLeeway)
	}
	if a.cookieName == "" {
		a.cookieName = DefaultCookieName
	} else if !isHTTPToken(a.cookieName) {
		fail("cookie_name %q: not a valid cookie name", clip(cfg.CookieName))
	}
	if cfg.RequireTyp != "" {
		if !isPrintable(cfg.RequireTyp) || len(cfg.RequireTyp) > 64 {
			fail("require_typ %q: must be 1..64 printable ASCII characters", clip(cfg.RequireTyp))
		}
		a.requireTyp = normalizeTyp(cfg.RequireTyp)
	}
	for i, iss := range cfg.Issuers {
		switch {
		case iss == "":
			fail("issuers[%d]: empty issuer", i)
		case slices.Contains(cfg.Issuers[:i], iss):
			fail("issuers[%d] %q: duplicate", i, clip(iss))
		}
	}
	a.issuers = slices.Clone(cfg.Issuers)
	if (len(cfg.Keys) > 0 || len(cfg.JWKSURLs) > 0) && cfg.Audience == "" {
		fail("audience: required when keys or jwks_url are configured (tokens must name this service in aud)")
	}
	if len(cfg.JWKSURLs) > 0 {
		a.jwksCfg = compileJWKS(cfg, fail)
	}

	// JWT keys.
	a.keysByID = make(map[string]*verifier, len(cfg.Keys))
	for i, k := range cfg.Keys {
		name := entryName("keys", i, k.ID)
		if len(cfg.Keys) > 1 && k.ID == "" {
			fail("%s: id is required when more than one key is configured", name)
		}
		if len(k.ID) > maxIDLen {
			fail("%s: id longer than %d bytes", name, maxIDLen)
		}
		if _, dup := a.keysByID[k.ID]; dup {
			fail("%s: duplicate id", name)
		}
		if k.Issuer != "" && len(cfg.Issuers) > 0 && !slices.Contains(cfg.Issuers, k.Issuer) {
			fail("%s: issuer %q is not in issuers", name, clip(k.Issuer))
		}
		method, kind, err := algorithm(k.Algorithm)
		if err != nil {
			fail("%s: %w", name, err)
			continue
		}
		var key any
		if kind == kindHMAC {
			key, err = loadHMACSecret(k.File)
		} else {
			key, err = loadPublicKey(k.File)
		}
		if err != nil {
			fail("%s: %w", name, err)
			continue
		}
		if err := checkVerifyKey(kind, key); err != nil {
			fail("%s: %s: %w", name, k.File, err)
			continue
		}
		v := &verifier{id: k.ID, issuer: k.Issuer, alg: method.Alg(), key: key}
		a.keys = append(a.keys, v)
		a.keysByID[k.ID] = v
	}

	// API keys.
	for i, k := range cfg.APIKeys {
		name := entryName("api_keys", i, k.ID)
		if k.ID == "" {
			fail("%s: id is required", name)
		} else if len(k.ID) > maxIDLen || !isPrintable(k.ID) {
			fail("%s: id must be 1..%d printable ASCII characters", name, maxIDLen)
		}
		for j := range i {
			if cfg.APIKeys[j].ID == k.ID && k.ID != "" {
				fail("%s: duplicate id (also %s)", name, entryName("api_keys", j, ""))
			}
		}
		sum, err := parseHash(k.Hash)
		if err != nil {
			fail("%s: hash: %w", name, err)
		}
		for j, o := range a.apiKeys {
			if err == nil && o.hash == sum {
				fail("%s: same hash as %s", name, entryName("api_keys", j, o.principal.KeyID))
			}
		}
		sub, serr := compileGrants(k.Subscribe)
		if serr != nil {
			fail("%s: subscribe: %w", name, serr)
		}
		pub, perr := compileGrants(k.Publish)
		if perr != nil {
			fail("%s: publish: %w", name, perr)
		}
		tenant := k.Tenant
		if tenant == "" {
			tenant = k.ID
			if k.ID != "" && ValidateTenant(tenant) != nil {
				fail("%s: tenant is empty and the id is not a tenant name ([A-Za-z0-9._-]{1,%d}): set tenant", name, MaxTenantLen)
			}
		} else if err := ValidateTenant(tenant); err != nil {
			fail("%s: %w", name, err)
		}
		a.apiKeys = append(a.apiKeys, apiKey{hash: sum, principal: Principal{
			Subject: k.ID, Tenant: tenant, Kind: KindAPIKey, KeyID: k.ID, Admin: k.Admin,
			subscribe: sub, publish: pub,
		}})
	}

	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	// Parsers last: they need the final leeway and audience.
	for _, v := range a.keys {
		v.parser = a.newParser([]string{v.alg}, v.issuer)
	}
	if a.jwksCfg != nil {
		a.jwksParser = a.newParser(a.jwksCfg.algs, "")
	}
	return a, nil
}

// newParser returns a parser pinning the algorithms, requiring exp and aud,
// enforcing iat and nbf within the leeway, and the issuer when not "".
func (a *Authenticator) newParser(algs []string, issuer string) *jwt.Parser {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithExpirationRequired(),
		jwt.WithAudience(a.audience),
		jwt.WithLeeway(a.leeway),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	}
	if issuer != "" {
		opts = append(opts, jwt.WithIssuer(issuer))
	}
	return jwt.NewParser(opts...)
}

// parseHash parses "sha256:<64 hex digits>".
func parseHash(h string) ([32]byte, error) {
	var sum [32]byte
	hexPart, ok := strings.CutPrefix(h, "sha256:")
	if !ok {
		return sum, errors.New(`must be "sha256:<64 hex digits>"`)
	}
	if len(hexPart) != 2*len(sum) {
		return sum, fmt.Errorf("want 64 hex digits after \"sha256:\", got %d characters", len(hexPart))
	}
	if _, err := hex.Decode(sum[:], []byte(hexPart)); err != nil {
		return sum, errors.New("not hexadecimal")
	}
	return sum, nil
}

func entryName(list string, i int, id string) string {
	if id == "" {
		return fmt.Sprintf("%s[%d]", list, i)
	}
	return fmt.Sprintf("%s[%d] (id %q)", list, i, clip(id))
}

// normalizeTyp canonicalizes a JOSE typ value (RFC 7515 §4.1.9: media type,
// "application/" may be omitted, compared case-insensitively).
func normalizeTyp(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}

// isPrintable reports whether s is non-empty printable ASCII without spaces.
func isPrintable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// isHTTPToken reports whether s is an RFC 9110 token (valid cookie name).
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
