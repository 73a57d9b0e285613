package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/golang-jwt/jwt/v5"
)

const (
	// maxHeaderLen bounds the encoded JOSE header decoded before key selection.
	maxHeaderLen = 2 << 10
	// maxClaimLen bounds `sub`, `tenant` and `jti`: they end up in logs and
	// metric labels.
	maxClaimLen = 256
)

// verifier is one configured JWT key with its pinned algorithm and a parser
// whose options pin that algorithm, the audience, the bound issuer and the
// leeway. golang-jwt Parsers are read-only during ParseWithClaims, so one
// parser serves all goroutines.
type verifier struct {
	id     string
	issuer string
	alg    string
	key    any // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey; checked by checkVerifyKey
	parser *jwt.Parser
	// jwks marks a token's kid resolved through the JWKS cache: alg and key
	// come from the key set, checked by jwksCache.keyfunc.
	jwks bool
}

// keyfunc returns the verifier's key after checking once more that the
// token's algorithm is the pinned one and its kid is this key's. The parser
// has already refused any other algorithm (WithValidMethods); this is the
// defence in depth RFC 8725 §3.1 asks for.
func (v *verifier) keyfunc(t *jwt.Token) (any, error) {
	if t.Method == nil || t.Method.Alg() != v.alg {
		return nil, errors.New("algorithm does not match the pinned algorithm")
	}
	if kid, _ := t.Header["kid"].(string); kid != "" && kid != v.id {
		return nil, errors.New("kid does not match the selected key")
	}
	return v.key, nil
}

// joseHeader is the part of the JOSE header read before verification, only
// to select the key. Decoded with decodeStrict: a header with duplicate
// members, or a case variant of one of these names or of `alg`, is refused,
// so Herald and golang-jwt (which reads `alg` and `kid` from its own decoding
// of the header) cannot disagree on what the header says.
type joseHeader struct {
	Alg  string         `json:"alg"`
	Kid  string         `json:"kid"`
	Typ  string         `json:"typ"`
	Crit jsontext.Value `json:"crit"`
}

// headerNames are joseHeader's JSON names, for decodeStrict.
func headerNames() []string { return []string{"alg", "kid", "typ", "crit"} }

// claims are the claims Herald reads from a token. golang-jwt decodes the
// payload with encoding/json, which hands it whole to UnmarshalJSON; that
// decodes it with decodeStrict instead (exact names, no duplicates, case
// variants refused), here and in the nested heraldClaim. Mint encodes it
// with encoding/json.
type claims struct {
	jwt.RegisteredClaims
	// Tenant scopes the principal (see ValidateTenant); absent means the
	// subject.
	Tenant string `json:"tenant,omitempty"`
	// Herald carries the topic grants.
	Herald *heraldClaim `json:"herald,omitempty"`
}

// claimFields is claims without its JSON methods.
type claimFields claims

// claimNames are the JSON names of claims' fields, jwt.RegisteredClaims'
// included (a test checks them against the struct tags).
func claimNames() []string {
	return []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "tenant", "herald"}
}

// UnmarshalJSON decodes a token payload strictly (see decodeStrict).
func (c *claims) UnmarshalJSON(b []byte) error {
	return decodeStrict(b, (*claimFields)(c), claimNames()...)
}

// heraldClaim is the "herald" claim: topic patterns the bearer may
// subscribe and publish to (see ValidatePattern).
type heraldClaim struct {
	Sub []string `json:"sub,omitempty"`
	Pub []string `json:"pub,omitempty"`
	// Admin grants the cluster admin API (sessions, members).
	Admin bool `json:"admin,omitempty"`
}

// heraldFields is heraldClaim without its JSON methods.
type heraldFields heraldClaim

// heraldNames are the JSON names of heraldClaim's fields.
func heraldNames() []string { return []string{"sub", "pub", "admin"} }

// UnmarshalJSON decodes the "herald" claim strictly (see decodeStrict).
func (h *heraldClaim) UnmarshalJSON(b []byte) error {
	return decodeStrict(b, (*heraldFields)(h), heraldNames()...)
}

// jwtFailure turns a golang-jwt error into ours. golang-jwt's sentinels
// are tried from most to least specific; the first one err wraps becomes the
// reason. Only these fixed texts reach our errors: golang-jwt's detail
// messages can quote decoded token bytes.
func jwtFailure(err error) error {
	sentinels := [...]error{
		jwt.ErrTokenExpired,
		jwt.ErrTokenNotValidYet,
		jwt.ErrTokenUsedBeforeIssued,
		jwt.ErrTokenInvalidAudience,
		jwt.ErrTokenInvalidIssuer,
		jwt.ErrTokenRequiredClaimMissing,
		jwt.ErrInvalidType,
		jwt.ErrTokenSignatureInvalid,
		jwt.ErrTokenMalformed,
		jwt.ErrTokenUnverifiable,
		jwt.ErrTokenInvalidClaims,
	}
	if errors.Is(err, errAmbiguousJSON) {
		return fmt.Errorf("%w: %w: token claims: %w", ErrInvalidCredentials, jwt.ErrTokenMalformed, errAmbiguousJSON)
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return fmt.Errorf("%w: %w", ErrInvalidCredentials, s)
		}
	}
	return invalid("token rejected")
}

