package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// No container engine runs here, so the Dockerfile is checked by parsing it.
// BuildKit's own parser (github.com/moby/buildkit/frontend/dockerfile/parser)
// would force newer grpc/genproto modules onto the whole module, so this is a
// small line-based parser of the subset Dockerfiles use: parser directives,
// comments, backslash continuations, JSON (exec) and shell forms. Heredocs
// are refused rather than half-parsed.

type instruction struct {
	line  int
	cmd   string // upper case
	flags []string
	args  string // the rest, continuations joined
}

var knownInstructions = []string{"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM",
	"HEALTHCHECK", "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

func parseDockerfile(src string) ([]instruction, error) {
	var out []instruction
	var cur strings.Builder
	start := 0
	inDirectives := true
	lines := strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n")
	for i, raw := range lines {
		n := i + 1
		trimmed := strings.TrimSpace(raw)
		if strings.HasPrefix(trimmed, "#") {
			if inDirectives && cur.Len() == 0 {
				if m := regexp.MustCompile(`^#\s*(\w+)\s*=\s*(.*)$`).FindStringSubmatch(trimmed); m != nil {
					if strings.EqualFold(m[1], "escape") && m[2] != `\` {
						return nil, fmt.Errorf("line %d: escape directive %q not supported by this checker", n, m[2])
					}
					continue
				}
			}
			inDirectives = false
			continue // comments (also inside continuations) are dropped
		}
		inDirectives = false
		if trimmed == "" {
			continue
		}
		if cur.Len() == 0 {
			start = n
		} else {
			cur.WriteByte(' ')
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSpace(strings.TrimSuffix(trimmed, `\`)))
			continue
		}
		cur.WriteString(trimmed)
		ins, err := splitInstruction(start, cur.String())
		if err != nil {
			return nil, err
		}
		out = append(out, ins)
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: file ends inside a continuation", start)
	}
	return out, nil
}

func splitInstruction(line int, s string) (instruction, error) {
	cmd, rest, _ := strings.Cut(s, " ")
	ins := instruction{line: line, cmd: strings.ToUpper(cmd)}
	if !slices.Contains(knownInstructions, ins.cmd) {
		return ins, fmt.Errorf("line %d: unknown instruction %q", line, cmd)
	}
	rest = strings.TrimSpace(rest)
	if strings.Contains(rest, "<<") && (ins.cmd == "RUN" || ins.cmd == "COPY") {
		return ins, fmt.Errorf("line %d: heredocs are not supported by this checker", line)
	}
	for strings.HasPrefix(rest, "--") {
		flag, r, _ := strings.Cut(rest, " ")
		ins.flags = append(ins.flags, flag)
		rest = strings.TrimSpace(r)
	}
	ins.args = rest
	return ins, nil
}

// execForm decodes a JSON exec-form argument list, or fails.
func execForm(args string) ([]string, error) {
	var v []string
	if !strings.HasPrefix(args, "[") {
		return nil, fmt.Errorf("shell form %q, want exec (JSON) form", args)
	}
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		return nil, fmt.Errorf("exec form %q: %v", args, err)
	}
	return v, nil
}

type stage struct {
	name, base string
	ins        []instruction
}

func stages(ins []instruction) (globalArgs []string, st []stage) {
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{base: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			st = append(st, s)
			continue
		}
		if len(st) == 0 {
			if in.cmd == "ARG" {
				name, _, _ := strings.Cut(in.args, "=")
				globalArgs = append(globalArgs, name)
			}
			continue
		}
		st[len(st)-1].ins = append(st[len(st)-1].ins, in)
	}
	return globalArgs, st
}

func TestDockerfileParserRejects(t *testing.T) {
	for _, bad := range []string{
		"FROM x\nRUN echo \\\n",
		"FROM x\nRUNN echo\n",
		"FROM x\nRUN <<EOF\necho\nEOF\n",
	} {
		if _, err := parseDockerfile(bad); err == nil {
			t.Errorf("parseDockerfile(%q) accepted", bad)
		}
	}
	ins, err := parseDockerfile("# syntax=docker/dockerfile:1\n# comment\nFROM a AS b\nRUN x \\\n  # inner comment\n  y\n")
	if err != nil || len(ins) != 2 || ins[1].args != "x y" {
		t.Fatalf("continuation parse = %+v, %v", ins, err)
	}
}

func TestDockerfileLint(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	ins, err := parseDockerfile(string(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	globalArgs, st := stages(ins)
	if len(st) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(st))
	}
	build, final := st[0], st[len(st)-1]
	if build.name == "" {
		t.Errorf("build stage is unnamed (COPY --from should name it)")
	}

	// Bases: pinned tags (never implicit latest), from documented ARGs.
	for _, s := range st {
		if m := regexp.MustCompile(`^\$\{?(\w+)\}?$`).FindStringSubmatch(s.base); m != nil && !slices.Contains(globalArgs, m[1]) {
			t.Errorf("FROM %s: ARG %s is not declared before the first FROM", s.base, m[1])
		}
		base := baseOf(ins, s.base)
		if !strings.Contains(base, ":") && !strings.Contains(base, "@sha256:") || strings.HasSuffix(base, ":latest") {
			t.Errorf("FROM %s (%s): pin a tag or digest, never latest", s.base, base)
		}
	}
	if !strings.Contains(baseOf(ins, build.base), "golang:1.26") {
		t.Errorf("builder %s: want golang:1.26 (go.mod's go line)", baseOf(ins, build.base))
	}
	if fb := baseOf(ins, final.base); !strings.Contains(fb, "distroless/static") && fb != "scratch" {
		t.Errorf("runtime base %s: want distroless static or scratch", fb)
	}

	// Static, trimmed, versioned build of ./cmd/herald.
	var buildRun string
	for _, in := range build.ins {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			buildRun = in.args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.Version=${VERSION} -X main.Commit=${REVISION}"`, "./cmd/herald"} {
		if !strings.Contains(buildRun, want) {
			t.Errorf("go build step %q lacks %s", buildRun, want)
		}
	}
	declared := map[string]bool{}
	for _, in := range build.ins {
		if in.cmd == "ARG" || in.cmd == "ENV" {
			name, _, _ := strings.Cut(in.args, "=")
			declared[strings.Fields(name)[0]] = true
		}
	}
	for _, m := range regexp.MustCompile(`\$\{(\w+)(:-[^}]*)?\}`).FindAllStringSubmatch(buildRun, -1) {
		if !declared[m[1]] {
			t.Errorf("go build uses ${%s}, not declared (ARG/ENV) in the build stage", m[1])
		}
	}

	// No remote ADD anywhere; the runtime stage only copies the binary from the build.
	for _, in := range ins {
		if in.cmd == "ADD" {
			t.Errorf("line %d: ADD %s: use COPY (and never fetch URLs at build time)", in.line, in.args)
		}
		if in.cmd == "MAINTAINER" {
			t.Errorf("line %d: MAINTAINER is deprecated; use a LABEL", in.line)
		}
	}
	var user, entry, cmd string
	var exposed []string
	labels := map[string]bool{}
	for _, in := range final.ins {
		switch in.cmd {
		case "RUN":
			t.Errorf("line %d: RUN in the runtime stage (distroless has no shell)", in.line)
		case "COPY":
			if !slices.Contains(in.flags, "--from="+build.name) {
				t.Errorf("line %d: runtime COPY %s not from the build stage", in.line, in.args)
			}
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "CMD":
			cmd = in.args
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "LABEL":
			for _, m := range regexp.MustCompile(`([\w.-]+)=`).FindAllStringSubmatch(in.args, -1) {
				labels[m[1]] = true
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("runtime USER %q: want a non-root user", user)
	} else if uid != "65532" && uid != "nonroot" {
		t.Errorf("runtime USER %q: want 65532 (the chart's runAsUser)", user)
	}
	if v, err := execForm(entry); err != nil || !slices.Equal(v, []string{"/herald"}) {
		t.Errorf("ENTRYPOINT %s: want [\"/herald\"] (%v)", entry, err)
	}
	if v, err := execForm(cmd); err != nil || !slices.Equal(v, []string{"serve"}) {
		t.Errorf("CMD %s: want [\"serve\"] (%v)", cmd, err)
	}
	for _, p := range []string{"8080/tcp", "8081/tcp", "7946/tcp", "7946/udp"} {
		if !slices.Contains(exposed, p) && !(strings.HasSuffix(p, "/tcp") && slices.Contains(exposed, strings.TrimSuffix(p, "/tcp"))) {
			t.Errorf("EXPOSE lacks %s (got %v)", p, exposed)
		}
	}
	for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source",
		"org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.created"} {
		if !labels[l] {
			t.Errorf("runtime stage lacks label %s", l)
		}
	}

	// Every ARG is documented in the header comment.
	header := string(raw[:strings.Index(string(raw), "\nARG ")])
	for _, in := range ins {
		if in.cmd != "ARG" {
			continue
		}
		name, _, _ := strings.Cut(in.args, "=")
		if !strings.Contains(header, name) {
			t.Errorf("ARG %s is not documented in the header comment", name)
		}
	}
}

// baseOf resolves FROM ${ARG} to the ARG's default.
func baseOf(ins []instruction, base string) string {
	if m := regexp.MustCompile(`^\$\{?(\w+)\}?$`).FindStringSubmatch(base); m != nil {
		for _, in := range ins {
			if in.cmd == "ARG" && strings.HasPrefix(in.args, m[1]+"=") {
				return strings.TrimPrefix(in.args, m[1]+"=")
			}
		}
	}
	return base
}
