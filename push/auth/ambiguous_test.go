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

// ambiguousTokens are validly signed tokens whose header or payload two JSON
// parsers could read differently: duplicate member names (RFC 7515 §4,
// RFC 7519 §4) and names that match a name Herald reads only when case is
// folded, as encoding/json does. Each used to be accepted, several with
// more rights than the issuer meant (the comments say what they granted).
func ambiguousTokens() []struct{ name, header, payload string } {
	return []struct{ name, header, payload string }{
		// Admin API for a token whose issuer never wrote "herald".
		{"Herald claim", hs256Header, rawClaims(`,"Herald":{"admin":true}`)},
		{"HERALD after herald", hs256Header, rawClaims(`,"herald":{"sub":["news"]},"HERALD":{"admin":true}`)},
		{"Admin inside herald", hs256Header, rawClaims(`,"herald":{"sub":["news"],"Admin":true}`)},
		// Publish to everything where the issuer granted one topic.
		{"PUB after pub", hs256Header, rawClaims(`,"herald":{"pub":["chat.room1"],"PUB":["*"]}`)},
		{"duplicate pub", hs256Header, rawClaims(`,"herald":{"pub":["chat.room1"],"pub":["*"]}`)},
		{"duplicate herald", hs256Header, rawClaims(`,"herald":{"sub":["news"]},"herald":{"admin":true}`)},
		// Another subject, tenant or lifetime than a first-wins parser sees.
		{"duplicate sub", hs256Header, rawClaims(`,"sub":"mallory"`)},
		{"SUB only", hs256Header, strings.Replace(rawClaims(""), `"sub"`, `"SUB"`, 1)},
		{"long-s sub (folds to sub)", hs256Header, strings.Replace(rawClaims(""), `"sub"`, `"ſub"`, 1)},
		{"Tenant", hs256Header, rawClaims(`,"Tenant":"billing"`)},
		{"duplicate tenant", hs256Header, rawClaims(`,"tenant":"a","tenant":"billing"`)},
		{"duplicate exp", hs256Header, rawClaims(`,"exp":99999999999`)},
		{"Exp", hs256Header, rawClaims(`,"Exp":99999999999`)},
		{"AUD", hs256Header, rawClaims(`,"AUD":"other"`)},
		// Duplicates are refused at any depth, in claims Herald does not read.
		{"duplicate inside an unknown claim", hs256Header, rawClaims(`,"ext":{"roles":["user"],"roles":["admin"]}`)},
		// The header selects the key and the type: one reading only.
		{"duplicate kid", `{"alg":"HS256","kid":"RS256","kid":"HS256"}`, rawClaims("")},
		{"KID", `{"alg":"HS256","KID":"HS256"}`, rawClaims("")},
		{"Typ", `{"alg":"HS256","kid":"HS256","Typ":"at+jwt"}`, rawClaims("")},
		{"duplicate alg", `{"alg":"HS256","alg":"HS256","kid":"HS256"}`, rawClaims("")},
	}
}

// TestAuthenticateRefusesAmbiguousJSON: every ambiguous token is refused
// with ErrInvalidCredentials wrapping jwt.ErrTokenMalformed, whichever
// reading of it would have been harmless.
func TestAuthenticateRefusesAmbiguousJSON(t *testing.T) {
	k := newKeyset(t)
	a := mustNew(t, k.config())
	for _, tt := range ambiguousTokens() {
		t.Run(tt.name, func(t *testing.T) {
			tok := signRaw(t, "HS256", k.hmac, tt.header, tt.payload)
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
