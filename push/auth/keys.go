package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Key material limits.
const (
	// MinHMACSecretLen is the minimum HMAC secret length in bytes (256 bits,
	// RFC 8725 §3.5: weak secrets fall to offline brute force).
	MinHMACSecretLen = 32
	// MinRSABits is the minimum RSA modulus size accepted for RS*/PS*.
	MinRSABits = 2048
	// maxKeyFileSize bounds key files read from disk.
	maxKeyFileSize = 64 << 10
)

// keyKind is the family of key an algorithm needs.
type keyKind int

const (
	kindHMAC keyKind = iota + 1
	kindRSA
	kindP256
	kindP384
	kindEd25519
)

func (k keyKind) String() string {
	switch k {
	case kindHMAC:
		return "HMAC secret"
	case kindRSA:
		return "RSA key"
	case kindP256:
		return "ECDSA P-256 key"
	case kindP384:
		return "ECDSA P-384 key"
	case kindEd25519:
		return "Ed25519 key"
	}
	return "unknown key"
}

// Algorithms lists the accepted JWT signing algorithms, for help texts.
func Algorithms() []string {
	return []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}
}

// algorithm maps a configured algorithm name (exact, case-sensitive) to its
// golang-jwt signing method and the key family it needs.
func algorithm(name string) (jwt.SigningMethod, keyKind, error) {
	switch name {
	case "HS256":
		return jwt.SigningMethodHS256, kindHMAC, nil
	case "HS384":
		return jwt.SigningMethodHS384, kindHMAC, nil
	case "HS512":
		return jwt.SigningMethodHS512, kindHMAC, nil
	case "RS256":
		return jwt.SigningMethodRS256, kindRSA, nil
	case "RS384":
		return jwt.SigningMethodRS384, kindRSA, nil
	case "RS512":
		return jwt.SigningMethodRS512, kindRSA, nil
	case "PS256":
		return jwt.SigningMethodPS256, kindRSA, nil
	case "ES256":
		return jwt.SigningMethodES256, kindP256, nil
	case "ES384":
		return jwt.SigningMethodES384, kindP384, nil
	case "EdDSA":
		return jwt.SigningMethodEdDSA, kindEd25519, nil
	}
	return nil, 0, fmt.Errorf("unknown algorithm %q (want one of %s)", clip(name), strings.Join(Algorithms(), ", "))
}

// readKeyFile reads a key file of bounded size. Errors name the file, never
// its content.
func readKeyFile(file string) ([]byte, error) {
	if file == "" {
		return nil, errors.New("file is required")
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err // *PathError names the file
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, maxKeyFileSize)
	}
	return b, nil
}

// loadHMACSecret reads a raw HMAC secret. One trailing newline ("\n" or
// "\r\n", as left by editors and `echo`) is not part of the secret, so a
// binary secret must not end in one; generate text secrets
// (`openssl rand -base64 48`).
func loadHMACSecret(file string) ([]byte, error) {
	b, err := readKeyFile(file)
	if err != nil {
		return nil, err
	}
	if bytes.HasSuffix(b, []byte("\r\n")) {
		b = b[:len(b)-2]
	} else if bytes.HasSuffix(b, []byte("\n")) {
		b = b[:len(b)-1]
	}
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN")) {
		// A PEM file as an HMAC secret is the HS/RS confusion attack set up
		// by configuration: anyone holding the public key could sign.
		return nil, fmt.Errorf("%s: holds a PEM block; an HMAC algorithm needs a raw random secret", file)
	}
	if len(b) < MinHMACSecretLen {
		return nil, fmt.Errorf("%s: HMAC secret is %d bytes, need at least %d", file, len(b), MinHMACSecretLen)
	}
	return b, nil
}

// nextPEMBlock returns the first PEM block of data that is not EC
// parameters (as written by `openssl ecparam -genkey`).
func nextPEMBlock(file string, data []byte) (*pem.Block, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%s: no PEM block found", file)
		}
		if block.Type == "EC PARAMETERS" {
			continue
		}
		if _, enc := block.Headers["Proc-Type"]; enc || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, fmt.Errorf("%s: encrypted PEM keys are not supported", file)
		}
		return block, nil
	}
}

