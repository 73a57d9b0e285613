package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jsonNames collects the encoding/json names of t's fields, descending into
// embedded structs, as encoding/json and decodeStrict see them.
func jsonNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			names = append(names, jsonNames(f.Type)...)
		case name == "":
			names = append(names, f.Name)
		default:
			names = append(names, name)
		}
	}
	return names
}

// TestStrictNamesMatchTags: the name lists decodeStrict checks case variants
// against are exactly the decoded types' JSON names, so a field added to
// claims, heraldClaim or joseHeader cannot be left out of the check.
func TestStrictNamesMatchTags(t *testing.T) {
	for _, tt := range []struct {
		v     any
		names []string
	}{
		{claims{}, claimNames()},
		{heraldClaim{}, heraldNames()},
		{joseHeader{}, headerNames()},
	} {
		got, want := jsonNames(reflect.TypeOf(tt.v)), slices.Clone(tt.names)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%T: struct JSON names %q, name list %q", tt.v, got, want)
		}
	}
}

// TokenJSON is a token's header and payload as JSON text.
type TokenJSON struct{ Name, Header, Payload string }

// AmbiguousTokenJSON returns tokens, signed under kid with HS256 by the
// caller, whose header or payload two JSON parsers could read differently:
// duplicate member names (RFC 7515 §4, RFC 7519 §4) and names that match a
// name Herald reads only when case is folded, as encoding/json does. claims
// returns a valid payload with extra members (starting with a comma, or "")
// appended. Before strict decoding each was accepted, several with more
// rights than the issuer wrote (the comments say which). Exported for the
// external tests.
func AmbiguousTokenJSON(kid string, claims func(extra string) string) []TokenJSON {
	h := fmt.Sprintf(`{"alg":"HS256","kid":%q,"typ":"JWT"}`, kid)
	return []TokenJSON{
		// Admin API for a token whose issuer never wrote "herald".
		{"Herald claim", h, claims(`,"Herald":{"admin":true}`)},
		{"HERALD after herald", h, claims(`,"herald":{"sub":["news"]},"HERALD":{"admin":true}`)},
		{"Admin inside herald", h, claims(`,"herald":{"sub":["news"],"Admin":true}`)},
		// Publish to everything where the issuer granted one topic.
		{"PUB after pub", h, claims(`,"herald":{"pub":["chat.room1"],"PUB":["*"]}`)},
		{"duplicate pub", h, claims(`,"herald":{"pub":["chat.room1"],"pub":["*"]}`)},
		{"duplicate herald", h, claims(`,"herald":{"sub":["news"]},"herald":{"admin":true}`)},
		// Another subject, tenant or lifetime than a first-wins parser sees.
		{"duplicate sub", h, claims(`,"sub":"mallory"`)},
		{"SUB only", h, strings.Replace(claims(""), `"sub"`, `"SUB"`, 1)},
		{"long-s sub (folds to sub)", h, strings.Replace(claims(""), `"sub"`, `"ſub"`, 1)},
		{"Tenant", h, claims(`,"Tenant":"billing"`)},
		{"duplicate tenant", h, claims(`,"tenant":"a","tenant":"billing"`)},
		{"duplicate exp", h, claims(`,"exp":99999999999`)},
		{"Exp", h, claims(`,"Exp":99999999999`)},
		{"AUD", h, claims(`,"AUD":"other"`)},
		// Duplicates are refused at any depth, in claims Herald does not read.
		{"duplicate inside an unknown claim", h, claims(`,"ext":{"roles":["user"],"roles":["admin"]}`)},
		// The header selects the key and the type: one reading only.
		{"duplicate kid", fmt.Sprintf(`{"alg":"HS256","kid":"other","kid":%q}`, kid), claims("")},
		{"KID", fmt.Sprintf(`{"alg":"HS256","KID":%q}`, kid), claims("")},
		{"Typ", fmt.Sprintf(`{"alg":"HS256","kid":%q,"Typ":"at+jwt"}`, kid), claims("")},
		{"duplicate alg", fmt.Sprintf(`{"alg":"HS256","alg":"HS256","kid":%q}`, kid), claims("")},
	}
}

// ambiguity reads the JSON text s with encoding/json's tokenizer, an
// implementation independent of decodeStrict's, and reports whether any
// object at any depth repeats a name, and whether an object whose path is a
// key of names holds a case variant of one of the names listed for it
// ("" is the top level, "/herald" the herald member). ok is false when s is
// not one JSON value.
func ambiguity(s string, names map[string][]string) (dup, variant, ok bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := make(map[string]bool)
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				name := k.(string)
				dup = dup || seen[name]
				seen[name] = true
				for _, n := range names[path] {
					variant = variant || (name != n && strings.EqualFold(name, n))
				}
				if err := walk(path + "/" + name); err != nil {
					return err
				}
			}
		case json.Delim('['):
			for dec.More() {
				if err := walk(path + "/[]"); err != nil {
					return err
				}
			}
		default:
			return nil
		}
		_, err = dec.Token() // the closing delimiter
		return err
	}
	if err := walk(""); err != nil {
		return false, false, false
	}
	return dup, variant, true
}

// samePrincipal compares what Herald acts on; Expires to the second, the
// precision golang-jwt encodes NumericDate with.
func samePrincipal(a, b *Principal) bool {
	return a.Subject == b.Subject && a.Issuer == b.Issuer && a.Tenant == b.Tenant && a.Kind == b.Kind && a.KeyID == b.KeyID &&
		a.TokenID == b.TokenID && a.Admin == b.Admin &&
		a.Expires.Truncate(time.Second).Equal(b.Expires.Truncate(time.Second)) &&
		slices.Equal(a.subscribe.patterns, b.subscribe.patterns) && slices.Equal(a.publish.patterns, b.publish.patterns)
}

