package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The alert rules are checked and unit-tested with promtool (the rules test
// format: input series, then which alerts fire when, with which labels and
// annotations). promtool cannot be `go install`ed here and takes ~9 minutes
// to build, so `make deps` (.ci/deps.sh) copies it out of Debian's
// prometheus package into $(go env GOPATH)/bin; PATH wins when it has one.
// observability/drift_test.go checks the rule file's metric names and
// structure without promtool.

const (
	alertRulesPath = "prometheus/alerts.yaml"
	alertTestsPath = "prometheus/tests/alerts_test.yaml"
)

// promtool finds promtool on PATH or where .ci/deps.sh puts it, and fails
// the test when there is none.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	var tried string
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		if gopath, _, _ := strings.Cut(strings.TrimSpace(string(out)), string(os.PathListSeparator)); gopath != "" {
			tried = filepath.Join(gopath, "bin", "promtool")
			if fi, err := os.Stat(tried); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return tried
			}
		}
	}
	t.Fatalf("promtool not found on PATH nor at %q: run `make deps` (copies it out of Debian's prometheus package)", tried)
	return ""
}

// runPromtool runs promtool with args and returns its combined output and
// whether it exited 0. Other errors (not started, killed) fail the test.
func runPromtool(t *testing.T, bin string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.Exited() {
			return string(out), false
		}
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), true
}

func TestPrometheusAlertRules(t *testing.T) {
	bin := promtool(t)

	t.Run("check", func(t *testing.T) {
		if out, ok := runPromtool(t, bin, "check", "rules", alertRulesPath); !ok {
			t.Fatalf("promtool check rules %s failed:\n%s", alertRulesPath, out)
		}
	})

	t.Run("unit tests", func(t *testing.T) {
		if out, ok := runPromtool(t, bin, "test", "rules", alertTestsPath); !ok {
			t.Fatalf("promtool test rules %s failed:\n%s", alertTestsPath, out)
		}
	})

	// The unit tests can fail: copies of alerts_test.yaml with one wrong
	// expectation each (rule_files pointed at the real rules) must make
	// promtool exit non-zero and name the alert.
	t.Run("wrong expectations fail", func(t *testing.T) {
		src, err := os.ReadFile(alertTestsPath)
		if err != nil {
			t.Fatal(err)
		}
		rules, err := filepath.Abs(alertRulesPath)
		if err != nil {
			t.Fatal(err)
		}
		base := strings.Replace(string(src), "  - ../alerts.yaml\n", "  - "+rules+"\n", 1)
		if base == string(src) {
			t.Fatalf("%s: rule_files entry ../alerts.yaml not found", alertTestsPath)
		}
		for _, m := range []struct{ name, old, new string }{
			// Firing at 7m although the lag is above 30s only since 3m (for: 5m).
			{"fires before for elapsed",
				"      - eval_time: 8m\n        alertname: HeraldReplicationLagHigh\n        exp_alerts:\n          - ",
				"      - eval_time: 7m\n        alertname: HeraldReplicationLagHigh\n        exp_alerts:\n          - "},
			// A lag of 31s (above the threshold) in a series expected not to fire.
			{"above threshold not expected",
				"origin=\"ap-south\"}'\n        values: '30x11'",
				"origin=\"ap-south\"}'\n        values: '31x11'"},
			{"wrong summary",
				`summary: "Events from us-east lag 1m 5s in eu-west"`,
				`summary: "Events from us-east lag 1m 6s in eu-west"`},
		} {
			t.Run(m.name, func(t *testing.T) {
				if strings.Count(base, m.old) != 1 {
					t.Fatalf("%s: %q must occur exactly once", alertTestsPath, m.old)
				}
				f := filepath.Join(t.TempDir(), "alerts_test.yaml")
				if err := os.WriteFile(f, []byte(strings.Replace(base, m.old, m.new, 1)), 0o644); err != nil {
					t.Fatal(err)
				}
				out, ok := runPromtool(t, bin, "test", "rules", f)
				if ok {
					t.Fatalf("promtool test rules passed with a wrong expectation (%s):\n%s", m.name, out)
				}
				if !strings.Contains(out, "FAILED") || !strings.Contains(out, "alertname: HeraldReplicationLagHigh") {
					t.Errorf("promtool output does not report the failing HeraldReplicationLagHigh test:\n%s", out)
				}
			})
		}
	})

	t.Run("broken rule file fails check", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "alerts.yaml")
		bad := "groups:\n  - name: bad\n    rules:\n      - alert: Broken\n        expr: max by (region) (herald_replication_lag_seconds > 30\n"
		if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		out, ok := runPromtool(t, bin, "check", "rules", f)
		if ok {
			t.Fatalf("promtool check rules accepted an unparsable expression:\n%s", out)
		}
		if !strings.Contains(out, "parse error") {
			t.Errorf("promtool output does not name the parse error:\n%s", out)
		}
	})
}
