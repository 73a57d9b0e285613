package auth_test

import (
	"fmt"
	"testing"

	"github.com/heraldpush/herald/push/auth"
)

// A principal's ID is the length-prefixed identity sessions are bound to
// (ADR 0014): its format must not change (bindings made before still
// verify), and building it is one allocation, made on every connect.
func TestPrincipalIDFormatAndCost(t *testing.T) {
	for _, p := range []*auth.Principal{
		auth.DevPrincipal(),
		{Kind: auth.KindAPIKey, Subject: "alice"},
		{Kind: auth.KindJWT, Issuer: "https://idp.example/", Subject: "user:42", Tenant: "acme"},
		{Kind: auth.KindJWT, Issuer: "", Subject: "", Tenant: "t:1:x"},
	} {
		want := fmt.Sprintf("%s:%d:%s%d:%s%d:%s", p.Kind, len(p.Issuer), p.Issuer, len(p.Subject), p.Subject, len(p.Tenant), p.Tenant)
		if got := p.ID(); got != want {
			t.Errorf("ID() = %q, want %q", got, want)
		}
	}
	if (*auth.Principal)(nil).ID() != "" {
		t.Error("nil principal's ID is not empty")
	}
	p := &auth.Principal{Kind: auth.KindJWT, Issuer: "https://idp.example/", Subject: "user:42", Tenant: "acme"}
	if n := testing.AllocsPerRun(100, func() { _ = p.ID() }); n > 1 {
		t.Errorf("ID(): %.0f allocations, want 1", n)
	}
}
