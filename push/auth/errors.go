package auth

import "errors"

// Sentinel errors of the auth package. Errors returned by this package wrap
// exactly one of them with %w; callers test with errors.Is. No error text
// ever contains a credential.
var (
	// ErrNoCredentials: the request carried no credential at all. The HTTP
	// layer answers 401 with a WWW-Authenticate challenge.
	ErrNoCredentials = errors.New("no credentials")
	// ErrInvalidCredentials: a credential was presented but is malformed,
	// forged, expired, not meant for this service, or unknown. The wrapped
	// reason is for logs; clients get a generic 401.
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrInvalidConfig: Config.Validate or New rejected the configuration,
	// or Mint rejected its options. The message names the offending entry.
	ErrInvalidConfig = errors.New("invalid auth config")
)
