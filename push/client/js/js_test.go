package js

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireTool returns the path of a tool; a missing one fails the test
// under CI (make deps installs it) and skips it elsewhere, saying why.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (make deps installs it)", name)
		}
		t.Skipf("%s not installed; run make deps", name)
	}
	return p
}

// TestJSClient runs the JS client's own tests (node --test): unit tests,
// then real Chromium through playwright-core against real herald and
// redis-server processes (kill -9 resume, region evacuation, token
// refresh, reset, reload, and the pages). Screenshots land in
// HERALD_TEST_OUT (default bin/test-artifacts/js).
func TestJSClient(t *testing.T) {
	if testing.Short() {
		t.Skip("browser and multi-process tests are not -short tests")
	}
	node := requireTool(t, "node")
	requireTool(t, "chromium")
	requireTool(t, "redis-server")
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("push/client/js/node_modules is missing: make deps runs npm ci there")
		}
		t.Skip("push/client/js/node_modules is missing: run make deps (npm ci in push/client/js)")
	}
	repo, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "herald")
	build := exec.Command("go", "build", "-o", bin, "./cmd/herald")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/herald: %v\n%s", err, out)
	}
	files, err := filepath.Glob(filepath.Join("test", "*.test.mjs"))
	if err != nil || len(files) < 8 {
		t.Fatalf("test files %v (%v): want the unit, types, publish, sdk, token, region, ws and pages tests", files, err)
	}
	out := os.Getenv("HERALD_TEST_OUT")
	if out == "" {
		out = filepath.Join(repo, "bin", "test-artifacts", "js")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{"--test", "--test-concurrency=1", "--test-reporter=tap"}, files...)...)
	cmd.Env = append(os.Environ(), "HERALD_BIN="+bin, "HERALD_TEST_OUT="+out)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	runErr := cmd.Run()
	// The summary and the tests' own diagnostics (counts of events lost,
	// duplicated, reconnects) go to the log either way.
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "not ok ") || strings.HasPrefix(l, "# ") && !strings.HasPrefix(l, "# Subtest") {
			t.Log(l)
		}
	}
	t.Logf("node --test took %s; screenshots in %s", time.Since(start).Round(time.Second), out)
	if runErr != nil {
		t.Fatalf("node --test: %v\n%s", runErr, tailLines(buf.String(), 150))
	}
	if res := buf.String(); !strings.Contains(res, "\n# fail 0\n") || !strings.Contains(res, "\n# skipped 0\n") {
		t.Fatalf("node --test did not run every test without failure or skip:\n%s", tailLines(buf.String(), 40))
	}
}

func tailLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-n):], "\n")
}

// TestPagesServeEmbeddedFiles: the pages render with their CSP and the
// assets they load are served with JavaScript and CSS types.
func TestPagesServeEmbeddedFiles(t *testing.T) {
	for _, name := range []string{PageDemo, PageLogs, PageStatus} {
		h, err := PageHandler(name, PageInfo{Version: "v-test"})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		body := rec.Body.String()
		if rec.Code != 200 || !strings.Contains(body, `content="v-test"`) || !strings.Contains(body, AssetPrefix+"pages/"+name+".js") {
			t.Fatalf("%s: %d\n%s", name, rec.Code, body)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Fatalf("%s: CSP %q", name, csp)
		}
	}
	a := Assets()
	for path, ctype := range map[string]string{
		AssetPrefix + "src/herald.js":     "text/javascript",
		AssetPrefix + "src/cursor.js":     "text/javascript",
		AssetPrefix + "pages/style.css":   "text/css",
		AssetPrefix + "pages/status.js":   "text/javascript",
		AssetPrefix + "pages/":            "",
		AssetPrefix + "pages/demo.html":   "",
		AssetPrefix + "../../web.go":      "",
		AssetPrefix + "src/missing.js":    "",
		AssetPrefix + "src/herald.d.ts":   "",
		AssetPrefix + "node_modules/x.js": "",
	} {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		switch {
		case ctype == "" && path == AssetPrefix+"src/herald.d.ts":
			if rec.Code != 200 {
				t.Errorf("%s: %d, want the type declarations", path, rec.Code)
			}
		case ctype == "":
			if rec.Code != http.StatusNotFound && rec.Code != http.StatusMovedPermanently {
				t.Errorf("%s: %d, want 404", path, rec.Code)
			}
		case rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), ctype):
			t.Errorf("%s: %d %q, want 200 %s", path, rec.Code, rec.Header().Get("Content-Type"), ctype)
		}
	}
}
