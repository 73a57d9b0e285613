package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldpush/herald/push/auth"
)

// hs256Header is the JOSE header of an HS256 token under the "HS256" kid of
// keyset.config().
const hs256Header = `{"alg":"HS256","kid":"HS256","typ":"JWT"}`

// TestAuthenticateRefusesAmbiguousJSON: every ambiguous token is refused
// with ErrInvalidCredentials wrapping jwt.ErrTokenMalformed, whichever
// reading of it would have been harmless.
func TestAuthenticateRefusesAmbiguousJSON(t *testing.T) {
	k := newKeyset(t)
	a := mustNew(t, k.config())
	for _, tt := range auth.AmbiguousTokenJSON("HS256", rawClaims) {
		t.Run(tt.Name, func(t *testing.T) {
			tok := signRaw(t, "HS256", k.hmac, tt.Header, tt.Payload)
			p, err := a.Authenticate(bearer(tok), false)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if !errors.Is(err, auth.ErrInvalidCredentials) || !errors.Is(err, jwt.ErrTokenMalformed) {
				t.Fatalf("err = %v, want ErrInvalidCredentials wrapping jwt.ErrTokenMalformed", err)
			}
			if !strings.Contains(err.Error(), "duplicate or case-variant member name") {
				t.Errorf("err = %v, want it to name the ambiguity", err)
			}
			assertNoLeak(t, err, tok)
		})
	}
}

// TestAuthenticateStrictJSONAccepts: strict decoding still takes what a
// real issuer writes: claims Herald does not know, in any case, an audience
// list, a null herald claim, and escaped names that decode to Herald's own.
func TestAuthenticateStrictJSONAccepts(t *testing.T) {
	k := newKeyset(t)
	a := mustNew(t, k.config())
	tests := []struct {
		name, payload string
		admin         bool
		pub           string
	}{
		{"unknown claims", rawClaims(`,"scope":"read","Email":"a@example.com","https://example.com/roles":["x"],"herald":{"pub":["chat.room1"],"ttl":5}`), false, "chat.room1"},
		{"null herald", rawClaims(`,"herald":null`), false, ""},
		{"escaped names", rawClaims(`,"\u0068erald":{"\u0061dmin":true}`), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(bearer(signRaw(t, "HS256", k.hmac, hs256Header, tt.payload)), false)
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if p.Subject != "alice" || p.Admin != tt.admin {
				t.Errorf("principal %+v, want subject alice, admin %v", p, tt.admin)
			}
			if tt.pub != "" && !p.CanPublish(tt.pub) {
				t.Errorf("principal %+v cannot publish to %s", p, tt.pub)
			}
		})
	}
}
