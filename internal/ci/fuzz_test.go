package ci_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// root is the module root, two levels up from this package.
func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fuzzTargets lists "<dir> <Name>" for every fuzz target under dir by
// go/parser and go test's own rules (Fuzz then nothing or a non-lower-case
// rune, one *testing.F parameter): an oracle independent of fuzz.sh's grep.
func fuzzTargets(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != dir && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !isFuzzName(fn.Name.Name) || len(fn.Type.Params.List) != 1 {
				continue
			}
			star, ok := fn.Type.Params.List[0].Type.(*ast.StarExpr)
			if sel, ok2 := star.X.(*ast.SelectorExpr); !ok || !ok2 || sel.Sel.Name != "F" {
				continue
			}
			rel, err := filepath.Rel(dir, filepath.Dir(path))
			if err != nil {
				return err
			}
			out = append(out, "./"+filepath.ToSlash(rel)+" "+fn.Name.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range out {
		out[i] = strings.Replace(s, "./. ", ". ", 1)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func isFuzzName(name string) bool {
	rest, ok := strings.CutPrefix(name, "Fuzz")
	if !ok {
		return false
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return rest == "" || !unicode.IsLower(r)
}

// fuzzScript runs .ci/fuzz.sh from a copy placed in dir (it works on the
// tree around it) and returns its standard output and error and whether it
// exited 0.
func fuzzScript(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, ok bool) {
	t.Helper()
	script := filepath.Join(root(t), ".ci", "fuzz.sh")
	if dir != root(t) {
		b, err := os.ReadFile(script)
		if err != nil {
			t.Fatal(err)
		}
		script = filepath.Join(dir, ".ci", "fuzz.sh")
		if err := os.MkdirAll(filepath.Dir(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(script, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("run fuzz.sh: %v", err)
	}
	return out.String(), errb.String(), err == nil
}

// TestFuzzDiscoveryFindsEveryTarget: fuzz.sh --list names exactly the fuzz
// targets go/parser finds in the tree, and there are some.
func TestFuzzDiscoveryFindsEveryTarget(t *testing.T) {
	want := fuzzTargets(t, root(t))
	if len(want) == 0 {
		t.Fatal("go/parser found no fuzz target in the tree")
	}
	out, stderr, ok := fuzzScript(t, root(t), nil, "--list")
	if !ok {
		t.Fatalf("fuzz.sh --list failed:\n%s%s", out, stderr)
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); !slices.Equal(got, want) {
		t.Fatalf("fuzz.sh --list:\n%s\nwant (go/parser):\n%s", out, strings.Join(want, "\n"))
	}
}

// TestFuzzScriptFailsLoudly runs fuzz.sh on small trees of its own: no
// target at all, and testdata/fuzzprobe with a target the fuzzer breaks
// within a second, one that holds, and one go test cannot see (build-tagged
// out). Each must fail the run; the
// broken one must print its failing input and the replay command.
func TestFuzzScriptFailsLoudly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the fuzzer")
	}
	t.Run("no targets", func(t *testing.T) {
		out, stderr, ok := fuzzScript(t, t.TempDir(), nil)
		if ok || !strings.Contains(stderr, "discovery found no fuzz targets") {
			t.Fatalf("exit 0 = %v, output:\n%s%s", ok, out, stderr)
		}
	})

	// testdata/fuzzprobe/probe: FuzzBreaks, FuzzHolds, and FuzzGhost
	// behind a build tag no build sets.
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "fuzzprobe"))); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, ok := fuzzScript(t, dir, []string{"FUZZTIME=5s", "GOWORK=off", "GOFLAGS="})
	out := stdout + stderr
	t.Logf("fuzz.sh output:\n%s", out)
	if ok {
		t.Fatal("fuzz.sh exited 0")
	}
	for _, want := range []string{
		"fuzz: 3 targets",
		"--- fuzz ok ./probe FuzzHolds",
		"--- FUZZ FAIL ./probe FuzzBreaks",
		"fuzz: failing input ./probe/testdata/fuzz/FuzzBreaks/",
		"go test fuzz v1",
		"fuzz: replay with: go test -run '^FuzzBreaks/",
		"fuzz: ./probe FuzzGhost: go test found no such fuzz target",
		"fuzz: 1 passed, 2 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// fuzz.sh tells Go 1.26's -fuzztime boundary failure (go.dev/issue/75804:
// a bare "context deadline exceeded", nothing found) from a real failure,
// which it must never retry away.
func TestFuzzScriptClassifiesDeadlineFlakes(t *testing.T) {
	cases := []struct{ name, log, want string }{
		{"boundary flake", `fuzz: elapsed: 3s, execs: 26493 (8829/sec), new interesting: 4 (total: 58)
fuzz: elapsed: 4s, execs: 26493 (0/sec), new interesting: 4 (total: 58)
--- FAIL: FuzzDecode (4.02s)
    context deadline exceeded
FAIL
exit status 1
FAIL	example.com/p	4.031s
`, "deadline-only"},
		{"failing input written", `--- FAIL: FuzzDecode (0.02s)
    --- FAIL: FuzzDecode (0.00s)
        decode_test.go:40: bad
    Failing input written to testdata/fuzz/FuzzDecode/abc
    context deadline exceeded
FAIL
`, "failure"},
		{"another error under the FAIL", `--- FAIL: FuzzDecode (4.02s)
    something else went wrong
    context deadline exceeded
FAIL
`, "failure"},
		{"panic", `panic: runtime error: index out of range [3] with length 3
--- FAIL: FuzzDecode (4.02s)
    context deadline exceeded
`, "failure"},
		{"hung worker", `fuzzing process hung or terminated unexpectedly: exit status 2
--- FAIL: FuzzDecode (4.02s)
    context deadline exceeded
`, "failure"},
		{"no deadline at all", `--- FAIL: FuzzDecode (0.02s)
    decode_test.go:40: bad
FAIL
`, "failure"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "log")
			if err := os.WriteFile(log, []byte(c.log), 0o644); err != nil {
				t.Fatal(err)
			}
			out, stderr, ok := fuzzScript(t, root(t), nil, "--classify", log)
			if got := strings.TrimSpace(out); !ok || got != c.want {
				t.Fatalf("--classify = %q (exit 0 = %v, stderr %q), want %q", got, ok, stderr, c.want)
			}
		})
	}
}
