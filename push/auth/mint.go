package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultMintTTL is the token lifetime Mint uses when MintOptions.TTL is 0.
const DefaultMintTTL = time.Hour

// MintOptions describes a token for Mint (the `herald token` command).
type MintOptions struct {
	// Algorithm is one of Algorithms(); it must match the server's KeyConfig.
	Algorithm string
	// KeyFile holds the HMAC secret (raw, ≥ 32 bytes, one trailing newline
	// ignored) or a PEM private key: PKCS#8 "PRIVATE KEY" (RSA, ECDSA,
	// Ed25519), PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY".
	KeyFile string
	// KeyID is written as the `kid` header when not empty.
	KeyID string
	// Type is the `typ` header. Zero means "JWT"; use "at+jwt" when the
	// server sets RequireTyp.
	Type string
	// Issuer is the `iss` claim, omitted when empty.
	Issuer string
	// Audience is the `aud` claim. Required.
	Audience string
	// Subject is the `sub` claim. Required.
	Subject string
	// Tenant is the `tenant` claim, omitted when empty (the server then uses
	// Subject).
	Tenant string
	// TTL is the lifetime: exp = now + TTL. Zero means DefaultMintTTL.
	TTL time.Duration
	// Subscribe and Publish are the topic patterns of the "herald" claim.
	Subscribe []string
	Publish   []string
	// Admin grants the cluster admin API (members, sessions).
	Admin bool
}

// Mint signs a Herald access token: iss, sub, aud, iat = nbf = now,
// exp = now + TTL, a random jti, optional tenant, and the "herald" grants.
// Errors wrap ErrInvalidConfig and name the offending option.
func Mint(o MintOptions) (string, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	method, kind, err := algorithm(o.Algorithm)
	if err != nil {
		fail("algorithm: %w", err)
	}
	if o.Audience == "" {
		fail("audience: required")
	}
	if !validClaimString(o.Subject) {
		fail("subject: required, at most %d printable characters", maxClaimLen)
	}
	if o.Tenant != "" {
		if err := ValidateTenant(o.Tenant); err != nil {
			fail("%w", err)
		}
	}
	if o.TTL < 0 {
		fail("ttl %s: must not be negative", o.TTL)
	}
	if o.Type != "" && !isPrintable(o.Type) {
		fail("type %q: must be printable ASCII", clip(o.Type))
	}
	if err := checkPatterns(o.Subscribe); err != nil {
		fail("subscribe: %w", err)
	}
	if err := checkPatterns(o.Publish); err != nil {
		fail("publish: %w", err)
	}
	var key any
	if kind != 0 {
		if kind == kindHMAC {
			key, err = loadHMACSecret(o.KeyFile)
		} else {
			key, err = loadPrivateKey(o.KeyFile)
			if err == nil {
				err = checkSignKey(kind, key)
				if err != nil {
					err = fmt.Errorf("%s: %w", o.KeyFile, err)
				}
			}
		}
		if err != nil {
			fail("key file: %w", err)
		}
	}
	if len(errs) > 0 {
		return "", fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}

	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("mint: jti: %w", err)
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = DefaultMintTTL
	}
	now := time.Now().Truncate(time.Second)
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    o.Issuer,
			Subject:   o.Subject,
			Audience:  jwt.ClaimStrings{o.Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		},
		Tenant: o.Tenant,
	}
	if len(o.Subscribe) > 0 || len(o.Publish) > 0 || o.Admin {
		c.Herald = &heraldClaim{Sub: o.Subscribe, Pub: o.Publish, Admin: o.Admin}
	}
	t := jwt.NewWithClaims(method, c)
	if o.KeyID != "" {
		t.Header["kid"] = o.KeyID
	}
	if o.Type != "" {
		t.Header["typ"] = o.Type
	}
	s, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("mint: sign: %w", err)
	}
	return s, nil
}

func checkPatterns(ps []string) error {
	for i, p := range ps {
		if err := ValidatePattern(p); err != nil {
			return fmt.Errorf("pattern %d: %w", i, err)
		}
	}
	return nil
}
