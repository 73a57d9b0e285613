package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// runCLI runs the herald command line in process with its own environment.
func runCLI(t *testing.T, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCommand(func() []string { return env })
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A misspelt key used to start a node with the default silently
// (issue #23); every unknown key is now refused with its file and line,
// all of them at once.
func TestConfigRefusesUnknownKeys(t *testing.T) {
	file := writeFile(t, "herald.yaml", `dev: true
retension:
  default: {max_len: 10}
limits:
  max_evnt_bytes: 5
auth:
  api_keys:
    - {id: a, hash: "sha256:x", publsh: ["t"]}
protection:
  ingress:
    tenants: {acme: 5}
telemetry:
  otlp: {headers: {x-key: v}, timeot: 1s}
  node: n1
`)
	env := []string{"HERALD_FOO=1", "HERALD_LIMITS_MAX_EVENT_BYTES=7", "HERALD_TOKEN=client-side", "HERALD_PROTECTION__INGRESS__TENANTS__ACME=3"}
	_, err := LoadConfig(flagSet(t, "--config", file), func() []string { return env })
	if err == nil {
		t.Fatal("unknown keys accepted")
	}
	for _, want := range []string{
		file + `:2:1: unknown key "retension" (did you mean "retention"?)`,
		file + `:5:3: unknown key "limits.max_evnt_bytes" (did you mean "limits.max_event_bytes"?)`,
		file + `:8:33: unknown key "auth.api_keys[0].publsh"`,
		file + `:13:31: unknown key "telemetry.otlp.timeot"`,
		file + `:14:3: unknown key "telemetry.node" (the node sets it from node_name)`,
		`environment HERALD_FOO: unknown key "foo"`,
		`environment HERALD_LIMITS_MAX_EVENT_BYTES: unknown key "limits_max_event_bytes" (did you mean "limits.max_event_bytes"?)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// Free-form map keys (tenants, OTLP headers) and HERALD_TOKEN are not
	// configuration typos.
	for _, bad := range []string{"acme", "x-key", "HERALD_TOKEN"} {
		if strings.Contains(err.Error(), bad) {
			t.Errorf("%s reported: %v", bad, err)
		}
	}
	if n := len(leafErrors(err)); n != 7 {
		t.Errorf("%d problems, want 7: %v", n, err)
	}
}

func TestConfigNamesDecodeErrorLines(t *testing.T) {
	file := writeFile(t, "herald.yaml", "dev: true\nlimits:\n  max_event_bytes: lots\nstream:\n  heartbeat: often\n")
	_, err := LoadConfig(flagSet(t, "--config", file), func() []string { return nil })
	for _, want := range []string{file + ":3: 'limits.max_event_bytes'", file + ":5: 'stream.heartbeat'"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

func TestCheckConfigCommand(t *testing.T) {
	good := writeFile(t, "good.yaml", "dev: true\nregion: eu-west\nretention:\n  default: {max_len: 10, max_age: 1h}\n")
	out, _, err := runCLI(t, nil, "checkconfig", "--config", good)
	if err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("good file: %q %v", out, err)
	}
	// --print writes a file the loader takes back unchanged.
	printed, _, err := runCLI(t, nil, "checkconfig", "--config", good, "--print")
	if err != nil {
		t.Fatal(err)
	}
	again := writeFile(t, "printed.yaml", printed)
	reprinted, _, err := runCLI(t, nil, "checkconfig", "--config", again, "--print")
	if err != nil || reprinted != printed {
		t.Fatalf("printed configuration does not load back the same: %v\n%s\n---\n%s", err, printed, reprinted)
	}
	bad := writeFile(t, "bad.yaml", "retension: {default: {max_len: 10}}\nregion: Not_A_Region\nlog_level: loud\n")
	_, _, err = runCLI(t, []string{"HERALD_LISENT=x"}, "checkconfig", "--config", bad)
	if err == nil {
		t.Fatal("bad file accepted")
	}
	msg := err.Error()
	// Every problem, not the first: the typo, the env typo, two invalid
	// values and the missing auth (no --dev).
	for _, want := range []string{"5 problem(s)", "bad.yaml:1:1: unknown key \"retension\"", "HERALD_LISENT", "region", "log_level", "auth"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

// checkconfig --print shows defaults + file + env as YAML, with every
// secret the configuration can hold redacted.
func TestCheckConfigPrintRedactsSecrets(t *testing.T) {
	const hash = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	file := writeFile(t, "herald.yaml", `dev: true
redis: redis://user:redispw@127.0.0.1:6390/0
gossip_key: Z29zc2lwLWtleS1nb3NzaXAta2V5LWdvc3NpcC1rZXk=
gossip_old_keys: [b2xkLWtleS1vbGQta2V5LW9sZC1rZXktb2xkLWtleTE=]
wan_key: d2FuLWtleS13YW4ta2V5LXdhbi1rZXktd2FuLWtleTE=
session_key: c2Vzc2lvbi1rZXktc2Vzc2lvbi1rZXktc2Vzc2lvbg==
session_old_keys: [b2xkLXNlc3Npb24ta2V5LW9sZC1zZXNzaW9uLWtleQ==]
auth:
  api_keys: [{id: billing, hash: "`+hash+`", publish: ["orders.*"]}]
telemetry:
  otlp: {endpoint: "https://otel:otlppw@collector:4318", headers: {x-api-key: headersecret}}
retention:
  default: {max_age: 24h}
`)
	env := []string{
		"HERALD_REGION=us-east",
		"HERALD_REMOTE_REDIS=eu=redis+sentinel://:remotepw@s1:26379,s2:26379/herald?sentinel_password=sentinelpw",
	}
	out, _, err := runCLI(t, env, "checkconfig", "--config", file, "--print")
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"redispw", "Z29zc2lw", "b2xkLWtl", "d2FuLWtl", "c2Vzc2lv", "b2xkLXNl", "1111111111", "otlppw", "headersecret", "remotepw", "sentinelpw"} {
		if strings.Contains(out, secret) {
			t.Errorf("--print shows secret %q:\n%s", secret, out)
		}
	}
	var got struct {
		Region    string `yaml:"region"`
		Redis     string `yaml:"redis"`
		GossipKey string `yaml:"gossip_key"`
		Admin     string `yaml:"admin_listen"`
		Retention struct {
			Default struct {
				MaxAge string `yaml:"max_age"`
				MaxLen int    `yaml:"max_len"`
			} `yaml:"default"`
		} `yaml:"retention"`
	}
	if err := yaml.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--print is not YAML: %v\n%s", err, out)
	}
	if got.Region != "us-east" || got.Redis != "redis://user:xxxxx@127.0.0.1:6390/0" || got.GossipKey != redacted ||
		got.Admin != DefaultConfig().AdminListen || got.Retention.Default.MaxAge != "24h0m0s" || got.Retention.Default.MaxLen != 100000 {
		t.Errorf("effective configuration: %+v", got)
	}
}

// herald --version used to fail with "unknown flag".
func TestVersionFlag(t *testing.T) {
	byFlag, _, err := runCLI(t, nil, "--version")
	if err != nil {
		t.Fatal(err)
	}
	byCmd, _, err := runCLI(t, nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	if byFlag != byCmd {
		t.Errorf("--version %q, version %q", byFlag, byCmd)
	}
	want := regexp.MustCompile(`^herald \S+\ncommit: \S+.*\ngo: ` + regexp.QuoteMeta(runtime.Version()) + `\n$`)
	if !want.MatchString(byFlag) {
		t.Errorf("version output %q", byFlag)
	}
}
