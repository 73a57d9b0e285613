package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// exampleConfigs are the example configurations in the repository: the
// README's herald.yaml and the `config:` part of every Helm values file.
func exampleConfigs(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		tb.Fatal(err)
	}
	if _, rest, ok := strings.Cut(string(readme), "Example `herald.yaml`:\n\n```yaml\n"); ok {
		block, _, _ := strings.Cut(rest, "```")
		out = append(out, []byte(block))
	} else {
		tb.Fatal("README.md: no example herald.yaml")
	}
	files, _ := filepath.Glob("../../deploy/helm/herald/values*.yaml")
	ci, _ := filepath.Glob("../../deploy/helm/herald/ci/*.yaml")
	for _, f := range append(files, ci...) {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		var values struct {
			Config map[string]any `yaml:"config"`
		}
		if err := yaml.Unmarshal(b, &values); err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		if values.Config != nil {
			cfg, err := yaml.Marshal(values.Config)
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, cfg)
		}
	}
	return out
}

// The chart's and the README's example configurations hold only known keys.
func TestExampleConfigsKnownKeys(t *testing.T) {
	for i, data := range exampleConfigs(t) {
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		if p := checkYAMLKeys(&doc, configKeys(), nil); len(p) > 0 {
			t.Errorf("example %d: %v\n%s", i, p, data)
		}
	}
}

// FuzzLoadConfig feeds arbitrary files to the loader: it reports problems
// and never panics.
func FuzzLoadConfig(f *testing.F) {
	for _, seed := range exampleConfigs(f) {
		f.Add(seed, "HERALD_DEV=true")
	}
	f.Add([]byte("dev: true\nretension: {default: {max_len: 1}}\nauth: {keys: [{id: a}]}\n"), "HERALD_LIMITS__MAX_EVENT_BYTES=x")
	f.Add([]byte("a: &a [*a]\nlimits: *a\n"), "HERALD_PROTECTION__INGRESS__TENANTS__ACME=2")
	f.Add([]byte("- 1\n- 2\n"), "HERALD_RETENTION__RULES=3")
	f.Fuzz(func(t *testing.T, data []byte, envVar string) {
		const path = "fuzz.yaml"
		env := []string{envVar}
		read := func(p string) ([]byte, error) {
			if p != path {
				t.Fatalf("read %q", p)
			}
			return data, nil
		}
		cfg, err := loadConfig(flagSet(t, "--config", path), func() []string { return env }, read)
		if err == nil {
			if _, err := printConfig(cfg); err != nil {
				t.Fatalf("valid config does not print: %v", err)
			}
		}
	})
}