// FuzzClaims signs arbitrary header and payload JSON with the one
// configured HS256 key, so every input reaches claim decoding past the
// signature check. Invariants:
//   - no panic; a refusal wraps ErrInvalidCredentials;
//   - an accepted token has no duplicate name at any depth and no case
//     variant of a name Herald reads, by an independent tokenizer;
//   - an accepted token means what an exact-name reading of its payload
//     (encoding/json into a map) says: same sub, iss, tenant and admin;
//   - accepted claims round-trip: encoded again as Mint encodes them and
//     signed, they verify to the same principal.
func FuzzClaims(f *testing.F) {
	secret := []byte(strings.Repeat("fuzz-secret-", 4))
	file := filepath.Join(f.TempDir(), "hs256.key")
	if err := os.WriteFile(file, secret, 0o600); err != nil {
		f.Fatal(err)
	}
	a, err := New(Config{Audience: "herald", Keys: []KeyConfig{{ID: "k1", Algorithm: "HS256", File: file}}})
	if err != nil {
		f.Fatal(err)
	}
	sign := func(t *testing.T, header, payload []byte) string {
		enc := base64.RawURLEncoding
		unsigned := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
		sig, err := jwt.SigningMethodHS256.Sign(unsigned, secret)
		if err != nil {
			t.Fatal(err)
		}
		return unsigned + "." + enc.EncodeToString(sig)
	}
	// Far-future exp so that the corpus stays valid.
	valid := func(extra string) string {
		return `{"iss":"https://a.example","sub":"alice","aud":"herald","exp":4102444800,"iat":1700000000,"nbf":1700000000,"jti":"t-1"` + extra + `}`
	}
	header := `{"alg":"HS256","kid":"k1","typ":"JWT"}`
	// Real tokens: what `herald token` mints, and what issuers add.
	minted, err := Mint(MintOptions{Algorithm: "HS256", KeyFile: file, KeyID: "k1", Audience: "herald", Subject: "alice",
		Tenant: "acme", Subscribe: []string{"chat.*", "news"}, Publish: []string{"orders"}, Admin: true})
	if err != nil {
		f.Fatal(err)
	}
	seg := strings.Split(minted, ".")
	mh, err1 := base64.RawURLEncoding.DecodeString(seg[0])
	mp, err2 := base64.RawURLEncoding.DecodeString(seg[1])
	if err := errors.Join(err1, err2); err != nil {
		f.Fatal(err)
	}
	f.Add(string(mh), string(mp))
	f.Add(header, valid(""))
	f.Add(header, `{"sub":"alice","aud":["other","herald"],"exp":4102444800,"scope":"read","email":"a@example.com","herald":{"sub":["chat.*"],"pub":["chat.room1"],"ttl":5}}`)
	f.Add(header, valid(`,"tenant":"acme","herald":null`))
	f.Add(header, valid(`,"\u0068erald":{"\u0061dmin":true}`))
	f.Add(`{"alg":"HS256"}`, valid(`,"herald":{"admin":true}`))
	// Payloads and headers that are JSON but not objects.
	f.Add(header, "null")
	f.Add("null", valid(""))
	f.Add(header, `["sub"]`)
	for _, tt := range AmbiguousTokenJSON("k1", valid) {
		f.Add(tt.Header, tt.Payload)
	}
	f.Fuzz(func(t *testing.T, header, payload string) {
		p, err := a.verifyJWT(t.Context(), sign(t, []byte(header), []byte(payload)))
		if err != nil {
			if p != nil || !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("refused with principal %v, err %v", p, err)
			}
			return
		}
		for _, part := range []struct {
			text  string
			names map[string][]string
		}{
			{header, map[string][]string{"": headerNames()}},
			{payload, map[string][]string{"": claimNames(), "/herald": heraldNames()}},
		} {
			if dup, variant, ok := ambiguity(part.text, part.names); !ok || dup || variant {
				t.Fatalf("accepted %q: one value %v, duplicate %v, case variant %v", part.text, ok, dup, variant)
			}
		}

		var exact map[string]any
		if err := json.Unmarshal([]byte(payload), &exact); err != nil {
			t.Fatalf("accepted a payload encoding/json refuses: %v", err)
		}
		tenant, _ := exact["tenant"].(string)
		if tenant == "" {
			tenant, _ = exact["sub"].(string)
		}
		iss, _ := exact["iss"].(string)
		herald, _ := exact["herald"].(map[string]any)
		if p.Subject != exact["sub"] || p.Issuer != iss || p.Tenant != tenant || p.Admin != (herald["admin"] == true) {
			t.Fatalf("principal %+v disagrees with the exact reading %v", p, exact)
		}

		var c claims
		if err := json.Unmarshal([]byte(payload), &c); err != nil {
			t.Fatalf("claims of an accepted token do not decode: %v", err)
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("accepted claims do not encode: %v", err)
		}
		p2, err := a.verifyJWT(t.Context(), sign(t, []byte(header), again))
		if err != nil {
			t.Fatalf("re-encoded claims %s refused: %v", again, err)
		}
		if !samePrincipal(p, p2) {
			t.Fatalf("round trip changed the principal: %+v, then %+v from %s", p, p2, again)
		}
	})
}