// loadPublicKey reads a PEM public key: PKIX "PUBLIC KEY", PKCS#1
// "RSA PUBLIC KEY", or the public key of a "CERTIFICATE". Private keys are
// refused: the server only verifies and must not hold signing keys.
func loadPublicKey(file string) (any, error) {
	data, err := readKeyFile(file)
	if err != nil {
		return nil, err
	}
	block, err := nextPEMBlock(file, data)
	if err != nil {
		return nil, err
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: parse public key: %w", file, err)
		}
		return k, nil
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: parse RSA public key: %w", file, err)
		}
		return k, nil
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: parse certificate: %w", file, err)
		}
		return c.PublicKey, nil
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		return nil, fmt.Errorf("%s: holds a private key (%s); configure the public key, the server only verifies", file, block.Type)
	}
	return nil, fmt.Errorf("%s: unsupported PEM block %q (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", file, clip(block.Type))
}

// loadPrivateKey reads a PEM private key: PKCS#8 "PRIVATE KEY" (RSA, ECDSA,
// Ed25519), PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY".
func loadPrivateKey(file string) (any, error) {
	data, err := readKeyFile(file)
	if err != nil {
		return nil, err
	}
	block, err := nextPEMBlock(file, data)
	if err != nil {
		return nil, err
	}
	var k any
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: unsupported PEM block %q (want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)", file, clip(block.Type))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: parse %s: %w", file, block.Type, err)
	}
	return k, nil
}

// checkVerifyKey type-checks a verification key against the key family of
// the pinned algorithm. It is what makes HS/RS confusion impossible: an
// HMAC algorithm only ever gets a []byte secret, RS*/PS* only *rsa.PublicKey,
// and so on.
func checkVerifyKey(kind keyKind, key any) error { return checkKey(kind, key, false) }

// checkSignKey type-checks a signing key against the pinned algorithm.
func checkSignKey(kind keyKind, key any) error { return checkKey(kind, key, true) }

// checkKey type-checks key against the key family kind: a private key when
// private is set, else a public one (an HMAC secret serves both).
func checkKey(kind keyKind, key any, private bool) error {
	half := "public"
	if private {
		half = "private"
	}
	pub, ok := publicHalf(key, private)
	switch kind {
	case kindRSA:
		k, isRSA := pub.(*rsa.PublicKey)
		if !ok || !isRSA {
			return fmt.Errorf("algorithm needs an RSA %s key, file holds %s", half, describeKey(key))
		}
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("RSA key is %d bits, need at least %d", k.N.BitLen(), MinRSABits)
		}
	case kindP256, kindP384:
		k, isEC := pub.(*ecdsa.PublicKey)
		if !ok || !isEC {
			return fmt.Errorf("algorithm needs an %s, file holds %s", kind, describeKey(key))
		}
		if err := checkCurve(kind, k.Curve); err != nil {
			return err
		}
	case kindEd25519:
		k, isEd := pub.(ed25519.PublicKey)
		if !ok || !isEd || len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("algorithm needs an Ed25519 %s key, file holds %s", half, describeKey(key))
		}
	case kindHMAC:
		if _, isSecret := key.([]byte); !isSecret {
			return fmt.Errorf("algorithm needs an HMAC secret, got %s", describeKey(key))
		}
	default:
		return errors.New("unknown key family")
	}
	return nil
}

// publicHalf returns the public key that key is or holds, and whether key
// is of the wanted half (private or public; an HMAC secret is both). An
// Ed25519 private key of the wrong size has no public half.
func publicHalf(key any, private bool) (any, bool) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey, private
	case *ecdsa.PrivateKey:
		return &k.PublicKey, private
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, false
		}
		return k.Public(), private
	case []byte:
		return k, true
	}
	return key, !private
}

func checkCurve(kind keyKind, c elliptic.Curve) error {
	want := elliptic.P256()
	if kind == kindP384 {
		want = elliptic.P384()
	}
	if c != want {
		return fmt.Errorf("algorithm needs an %s, file holds a key on curve %s", kind, c.Params().Name)
	}
	return nil
}

func describeKey(key any) string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return "an RSA public key"
	case *rsa.PrivateKey:
		return "an RSA private key"
	case *ecdsa.PublicKey:
		return "an ECDSA public key (" + k.Curve.Params().Name + ")"
	case *ecdsa.PrivateKey:
		return "an ECDSA private key (" + k.Curve.Params().Name + ")"
	case ed25519.PublicKey:
		return "an Ed25519 public key"
	case ed25519.PrivateKey:
		return "an Ed25519 private key"
	case []byte:
		return "an HMAC secret"
	}
	return fmt.Sprintf("a key of type %T", key)
}

// clip bounds strings quoted in error messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
