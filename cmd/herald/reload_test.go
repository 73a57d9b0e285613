package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/heraldpush/herald/push/auth"
	ingestpkg "github.com/heraldpush/herald/push/ingest"
)

// SIGHUP re-reads the config file and applies new protection rules to a
// running node without a restart.
func TestSIGHUPReloadsProtectionRules(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "herald.yaml")
	write := func(qps int) {
		body := []byte("protection:\n  ingress:\n    topics:\n      hot: " + strconv.Itoa(qps) + "\n")
		if err := os.WriteFile(cfgPath, body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(1000)
	p := startProc(t, "reload", nil, "--config", cfgPath)
	burst := func() (ok, limited int) {
		for range 20 {
			resp, err := http.Post(p.URL+"/v1/topics/hot/events", "application/json", bytes.NewReader([]byte(`{"data":"x"}`)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusCreated:
				ok++
			case http.StatusTooManyRequests:
				limited++
			default:
				t.Fatalf("publish: %d", resp.StatusCode)
			}
		}
		return ok, limited
	}
	if ok, limited := burst(); limited != 0 || ok != 20 {
		t.Fatalf("before reload: %d ok, %d limited; want 20, 0", ok, limited)
	}
	write(2)
	p.signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the new topic limit applies", func() bool {
		_, limited := burst()
		return limited > 0
	})
	// The process kept running through the reload (same URL, same node).
	if n := p.node(t); n.Name != "reload" {
		t.Fatalf("node %q after reload", n.Name)
	}
	// A broken file is refused and the running rules stay.
	if err := os.WriteFile(cfgPath, []byte("protection: [not a map"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the reload failure is logged", func() bool {
		return bytes.Contains([]byte(p.log.String()), []byte("reload failed; keeping the running configuration"))
	})
	if _, limited := burst(); limited == 0 {
		t.Fatal("a failed reload dropped the running limits")
	}
}

// Reload rotates credentials: after it, the old API key is refused and the
// new one accepted, on the running node.
func TestReloadRotatesAPIKeys(t *testing.T) {
	oldKey, oldHash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	newKey, newHash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	entry := func(id, hash string) auth.APIKeyConfig {
		return auth.APIKeyConfig{ID: id, Hash: hash, Publish: []string{"*"}, Subscribe: []string{"*"}}
	}
	m := MustRunMain(t, func(c *Config) {
		c.Dev = false
		c.Auth.APIKeys = []auth.APIKeyConfig{entry("old", oldHash)}
	})
	publish := func(key string) int {
		req, _ := http.NewRequest(http.MethodPost, m.URL()+"/v1/topics/rot/events", bytes.NewReader([]byte(`{"data":"x"}`)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, b := publish(oldKey), publish(newKey); a != http.StatusCreated || b != http.StatusUnauthorized {
		t.Fatalf("before rotation: old key %d, new key %d; want 201, 401", a, b)
	}
	next := m.Config
	next.Auth.APIKeys = []auth.APIKeyConfig{entry("new", newHash)}
	if err := m.Reload(next); err != nil {
		t.Fatal(err)
	}
	if a, b := publish(oldKey), publish(newKey); a != http.StatusUnauthorized || b != http.StatusCreated {
		t.Fatalf("after rotation: old key %d, new key %d; want 401, 201", a, b)
	}
}

// Ingest profiles reload with the keys they name: a key added with its
// profile on SIGHUP routes lines by its template without a restart.
func TestReloadAppliesIngestProfiles(t *testing.T) {
	key, hash, err := auth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	m := MustRunMain(t, func(c *Config) {
		c.Dev = false
		c.Auth.APIKeys = []auth.APIKeyConfig{{ID: "ship", Hash: hash, Publish: []string{"logs.*"}}}
	})
	ingest := func() int {
		req, _ := http.NewRequest(http.MethodPost, m.URL()+"/v1/ingest", bytes.NewReader([]byte(`{"app":"api"}`+"\n")))
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := ingest(); st != http.StatusBadRequest {
		t.Fatalf("without a profile: %d, want 400 (no topic)", st)
	}
	next := m.Config
	next.Ingest.Profiles = []ingestpkg.ProfileConfig{{APIKey: "ship", Topic: "logs.{app}"}}
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(next); err != nil {
		t.Fatal(err)
	}
	if st := ingest(); st != http.StatusOK {
		t.Fatalf("after reload: %d, want 200", st)
	}
}
