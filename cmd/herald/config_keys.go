package main

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// keyKind is the shape a configuration key takes in YAML.
type keyKind int

const (
	kindValue   keyKind = iota // a scalar, or a list of scalars
	kindSection                // a mapping with fixed keys (a struct)
	kindMap                    // a mapping with free keys (map[string]T)
	kindList                   // a sequence of sections ([]struct)
)

// keyNode is one node of the configuration's key tree, derived from the
// koanf tags of Config: the single source of the keys the loader accepts,
// the reference documents and checkconfig --print shows.
type keyNode struct {
	kind keyKind
	// typ is the Go type behind the key (the element type for kindList and
	// kindMap).
	typ reflect.Type
	// fields are a section's keys in declaration order (squashed structs
	// inlined); elem is a list's or a map's element.
	fields []keyField
	elem   *keyNode
}

type keyField struct {
	name  string
	index []int // reflect field index path (through squashed structs)
	node  *keyNode
	// owner is the struct type declaring the field, for its doc comment.
	owner reflect.Type
	field string
}

// notConfigKeys are koanf-tagged fields that the node fills in itself: a
// value in the file or the environment would be silently overwritten, so
// they are refused like any unknown key.
var notConfigKeys = map[string]string{
	"telemetry.version": "the binary's version", "telemetry.node": "node_name",
	"telemetry.region": "region", "telemetry.zone": "zone",
}

// configKeys is the key tree of Config.
func configKeys() *keyNode { return keyTree(reflect.TypeFor[Config](), "") }

var durationType = reflect.TypeFor[time.Duration]()

func keyTree(t reflect.Type, path string) *keyNode {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return &keyNode{kind: kindValue, typ: t}
	case t.Kind() == reflect.Struct:
		n := &keyNode{kind: kindSection, typ: t}
		addFields(n, t, path, nil)
		return n
	case t.Kind() == reflect.Map:
		return &keyNode{kind: kindMap, typ: t, elem: keyTree(t.Elem(), path+".*")}
	case t.Kind() == reflect.Slice && derefStruct(t.Elem()):
		return &keyNode{kind: kindList, typ: t, elem: keyTree(t.Elem(), path+"[]")}
	default:
		return &keyNode{kind: kindValue, typ: t}
	}
}

func derefStruct(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && t != durationType
}

func addFields(n *keyNode, t reflect.Type, path string, index []int) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		idx := append(slices.Clone(index), i)
		if opts == "squash" {
			addFields(n, f.Type, path, idx)
			continue
		}
		if tag == "-" || tag == "" {
			continue
		}
		p := joinKey(path, tag)
		if _, ok := notConfigKeys[p]; ok {
			continue
		}
		n.fields = append(n.fields, keyField{name: tag, index: idx, node: keyTree(f.Type, p), owner: t, field: f.Name})
	}
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (n *keyNode) field(name string) *keyField {
	for i := range n.fields {
		if n.fields[i].name == name {
			return &n.fields[i]
		}
	}
	return nil
}

// leafPaths lists every key path under n ("a.b", "a.rules[].max_len",
// "a.tenants.*"), for suggestions and the reference.
func (n *keyNode) leafPaths(prefix string, out *[]string) {
	switch n.kind {
	case kindSection:
		for _, f := range n.fields {
			f.node.leafPaths(joinKey(prefix, f.name), out)
		}
	default:
		*out = append(*out, prefix)
	}
}

// fileProblem is one problem found in a config file, with its position.
type fileProblem struct {
	line, col int
	msg       string
}

// checkYAMLKeys walks a parsed YAML document against the key tree and
// reports every key that is not a configuration key and every value whose
// shape cannot be one (a scalar where a section is expected), with its line.
// It never stops at the first problem. paths maps every key path found
// ("limits.max_event_bytes", "auth.keys[0].file") to its line, for decode
// errors that name a path.
func checkYAMLKeys(doc *yaml.Node, root *keyNode, paths map[string]int) []fileProblem {
	var out []fileProblem
	if doc == nil || doc.Kind == 0 {
		return nil
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil
		}
		doc = doc.Content[0]
	}
	if doc.Kind == yaml.ScalarNode && doc.Tag == "!!null" {
		return nil // an empty file
	}
	walkYAML(doc, root, "", paths, &out, 0)
	return out
}

// maxYAMLDepth bounds the walk: configuration is a few levels deep, and a
// fuzzed or hostile file must not exhaust the stack.
const maxYAMLDepth = 64

