package auth_test

import (
	"math/big"
	"os"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldpush/herald/push/auth"
)

// atomicAuth is how the composition root holds the live Authenticator.
type atomicAuth = atomic.Pointer[auth.Authenticator]

func mustRead(tb testing.TB, file string) []byte {
	tb.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func bigOne() *big.Int { return big.NewInt(1) }

func jwtNone() any { return jwt.UnsafeAllowNoneSignatureType }
