package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// APIKeyPrefix starts every key made by GenerateAPIKey, so leaked keys are
// recognisable by secret scanners. Keys are not required to carry it.
const APIKeyPrefix = "hk_"

// apiKey is one configured API key: its SHA-256 and the principal it grants.
type apiKey struct {
	hash      [32]byte
	principal Principal
}

// verifyAPIKey hashes cred and compares it in constant time against every
// configured hash, without an early exit, so the time taken does not depend
// on which entry (if any) matched or how many bytes agreed.
func (a *Authenticator) verifyAPIKey(cred string) (*Principal, error) {
	sum := sha256.Sum256([]byte(cred))
	match := -1
	for i := range a.apiKeys {
		eq := subtle.ConstantTimeCompare(sum[:], a.apiKeys[i].hash[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return nil, invalid("unknown api key")
	}
	p := a.apiKeys[match].principal // copy: callers may not alter the entry
	return &p, nil
}

// GenerateAPIKey returns a new API key ("hk_" + 32 random bytes, base64url)
// and its configuration hash ("sha256:<hex>"). Show the key once to its
// owner; configure only the hash.
func GenerateAPIKey() (key, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("generate api key: %w", err)
	}
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashAPIKey(key), nil
}

// HashAPIKey returns the configuration hash of key: "sha256:<hex>".
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}
