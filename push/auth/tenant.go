package auth

import "fmt"

// MaxTenantLen bounds a tenant name.
const MaxTenantLen = 64

// ValidateTenant checks a tenant name against the tenant grammar
// [A-Za-z0-9._-]{1,64}. Tenants name rate-limit buckets
// (protection.ingress.tenants) and scope idempotency keys, so the grammar
// keeps them free of separators ('/', ':', '@'), spaces and controls, and
// short enough for logs. The error quotes the (clipped) value and is not
// wrapped: callers add their context and sentinel.
func ValidateTenant(t string) error {
	if len(t) == 0 || len(t) > MaxTenantLen {
		return fmt.Errorf("tenant %q: length must be 1..%d", clip(t), MaxTenantLen)
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("tenant %q: character %d not allowed (grammar [A-Za-z0-9._-]{1,%d})", clip(t), i, MaxTenantLen)
		}
	}
	return nil
}
