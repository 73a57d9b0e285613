package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Credential transport.
const (
	// HeaderAPIKey is the alternative to `Authorization: Bearer`.
	HeaderAPIKey = "X-API-Key"
	// MaxCredentialLen bounds a credential; longer ones are rejected unread.
	MaxCredentialLen = 8 << 10
)

// Authenticator verifies credentials. It is immutable after New and safe for
// concurrent use; reload by building a new one (see the package doc).
type Authenticator struct {
	keys       []*verifier
	keysByID   map[string]*verifier
	apiKeys    []apiKey
	issuers    []string
	audience   string
	leeway     time.Duration
	cookieName string
	requireTyp string

	// jwksCfg is the validated JWKS configuration; jwks its running cache
	// (New only) and jwksParser the parser of tokens it verifies.
	jwksCfg    *jwksConfig
	jwks       *jwksCache
	jwksParser *jwt.Parser
}

// New validates cfg (see Config.Validate), reads the key files and returns an
// Authenticator. Without JWKSURLs it has no side effects beyond reading the
// files. With them it fetches every key set once (at most JWKSTimeout per
// URL; a failure is logged and retried, never fatal) and starts the
// goroutine that refreshes them, which Close stops. A reload builds a new
// Authenticator, swaps it in, and closes the old one.
func New(cfg Config) (*Authenticator, error) {
	a, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	if a.jwksCfg != nil {
		a.jwks = startJWKS(a.jwksCfg)
	}
	return a, nil
}

// Close stops the JWKS refresh goroutine, if any, and waits for it. Keys
// already fetched keep verifying requests still in flight. Idempotent; a
// nil Authenticator is closed.
func (a *Authenticator) Close() error {
	if a != nil && a.jwks != nil {
		a.jwks.close()
	}
	return nil
}

// CookieName returns the cookie Authenticate reads when cookies are allowed.
func (a *Authenticator) CookieName() string { return a.cookieName }

// Authenticate finds the request's credential and verifies it.
//
// The credential is taken from `Authorization: Bearer <x>` or
// `X-API-Key: <x>`; only when allowCookie is true, and only when neither
// header is present, from the cookie CookieName. Pass allowCookie=false for
// every state-changing endpoint (publish): a cookie is sent by the browser
// on cross-site requests, a header is not. Several credential headers, or a
// non-Bearer Authorization scheme, are rejected rather than guessed at.
//
// A credential with three dot-separated parts is verified as a JWT, anything
// else as an API key. The error wraps ErrNoCredentials or
// ErrInvalidCredentials and never contains the credential.
func (a *Authenticator) Authenticate(r *http.Request, allowCookie bool) (*Principal, error) {
	cred, err := a.credential(r, allowCookie)
	if err != nil {
		return nil, err
	}
	if strings.Count(cred, ".") == 2 {
		return a.verifyJWT(r.Context(), cred)
	}
	return a.verifyAPIKey(cred)
}

func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidCredentials, reason)
}

// credential extracts the one credential of r.
func (a *Authenticator) credential(r *http.Request, allowCookie bool) (string, error) {
	authz := r.Header.Values("Authorization")
	apiKeys := r.Header.Values(HeaderAPIKey)
	var cred string
	switch {
	case len(authz)+len(apiKeys) > 1:
		return "", invalid("more than one credential header")
	case len(authz) == 1:
		scheme, rest, _ := strings.Cut(strings.TrimSpace(authz[0]), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", invalid("authorization scheme is not Bearer")
		}
		cred = strings.TrimSpace(rest)
	case len(apiKeys) == 1:
		cred = strings.TrimSpace(apiKeys[0])
	case allowCookie:
		c, err := r.Cookie(a.cookieName)
		if errors.Is(err, http.ErrNoCookie) || (err == nil && c.Value == "") {
			return "", ErrNoCredentials
		}
		if err != nil {
			return "", invalid("unreadable cookie")
		}
		cred = c.Value
	default:
		return "", ErrNoCredentials
	}
	switch {
	case cred == "":
		return "", invalid("empty credential")
	case len(cred) > MaxCredentialLen:
		return "", invalid("credential too long")
	case !isPrintable(cred):
		return "", invalid("credential contains characters outside printable ASCII")
	}
	return cred, nil
}
