package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/ingest"
)

func flagSet(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	registerServeFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "herald.yaml")
	yaml := `
listen: 127.0.0.1:7000
region: from-file
dev: true
limits:
  max_event_bytes: 2048
stream:
  heartbeat: 20s
retention:
  default: {max_len: 50, max_age: 1h}
  rules:
    - {pattern: "chat.*", max_len: 5}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"HERALD_CONFIG=" + file,
		"HERALD_REGION=from-env",
		"HERALD_LISTEN=127.0.0.1:7001",
		"HERALD_LIMITS__MAX_EVENT_BYTES=4096",
		"UNRELATED=1",
	}
	cfg, err := LoadConfig(flagSet(t, "--listen", "127.0.0.1:7002"), func() []string { return env })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7002" {
		t.Errorf("flag should win: listen %q", cfg.Listen)
	}
	if cfg.Region != "from-env" {
		t.Errorf("env should beat file: region %q", cfg.Region)
	}
	if cfg.Limits.MaxEventBytes != 4096 {
		t.Errorf("nested env: max_event_bytes %d", cfg.Limits.MaxEventBytes)
	}
	if cfg.Stream.Heartbeat != 20*time.Second || !cfg.Dev {
		t.Errorf("file values lost: %+v dev=%v", cfg.Stream, cfg.Dev)
	}
	if cfg.Stream.RetryMax != 5*time.Second || cfg.AdminListen != "127.0.0.1:8081" {
		t.Errorf("defaults lost: %+v %q", cfg.Stream, cfg.AdminListen)
	}
	if got := cfg.Retention.For("chat.room").MaxLen; got != 5 {
		t.Errorf("retention rule: %d", got)
	}
}

func TestConfigValidateNamesKeys(t *testing.T) {
	env := []string{"HERALD_LIMITS__MAX_EVENT_BYTES=0", "HERALD_LOG_LEVEL=loud", "HERALD_REDIS=mysql://x"}
	_, err := LoadConfig(flagSet(t, "--region", "Bad_Region", "--listen", "nope"), func() []string { return env })
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, key := range []string{"limits.max_event_bytes", "log_level", "redis", "region", "listen", "auth"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}

// An ingest profile must name a configured API key and carry a valid
// template; both are reported at load, naming the entry.
func TestConfigChecksIngestProfiles(t *testing.T) {
	c := DefaultConfig()
	c.Dev = true
	c.Auth.APIKeys = []auth.APIKeyConfig{{ID: "ship", Hash: "sha256:" + strings.Repeat("a", 64)}}
	c.Ingest.Profiles = []ingest.ProfileConfig{{APIKey: "shipper", Topic: "logs.{app"}, {APIKey: "ship", Topic: "logs.{app}"}}
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{`api_key "shipper" is not the id of an auth.api_keys entry`, `ingest.profiles[0] (api_key "shipper"): topic`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	c.Ingest.Profiles = c.Ingest.Profiles[1:]
	if err := c.Validate(); err != nil {
		t.Errorf("valid profile refused: %v", err)
	}
}

func TestConfigRequiresAuthOutsideDev(t *testing.T) {
	_, err := LoadConfig(flagSet(t), func() []string { return nil })
	if err == nil || !strings.Contains(err.Error(), "--dev") {
		t.Fatalf("no auth and no --dev: %v", err)
	}
	if _, err := LoadConfig(flagSet(t, "--dev"), func() []string { return nil }); err != nil {
		t.Fatalf("dev config: %v", err)
	}
}

// Sentinel and Cluster URLs hold commas: neither HERALD_REMOTE_REDIS nor a
// repeated --remote-redis may split them.
func TestRemoteRedisKeepsCommasInURLs(t *testing.T) {
	const (
		sentinel = "redis+sentinel://:p%2Cw@s1:26379,s2:26379,s3:26379/herald?sentinel_password=x"
		cluster  = "redis+cluster://c1:7000,c2:7000"
	)
	want := []remote{{"eu", sentinel}, {"ap-south", cluster}}
	base := []string{"HERALD_REGION=us", "HERALD_REDIS=redis://127.0.0.1:6390", "HERALD_DEV=true"}
	for _, tc := range []struct {
		name  string
		env   []string
		flags []string
	}{
		{"env comma", []string{"HERALD_REMOTE_REDIS=eu=" + sentinel + ",ap-south=" + cluster}, nil},
		{"env spaces", []string{"HERALD_REMOTE_REDIS= eu=" + sentinel + " , ap-south=" + cluster + " "}, nil},
		{"flags", nil, []string{"--remote-redis", "eu=" + sentinel, "--remote-redis", "ap-south=" + cluster}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append(slices.Clone(base), tc.env...)
			cfg, err := LoadConfig(flagSet(t, tc.flags...), func() []string { return env })
			if err != nil {
				t.Fatal(err)
			}
			got, err := cfg.Remotes()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("remotes = %q, want %q", got, want)
			}
		})
	}
	// Text before the first NAME= is an entry of its own, which Validate names.
	env := append(slices.Clone(base), "HERALD_REMOTE_REDIS=redis://x:1,eu=redis://y:2")
	if _, err := LoadConfig(flagSet(t), func() []string { return env }); err == nil || !strings.Contains(err.Error(), `"redis://x:1"`) {
		t.Errorf("a value without NAME= must be refused by name, got %v", err)
	}
}

func TestRemoteRedisErrorsHidePasswords(t *testing.T) {
	for _, v := range []string{
		"redis://:s3cret@h:1",                   // no NAME=
		"Bad_Name=redis://:s3cret@h:1",          // bad region name
		"eu=redis+sentinel://u:s3cret@h:1",      // no master name
		"eu=rediss://user:s3cret@h:1/0?bogus=1", // unknown option
	} {
		env := []string{"HERALD_REGION=us", "HERALD_REDIS=redis://127.0.0.1:6390", "HERALD_DEV=true"}
		_, err := LoadConfig(flagSet(t, "--remote-redis", v), func() []string { return env })
		if err == nil {
			t.Errorf("%q: accepted", v)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: error repeats the password: %v", v, err)
		}
	}
}
