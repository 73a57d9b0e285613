package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

var updateConfigReference = flag.Bool("update-config-reference", false, "rewrite docs/configuration.md from the config structs")

// configReferencePath is the generated reference, relative to cmd/herald.
const configReferencePath = "../../docs/configuration.md"

// TestConfigReference fails when docs/configuration.md differs from what the
// config structs (koanf tags, doc comments, defaults, serve flags) produce:
// the reference cannot drift. `make config-docs` (go generate ./cmd/herald)
// rewrites it.
func TestConfigReference(t *testing.T) {
	got, err := configReference()
	if err != nil {
		t.Fatal(err)
	}
	if *updateConfigReference {
		if err := os.WriteFile(configReferencePath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(configReferencePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date: run `make config-docs` (go generate ./cmd/herald) and commit it", configReferencePath)
	}
}

// typeDocs holds the doc comments of the config structs and their fields,
// read from the source with go/ast ("pkgpath.Type" and "pkgpath.Type.Field").
type typeDocs map[string]string

// configSourceDirs maps the package paths of the config types to their
// directories (relative to cmd/herald).
var configSourceDirs = map[string]string{
	"main": ".",
	"github.com/heraldpush/herald/cmd/herald":    ".",
	"github.com/heraldpush/herald/push":          "../../push",
	"github.com/heraldpush/herald/push/auth":     "../../push/auth",
	"github.com/heraldpush/herald/push/ingest":   "../../push/ingest",
	"github.com/heraldpush/herald/push/server":   "../../push/server",
	"github.com/heraldpush/herald/push/node":     "../../push/node",
	"github.com/heraldpush/herald/push/stream":   "../../push/stream",
	"github.com/heraldpush/herald/observability": "../../observability",
	"github.com/heraldpush/herald/resilience":    "../../resilience",
}

func readTypeDocs() (typeDocs, error) {
	docs := typeDocs{}
	fset := token.NewFileSet()
	for pkg, dir := range configSourceDirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
			if err != nil {
				return nil, err
			}
			for _, decl := range file.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.TYPE {
					continue
				}
				for _, spec := range gd.Specs {
					ts := spec.(*ast.TypeSpec)
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					doc := ts.Doc
					if doc == nil && len(gd.Specs) == 1 {
						doc = gd.Doc
					}
					docs[pkg+"."+ts.Name.Name] = docText(doc)
					for _, fld := range st.Fields.List {
						text := docText(fld.Doc)
						if text == "" {
							text = docText(fld.Comment)
						}
						for _, n := range fld.Names {
							docs[pkg+"."+ts.Name.Name+"."+n.Name] = text
						}
					}
				}
			}
		}
	}
	return docs, nil
}

func docText(g *ast.CommentGroup) string {
	if g == nil {
		return ""
	}
	return strings.Join(strings.Fields(g.Text()), " ")
}

func (d typeDocs) field(owner reflect.Type, name string) string {
	return d[owner.PkgPath()+"."+owner.Name()+"."+name]
}

func (d typeDocs) typ(t reflect.Type) string { return d[t.PkgPath()+"."+t.Name()] }

// refRow is one key of the reference.
type refRow struct {
	key, typ, flag, env, def, doc string
}

func configReference() ([]byte, error) {
	docs, err := readTypeDocs()
	if err != nil {
		return nil, err
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	registerServeFlags(fs)
	flags := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) {
		if k := flagKey(f.Name); k != "" {
			flags[k] = "`--" + f.Name + "`"
		}
	})
	root := configKeys()
	def := reflect.ValueOf(DefaultConfig())

	var b bytes.Buffer
	b.WriteString(`# Configuration reference

<!-- Generated from the config structs (koanf tags, doc comments, DefaultConfig,
the serve flags) by ` + "`make config-docs`" + ` (go generate ./cmd/herald).
Do not edit: TestConfigReference fails when this file differs. -->

Sources, later wins: built-in defaults → YAML file (` + "`--config`" + ` /
` + "`HERALD_CONFIG`" + `) → environment ` + "`HERALD_<KEY>`" + ` (nested keys joined by ` + "`__`" + `,
e.g. ` + "`HERALD_LIMITS__MAX_EVENT_BYTES`" + `; list values comma-separated) →
command-line flags of ` + "`herald serve`" + `. An unknown key in the file or an unknown
` + "`HERALD_*`" + ` variable is an error (` + "`HERALD_TOKEN`" + ` and ` + "`HERALD_API_KEY`" + `, read
by the client commands, are allowed). The result is validated once; every
problem is reported, naming its key (and its line in the file).
` + "`herald checkconfig --config F`" + ` runs the same checks without starting a node,
and ` + "`--print`" + ` shows the effective configuration with secrets redacted.

Durations are Go durations (` + "`1m30s`, `250ms`" + `). Keys marked **secret** are
redacted by ` + "`checkconfig --print`" + `; URL passwords (in ` + "`redis`, `remote_redis`" + `,
OTLP endpoints) are redacted wherever they appear.
`)
	var top []refRow
	type section struct {
		title, doc string
		rows       []refRow
	}
	var sections []section
	for _, f := range root.fields {
		if f.node.kind == kindSection {
			var rows []refRow
			if err := refRows(&rows, f.node, f.name, def.FieldByIndex(f.index), docs, flags); err != nil {
				return nil, err
			}
			doc := docs.field(f.owner, f.field)
			if doc == "" {
				doc = docs.typ(f.node.typ)
			}
			sections = append(sections, section{f.name, doc, rows})
			continue
		}
		if err := refField(&top, f, "", def, docs, flags); err != nil {
			return nil, err
		}
	}
	if m := docs["!missing"]; m != "" {
		return nil, fmt.Errorf("config fields without a doc comment (document them):%s", m)
	}
	writeTable(&b, "Top-level keys", "", top)
	for _, s := range sections {
		writeTable(&b, "`"+s.title+"`", s.doc, s.rows)
	}
	return b.Bytes(), nil
}

