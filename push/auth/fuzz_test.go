package auth_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push/auth"
)

// FuzzAuthenticate feeds arbitrary Authorization header values. Authenticate
// must never panic, must fail with one of the two sentinels, and its error
// must never quote the credential.
func FuzzAuthenticate(f *testing.F) {
	k := newKeyset(f)
	cfg := k.config()
	key, hash, err := auth.GenerateAPIKey()
	if err != nil {
		f.Fatal(err)
	}
	cfg.APIKeys = []auth.APIKeyConfig{{ID: "svc", Hash: hash, Publish: []string{"*"}}}
	a := mustNew(f, cfg)

	for _, alg := range auth.Algorithms() {
		f.Add("Bearer " + sign(f, alg, k.signKey(alg), alg, claims(), nil))
	}
	f.Add("Bearer " + sign(f, "none", jwtNone(), "HS256", claims(), nil))
	f.Add("Bearer " + sign(f, "HS256", mustRead(f, k.rsaPub), "RS256", claims(), nil))
	f.Add("Bearer " + key)
	f.Add("bearer " + key)
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("Bearer a.b.c")
	f.Add("Bearer eyJhbGciOiJIUzI1NiJ9..")
	f.Add("Bearer ..")
	f.Add("Bearer " + strings.Repeat("a", 9000))
	f.Add("")

	f.Fuzz(func(t *testing.T, value string) {
		r := httptest.NewRequest(http.MethodGet, "/v1/stream", nil)
		r.Header["Authorization"] = []string{value}
		p, err := a.Authenticate(r, true)
		if err == nil {
			if p == nil || p.Subject == "" {
				t.Fatalf("accepted with principal %+v", p)
			}
			return
		}
		if p != nil {
			t.Fatal("principal returned with an error")
		}
		if !errors.Is(err, auth.ErrInvalidCredentials) && !errors.Is(err, auth.ErrNoCredentials) {
			t.Fatalf("unexpected error class: %v", err)
		}
		_, cred, _ := strings.Cut(strings.TrimSpace(value), " ")
		if cred = strings.TrimSpace(cred); len(cred) >= 24 && strings.Contains(err.Error(), cred) {
			t.Fatalf("error quotes the credential: %v", err)
		}
	})
}