func walkYAML(v *yaml.Node, n *keyNode, path string, paths map[string]int, out *[]fileProblem, depth int) {
	if depth > maxYAMLDepth {
		*out = append(*out, fileProblem{v.Line, v.Column, fmt.Sprintf("%s: nested too deeply", displayKey(path))})
		return
	}
	for v.Kind == yaml.AliasNode && v.Alias != nil && depth < maxYAMLDepth {
		v, depth = v.Alias, depth+1
	}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return // "key:" with no value leaves the default
	}
	visit := func(child *yaml.Node, line int, node *keyNode, p string) {
		if paths != nil {
			paths[p] = line
		}
		walkYAML(child, node, p, paths, out, depth+1)
	}
	mismatch := func(want string) {
		*out = append(*out, fileProblem{v.Line, v.Column, fmt.Sprintf("%s: want %s, got %s", displayKey(path), want, describeNode(v))})
	}
	switch n.kind {
	case kindSection:
		if v.Kind != yaml.MappingNode {
			mismatch("a mapping of keys")
			return
		}
		for i := 0; i+1 < len(v.Content); i += 2 {
			kn, vn := v.Content[i], v.Content[i+1]
			if kn.Kind == yaml.ScalarNode && kn.Tag == "!!merge" {
				walkYAML(vn, n, path, paths, out, depth+1)
				continue
			}
			f := n.field(kn.Value)
			p := joinKey(path, kn.Value)
			if f == nil || kn.Kind != yaml.ScalarNode {
				*out = append(*out, fileProblem{kn.Line, kn.Column, "unknown key " + strconv.Quote(p) + suggest(p, n, path)})
				continue
			}
			visit(vn, kn.Line, f.node, p)
		}
	case kindList:
		if v.Kind != yaml.SequenceNode {
			mismatch("a list")
			return
		}
		for i, e := range v.Content {
			visit(e, e.Line, n.elem, fmt.Sprintf("%s[%d]", path, i))
		}
	case kindMap:
		if v.Kind != yaml.MappingNode {
			mismatch("a mapping")
			return
		}
		for i := 0; i+1 < len(v.Content); i += 2 {
			visit(v.Content[i+1], v.Content[i].Line, n.elem, joinKey(path, v.Content[i].Value))
		}
	}
}

func displayKey(path string) string {
	if path == "" {
		return "the file"
	}
	return path
}

func describeNode(v *yaml.Node) string {
	switch v.Kind {
	case yaml.ScalarNode:
		return "the value " + strconv.Quote(clipText(v.Value, 40))
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return "something else"
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// envKeyProblem checks one environment key (already lower-cased and with
// "__" turned into ".") against the tree; "" when it names a value.
func envKeyProblem(root *keyNode, key string) string {
	n := root
	path := ""
	for seg := range strings.SplitSeq(key, ".") {
		switch n.kind {
		case kindSection:
			f := n.field(seg)
			if f == nil {
				p := joinKey(path, seg)
				return "unknown key " + strconv.Quote(p) + suggest(p, n, path)
			}
			n, path = f.node, joinKey(path, seg)
		case kindMap:
			n, path = n.elem, joinKey(path, seg)
		default:
			return fmt.Sprintf("%s is a single value: nothing is nested under it", strconv.Quote(path))
		}
	}
	switch n.kind {
	case kindSection:
		return fmt.Sprintf("%s is a section: set one of its keys (e.g. %s)", strconv.Quote(key), envName(joinKey(key, n.fields[0].name)))
	case kindList:
		return fmt.Sprintf("%s is a list of entries: set it in the config file", strconv.Quote(key))
	}
	return ""
}

// envName is the environment variable that sets key.
func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
}

// suggest proposes the closest known key to a misspelt one (in the same
// section, else anywhere), or "".
func suggest(bad string, section *keyNode, sectionPath string) string {
	if from, ok := notConfigKeys[bad]; ok {
		return " (the node sets it from " + from + ")"
	}
	if len(bad) > 80 {
		return "" // not a typo; and edit distance is quadratic
	}
	var cands []string
	for _, f := range section.fields {
		cands = append(cands, joinKey(sectionPath, f.name))
	}
	best, dist := closest(bad, cands)
	if dist > 2 {
		var all []string
		configKeys().leafPaths("", &all)
		best, dist = closest(bad, all)
	}
	if best == "" || dist > max(2, len(bad)/4) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func closest(s string, cands []string) (string, int) {
	sort.Strings(cands)
	best, dist := "", 1<<30
	for _, c := range cands {
		if d := levenshtein(s, c); d < dist {
			best, dist = c, d
		}
	}
	return best, dist
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