// verifyJWT selects the key by kid, verifies the token with the key's
// pinned parser and builds the principal.
func (a *Authenticator) verifyJWT(ctx context.Context, tok string) (*Principal, error) {
	if len(a.keys) == 0 && a.jwks == nil {
		return nil, invalid("token presented but no JWT keys are configured")
	}
	hdr, err := decodeHeader(tok)
	if err != nil {
		return nil, err
	}
	v, err := a.selectKey(hdr.Kid)
	if err != nil {
		return nil, err
	}
	if hdr.Crit != nil {
		// RFC 7515 §4.1.11: we understand no extension, so must reject.
		return nil, invalid("token has a crit header")
	}
	if a.requireTyp != "" && normalizeTyp(hdr.Typ) != a.requireTyp {
		return nil, invalid("token typ header is not the required type")
	}

	keyfn := v.keyfunc
	if v.jwks {
		keyfn = a.jwks.keyfunc(ctx)
	}
	var c claims
	if _, err := v.parser.ParseWithClaims(tok, &c, keyfn); err != nil {
		return nil, jwtFailure(err)
	}
	if v.issuer == "" && len(a.issuers) > 0 && !slices.Contains(a.issuers, c.Issuer) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCredentials, jwt.ErrTokenInvalidIssuer)
	}
	if !validClaimString(c.Subject) {
		return nil, invalid("token sub claim missing, too long or not printable")
	}
	if c.ID != "" && !validClaimString(c.ID) {
		return nil, invalid("token jti claim too long or not printable")
	}
	// An explicit tenant must match the tenant grammar; without one the
	// tenant is the subject verbatim (an identity provider's `sub` may hold
	// any printable text). Either way idempotency scopes stay unambiguous:
	// the server length-prefixes the tenant.
	tenant := c.Tenant
	if tenant == "" {
		tenant = c.Subject
	} else if ValidateTenant(tenant) != nil {
		return nil, invalid("token tenant claim outside the tenant grammar [A-Za-z0-9._-]{1,64}")
	}
	var h heraldClaim
	if c.Herald != nil {
		h = *c.Herald
	}
	sub, err := compileGrants(h.Sub)
	if err != nil {
		return nil, invalid("token herald.sub holds an invalid topic pattern")
	}
	pub, err := compileGrants(h.Pub)
	if err != nil {
		return nil, invalid("token herald.pub holds an invalid topic pattern")
	}
	p := &Principal{
		Subject:   c.Subject,
		Issuer:    c.Issuer,
		Tenant:    tenant,
		Kind:      KindJWT,
		KeyID:     v.id,
		TokenID:   c.ID,
		Admin:     h.Admin,
		subscribe: sub,
		publish:   pub,
	}
	if c.ExpiresAt != nil { // always set: WithExpirationRequired
		p.Expires = c.ExpiresAt.Time
	}
	return p, nil
}

// decodeHeader decodes the JOSE header of tok without trusting it.
func decodeHeader(tok string) (joseHeader, error) {
	var h joseHeader
	seg, _, _ := strings.Cut(tok, ".")
	if len(seg) > maxHeaderLen {
		return h, fmt.Errorf("%w: %w", ErrInvalidCredentials, jwt.ErrTokenMalformed)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return h, fmt.Errorf("%w: %w", ErrInvalidCredentials, jwt.ErrTokenMalformed)
	}
	if err := decodeStrict(raw, &h, headerNames()...); errors.Is(err, errAmbiguousJSON) {
		return h, fmt.Errorf("%w: %w: token header: %w", ErrInvalidCredentials, jwt.ErrTokenMalformed, errAmbiguousJSON)
	} else if err != nil {
		return h, fmt.Errorf("%w: %w", ErrInvalidCredentials, jwt.ErrTokenMalformed)
	}
	return h, nil
}

// selectKey picks the verifier for a token's kid: exact match, or the only
// key when the token has no kid; a kid of no configured key goes to the
// JWKS when there is one.
func (a *Authenticator) selectKey(kid string) (*verifier, error) {
	if kid == "" {
		if len(a.keys) == 1 {
			return a.keys[0], nil
		}
		return nil, invalid("token has no kid and several keys or a JWKS are configured")
	}
	v, ok := a.keysByID[kid]
	if ok && v.id != "" {
		return v, nil
	}
	if a.jwks != nil && len(kid) <= maxIDLen {
		return &verifier{id: kid, parser: a.jwksParser, jwks: true}, nil
	}
	return nil, invalid("token kid matches no configured key")
}

// validClaimString accepts 1..maxClaimLen bytes of valid UTF-8 without
// control characters.
func validClaimString(s string) bool {
	if s == "" || len(s) > maxClaimLen || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, unicode.IsControl)
}