// refRows adds the rows of every key under section n (at path, default
// value v, invalid for list elements).
func refRows(rows *[]refRow, n *keyNode, path string, v reflect.Value, docs typeDocs, flags map[string]string) error {
	for _, f := range n.fields {
		if err := refField(rows, f, path, v, docs, flags); err != nil {
			return err
		}
	}
	return nil
}

func refField(rows *[]refRow, f keyField, path string, parent reflect.Value, docs typeDocs, flags map[string]string) error {
	key := joinKey(path, f.name)
	var v reflect.Value
	if parent.IsValid() {
		v = parent.FieldByIndex(f.index)
	}
	doc := docs.field(f.owner, f.field)
	if doc == "" && f.node.kind != kindSection {
		docs["!missing"] += fmt.Sprintf("\n%s (%s.%s)", key, f.owner, f.field)
	}
	if f.node.kind == kindSection {
		return refRows(rows, f.node, key, v, docs, flags)
	}
	row := refRow{key: "`" + key + "`", typ: typeName(f.node), flag: flags[key], doc: plainDoc(f.field, doc)}
	if isSecretKey(key) {
		row.doc = "**secret.** " + row.doc
	}
	if !strings.Contains(key, "[]") {
		switch f.node.kind {
		case kindList:
			row.env = "(file only)"
		case kindMap:
			row.env = "`" + envName(key) + "__<KEY>`"
		default:
			row.env = "`" + envName(key) + "`"
			if listKeys[key] || key == "remote_redis" {
				row.env += " (comma list)"
			}
		}
	}
	if v.IsValid() {
		row.def = "`" + defaultText(v) + "`"
	}
	*rows = append(*rows, row)
	if f.node.kind == kindList {
		return refRows(rows, f.node.elem, key+"[]", reflect.Value{}, docs, flags)
	}
	return nil
}

// plainDoc drops the Go field name a doc comment starts with ("Listen is
// the public API address" reads "The public API address").
func plainDoc(field, doc string) string {
	for _, verb := range []string{" is ", " are "} {
		if rest, ok := strings.CutPrefix(doc, field+verb); ok && rest != "" {
			return strings.ToUpper(rest[:1]) + rest[1:]
		}
	}
	return doc
}

func typeName(n *keyNode) string {
	t := n.typ
	switch {
	case n.kind == kindList:
		return "list of entries"
	case n.kind == kindMap:
		return "map of " + typeName(n.elem)
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list of " + t.Elem().Kind().String()
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "int"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}

func defaultText(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.String:
		return fmt.Sprintf("%q", v.String())
	case v.Kind() == reflect.Slice:
		return "[]"
	case v.Kind() == reflect.Map:
		return "{}"
	}
	return fmt.Sprint(v.Interface())
}

func writeTable(b *bytes.Buffer, title, doc string, rows []refRow) {
	fmt.Fprintf(b, "\n## %s\n\n", title)
	if doc != "" {
		fmt.Fprintf(b, "%s\n\n", doc)
	}
	b.WriteString("| key | type | flag | environment | default | meaning |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		cells := []string{r.key, r.typ, r.flag, r.env, r.def, r.doc}
		for i, c := range cells {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
	}
}

// Every serve flag sets a configuration key the reference lists.
func TestServeFlagsAreConfigKeys(t *testing.T) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	registerServeFlags(fs)
	var keys []string
	configKeys().leafPaths("", &keys)
	fs.VisitAll(func(f *pflag.Flag) {
		if k := flagKey(f.Name); k != "" && !slices.Contains(keys, k) {
			t.Errorf("--%s sets %q, not a configuration key", f.Name, k)
		}
	})
}
