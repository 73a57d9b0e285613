// Package auth authenticates Herald's subscribers and publishers and carries
// their topic grants.
//
// Credentials. A request presents one credential: `Authorization: Bearer <x>`,
// `X-API-Key: <x>`, or — only where the caller allows it (SSE subscribe from a
// browser EventSource, never publish) — the cookie named by
// Config.CookieName. A credential with three dot-separated parts is a JWT;
// anything else is an API key. Tokens in query strings are not read.
//
// Guarantees.
//   - The signing algorithm of every JWT key is pinned by configuration and
//     never taken from the token: `alg: none`, HS/RS key confusion and
//     algorithm substitution are rejected before any signature check, and the
//     key handed to the verifier is type-checked against the pinned algorithm
//     when it is loaded.
//   - `exp` and `aud` are required, `nbf` and `iat` are enforced, clock
//     leeway is bounded (Config.Leeway, at most 60 s), `iss` is checked
//     against the key's bound issuer and the Issuers allow-list. Keys are
//     selected by `kid` (an opaque string, exact match); `jku`, `x5u`, `jwk`
//     and `x5c` are ignored, so a token can never make Herald fetch or trust
//     a key from a place it names; tokens carrying `crit` are rejected.
//   - The header and claims are read with exact member names (never case
//     folded, as encoding/json would) and a token is rejected if its header
//     or claims repeat a name at any depth, carry a case variant of a name
//     Herald reads (`"Herald"`, `"herald": {"PUB": …}`, `"KID"`), or hold
//     invalid UTF-8: two JSON parsers can then never see different grants
//     in one token (ADR 0019).
//   - JWKS (Config.JWKSURLs): keys come only from the configured URLs. A
//     token whose kid no configured or cached key has may trigger one
//     refresh, at most once per Config.JWKSMinRefreshInterval; other
//     unknown kids are rejected without a fetch. Every fetch is bounded in
//     time (Config.JWKSTimeout) and size (1 MiB). With no key loaded, JWKS
//     tokens are rejected (fail closed). HMAC is never accepted from a JWKS.
//   - API keys are stored only as SHA-256 hashes and compared in constant
//     time against every configured hash.
//   - Errors wrap ErrNoCredentials or ErrInvalidCredentials and name only a
//     fixed reason; they never contain credential text, so they are safe to
//     log. JWT failures also wrap the golang-jwt sentinel that caused them
//     (for example jwt.ErrTokenExpired) for callers that want to tell
//     "expired" from "forged".
//   - Authorization is deny by default: a Principal may subscribe or publish
//     only to topics matched by one of its patterns (see ValidatePattern).
//   - Tenants that are configured (API keys) or claimed (the JWT `tenant`
//     claim) match ValidateTenant's grammar, [A-Za-z0-9._-]{1,64}; a token
//     without the claim has its `sub` as tenant, unchanged.
//
// Concurrency. Without JWKS, New is pure: it reads the key files once and
// returns an immutable Authenticator that is safe for concurrent use. With
// JWKS, New also fetches the key sets once and starts one refresher
// goroutine, owned by the Authenticator and stopped by Close; the cached
// keys are an immutable snapshot swapped atomically, so readers never lock.
// To reload keys (SIGHUP), build a new Authenticator, swap it into an
// atomic.Pointer[Authenticator], then Close the old one; requests in flight
// keep the one they loaded.
// A Principal is immutable after it is returned; its exported fields may be
// read by any goroutine.
package auth
