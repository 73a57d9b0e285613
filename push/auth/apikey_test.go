package auth_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push/auth"
)

func TestGenerateAPIKey(t *testing.T) {
	seen := map[string]bool{}
	for range 16 {
		key, hash, err := auth.GenerateAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		raw, ok := strings.CutPrefix(key, auth.APIKeyPrefix)
		if !ok {
			t.Fatalf("key lacks prefix %q", auth.APIKeyPrefix)
		}
		if b, err := base64.RawURLEncoding.DecodeString(raw); err != nil || len(b) != 32 {
			t.Fatalf("key body is not 32 base64url bytes (err %v)", err)
		}
		sum := sha256.Sum256([]byte(key))
		if want := "sha256:" + hex.EncodeToString(sum[:]); hash != want || auth.HashAPIKey(key) != want {
			t.Fatalf("hash = %q, want %q", hash, want)
		}
		if strings.Contains(key, ".") {
			t.Fatalf("key contains '.', would be taken for a JWT")
		}
		if seen[key] {
			t.Fatal("duplicate key")
		}
		seen[key] = true
	}
}

func TestAPIKeys(t *testing.T) {
	var keys [3]string
	var hashes [3]string
	for i := range keys {
		var err error
		if keys[i], hashes[i], err = auth.GenerateAPIKey(); err != nil {
			t.Fatal(err)
		}
	}
	// Two keys of one service active at once (rotation); a key without a
	// tenant (the ID is the tenant) whose hash is written in upper-case hex.
	a := mustNew(t, auth.Config{APIKeys: []auth.APIKeyConfig{
		{ID: "billing-2025", Hash: hashes[0], Tenant: "acme", Publish: []string{"billing.*"}, Subscribe: []string{"billing.acks"}},
		{ID: "billing-2026", Hash: hashes[1], Tenant: "acme", Publish: []string{"billing.*"}},
		{ID: "ops", Hash: "sha256:" + strings.ToUpper(strings.TrimPrefix(hashes[2], "sha256:"))},
	}})
	tests := []struct {
		key     string
		id      string
		tenant  string
		pub     string
		canPub  bool
		sub     string
		canSub  bool
		wantErr error
	}{
		{keys[0], "billing-2025", "acme", "billing.invoices", true, "billing.acks", true, nil},
		{keys[1], "billing-2026", "acme", "billing.invoices", true, "billing.acks", false, nil},
		{keys[2], "ops", "ops", "billing.invoices", false, "anything", false, nil},
		{keys[0] + "x", "", "", "", false, "", false, auth.ErrInvalidCredentials},
		{keys[0][:len(keys[0])-1], "", "", "", false, "", false, auth.ErrInvalidCredentials},
		{"hk_", "", "", "", false, "", false, auth.ErrInvalidCredentials},
		{strings.TrimPrefix(hashes[0], "sha256:"), "", "", "", false, "", false, auth.ErrInvalidCredentials},
	}
	for i, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/v1/publish", nil)
		r.Header.Set(auth.HeaderAPIKey, tt.key)
		p, err := a.Authenticate(r, false)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%d: err = %v, want %v", i, err, tt.wantErr)
			} else {
				assertNoLeak(t, err, tt.key)
			}
			continue
		}
		if err != nil {
			t.Errorf("%d: %v", i, err)
			continue
		}
		if p.Kind != auth.KindAPIKey || p.Subject != tt.id || p.KeyID != tt.id || p.Tenant != tt.tenant || !p.Expires.IsZero() {
			t.Errorf("%d: principal %+v", i, p)
		}
		if p.CanPublish(tt.pub) != tt.canPub || p.CanSubscribe(tt.sub) != tt.canSub {
			t.Errorf("%d: grants wrong: pub %s=%v sub %s=%v", i, tt.pub, p.CanPublish(tt.pub), tt.sub, p.CanSubscribe(tt.sub))
		}
		// The returned principal is a copy; changing it changes nothing else.
		p.Subject, p.Tenant = "mallory", "evil"
	}
	r := httptest.NewRequest(http.MethodPost, "/v1/publish", nil)
	r.Header.Set(auth.HeaderAPIKey, keys[0])
	if p, err := a.Authenticate(r, false); err != nil || p.Subject != "billing-2025" || p.Tenant != "acme" {
		t.Errorf("principal shared between calls: %+v, %v", p, err)
	}
}

func TestAPIKeyWithoutAPIKeysConfigured(t *testing.T) {
	a := mustNew(t, auth.Config{})
	r := httptest.NewRequest(http.MethodPost, "/v1/publish", nil)
	r.Header.Set(auth.HeaderAPIKey, "hk_anything")
	if _, err := a.Authenticate(r, false); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("err = %v, want ErrInvalidCredentials", err)
	}
	if _, err := a.Authenticate(bearer("x.y.z"), false); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("JWT without keys: err = %v, want ErrInvalidCredentials", err)
	}
}
