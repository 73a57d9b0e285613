package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push/auth"
)

// bannerLine returns the banner line that starts with prefix (trimmed).
func bannerLine(t *testing.T, banner, prefix string) string {
	t.Helper()
	for l := range strings.SplitSeq(banner, "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
			return strings.TrimSpace(s)
		}
	}
	t.Fatalf("no %q line in banner:\n%s", prefix, banner)
	return ""
}

// An authenticated node used to print "Herald dev is running" and curl
// examples without credentials that then got 401. The banner now names the
// mode and its examples work when run as printed, with the credentials in
// the variables it names.
func TestBannerAuthenticatedExamplesWork(t *testing.T) {
	dir := t.TempDir()
	secret := "banner-test-hmac-secret-0123456789abcdef"
	secretFile := filepath.Join(dir, "jwt.secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	key, hash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	m := MustRunMain(t, func(c *Config) {
		c.Dev = false
		c.Auth.Audience = "herald"
		c.Auth.Keys = []auth.KeyConfig{{ID: "k1", Algorithm: "HS256", File: secretFile}}
		c.Auth.APIKeys = []auth.APIKeyConfig{{ID: "billing", Hash: hash, Publish: []string{"orders.*"}}}
	})
	var b bytes.Buffer
	printBanner(&b, m)
	banner := b.String()
	t.Logf("banner:\n%s", banner)
	for _, bad := range []string{"DEV MODE", key, hash, secret} {
		if strings.Contains(banner, bad) {
			t.Errorf("banner shows %q", bad)
		}
	}
	if mode := bannerLine(t, banner, "mode"); !strings.Contains(mode, "1 API key") || !strings.Contains(mode, "1 JWT key") {
		t.Errorf("mode line %q", mode)
	}
	if store := bannerLine(t, banner, "store"); !strings.Contains(store, "in-memory") {
		t.Errorf("store line %q", store)
	}

	// Run the examples as printed, in a shell that has the API key and a
	// herald binary on PATH for the token command.
	bin := heraldBinary(t)
	mint := bannerLine(t, banner, "export HERALD_TOKEN=")
	publish := bannerLine(t, banner, "publish:")
	history := bannerLine(t, banner, "history:")
	script := "set -eu\nexport HERALD_TOKEN=" + mint + "\n" + publish + "\necho\n" + history + "\n"
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "HERALD_API_KEY="+key)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("examples failed: %v\n%s\nscript:\n%s", err, out, script)
	}
	// The publish answers with its offset; the history holds the event.
	if !strings.Contains(string(out), `"offset":1`) || !strings.Contains(string(out), `"greeting"`) {
		t.Errorf("examples did not publish and read back:\n%s\nscript:\n%s", out, script)
	}
}

func TestBannerDevMode(t *testing.T) {
	m := MustRunMain(t, nil)
	var b bytes.Buffer
	printBanner(&b, m)
	if mode := bannerLine(t, b.String(), "mode"); !strings.Contains(mode, "DEV MODE") {
		t.Errorf("mode line %q", mode)
	}
	if strings.Contains(b.String(), "Authorization") {
		t.Errorf("dev banner asks for credentials:\n%s", b.String())
	}
}
