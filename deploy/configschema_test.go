package deploy

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/node"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/push/stream"
	"github.com/heraldpush/herald/resilience"
)

// keyNode is one level of Herald's configuration key tree, as koanf sees
// it: struct fields by their koanf tag, maps with any key, lists of structs.
// Koanf ignores unknown keys silently, so a misspelt key in the chart's
// herald.yaml or a HERALD_* variable with one underscore too few would be
// dropped without a word; the tests check every key against this tree.
type keyNode struct {
	fields map[string]*keyNode // struct fields (nil for leaves)
	anyKey *keyNode            // map[string]T: any key, value T
	elem   *keyNode            // []struct: each element
}

func (n *keyNode) leaf() bool { return n.fields == nil && n.anyKey == nil && n.elem == nil }

// externalConfigTypes are the configuration types package main (not
// importable) uses from library packages, keyed as they are spelt in
// cmd/herald/config.go.
var externalConfigTypes = map[string]reflect.Type{
	"observability.Config": reflect.TypeFor[observability.Config](),
	"resilience.Config":    reflect.TypeFor[resilience.Config](),
	"push.RetentionPolicy": reflect.TypeFor[push.RetentionPolicy](),
	"auth.Config":          reflect.TypeFor[auth.Config](),
	"server.CORSConfig":    reflect.TypeFor[server.CORSConfig](),
	"server.Limits":        reflect.TypeFor[server.Limits](),
	"stream.Config":        reflect.TypeFor[stream.Config](),
	"node.Balance":         reflect.TypeFor[node.Balance](),
	"node.Regions":         reflect.TypeFor[node.Regions](),
}

// heraldConfigKeys builds the key tree of cmd/herald's Config: the structs
// declared in config.go are read from its source (package main cannot be
// imported), the library types by reflection.
func heraldConfigKeys(t *testing.T) *keyNode {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "../cmd/herald/config.go", nil, 0)
	if err != nil {
		t.Fatalf("parse cmd/herald/config.go: %v", err)
	}
	structs := map[string]*ast.StructType{}
	ast.Inspect(f, func(n ast.Node) bool {
		if ts, ok := n.(*ast.TypeSpec); ok {
			if st, ok := ts.Type.(*ast.StructType); ok {
				structs[ts.Name.Name] = st
			}
		}
		return true
	})
	if structs["Config"] == nil {
		t.Fatal("cmd/herald/config.go: no Config struct")
	}
	var fromAST func(st *ast.StructType) *keyNode
	fromAST = func(st *ast.StructType) *keyNode {
		n := &keyNode{fields: map[string]*keyNode{}}
		for _, fld := range st.Fields.List {
			name, squash := koanfName(fld.Tag, fld.Names)
			if name == "-" {
				continue
			}
			var child *keyNode
			switch typ := fld.Type.(type) {
			case *ast.Ident:
				if sub, ok := structs[typ.Name]; ok {
					child = fromAST(sub)
				} else {
					child = &keyNode{}
				}
			case *ast.SelectorExpr:
				spelt := fmt.Sprint(typ.X) + "." + typ.Sel.Name
				if rt, ok := externalConfigTypes[spelt]; ok {
					child = fromType(rt)
				} else {
					child = &keyNode{} // time.Duration and the like
				}
			default:
				child = &keyNode{} // []string, maps of scalars: leaves for our purpose
			}
			if squash {
				for k, v := range child.fields {
					n.fields[k] = v
				}
				continue
			}
			n.fields[name] = child
		}
		return n
	}
	return fromAST(structs["Config"])
}

func koanfName(tag *ast.BasicLit, names []*ast.Ident) (string, bool) {
	if tag != nil {
		raw, err := strconv.Unquote(tag.Value)
		if err == nil {
			if v, ok := reflect.StructTag(raw).Lookup("koanf"); ok {
				name, opts, _ := strings.Cut(v, ",")
				return name, strings.Contains(opts, "squash")
			}
		}
	}
	if len(names) == 0 {
		return "", true
	}
	return strings.ToLower(names[0].Name), false
}

var durationType = reflect.TypeFor[time.Duration]()

func fromType(rt reflect.Type) *keyNode {
	for rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	switch {
	case rt == durationType:
		return &keyNode{}
	case rt.Kind() == reflect.Struct:
		n := &keyNode{fields: map[string]*keyNode{}}
		for i := range rt.NumField() {
			sf := rt.Field(i)
			if !sf.IsExported() {
				continue
			}
			name, squash := strings.ToLower(sf.Name), sf.Anonymous
			if v, ok := sf.Tag.Lookup("koanf"); ok {
				var opts string
				name, opts, _ = strings.Cut(v, ",")
				squash = strings.Contains(opts, "squash") || (name == "" && sf.Anonymous)
			}
			if name == "-" {
				continue
			}
			child := fromType(sf.Type)
			if squash {
				for k, v := range child.fields {
					n.fields[k] = v
				}
				continue
			}
			n.fields[name] = child
		}
		return n
	case rt.Kind() == reflect.Map && rt.Key().Kind() == reflect.String:
		return &keyNode{anyKey: fromType(rt.Elem())}
	case rt.Kind() == reflect.Slice && rt.Elem().Kind() == reflect.Struct:
		return &keyNode{elem: fromType(rt.Elem())}
	default:
		return &keyNode{}
	}
}

// checkKeys walks a decoded YAML value against the key tree and returns the
// paths of keys Herald does not know.
func checkKeys(n *keyNode, v any, path string) []string {
	var bad []string
	switch val := v.(type) {
	case map[string]any:
		if n.leaf() {
			return nil // free-form maps stored as a leaf (e.g. string maps)
		}
		keys := make([]string, 0, len(val))
		for k := range val {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := strings.TrimPrefix(path+"."+k, ".")
			var child *keyNode
			switch {
			case n.fields != nil:
				child = n.fields[k]
			case n.anyKey != nil:
				child = n.anyKey
			}
			if child == nil {
				bad = append(bad, p)
				continue
			}
			bad = append(bad, checkKeys(child, val[k], p)...)
		}
	case []any:
		if n.elem != nil {
			for i, e := range val {
				bad = append(bad, checkKeys(n.elem, e, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	return bad
}

// lookupKey resolves a dotted key ("cluster.drain_window") to a leaf.
func lookupKey(n *keyNode, dotted string) bool {
	for _, part := range strings.Split(dotted, ".") {
		switch {
		case n.fields != nil && n.fields[part] != nil:
			n = n.fields[part]
		case n.anyKey != nil:
			n = n.anyKey
		default:
			return false
		}
	}
	return n.leaf() || n.elem != nil || n.anyKey != nil
}

// envKey maps HERALD_CLUSTER__DRAIN_WINDOW to cluster.drain_window the way
// cmd/herald's LoadConfig does.
func envKey(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "HERALD_")
	if !ok {
		return "", false
	}
	return strings.ReplaceAll(strings.ToLower(rest), "__", "."), true
}

func TestHeraldConfigKeyTree(t *testing.T) {
	keys := heraldConfigKeys(t)
	for _, k := range []string{"listen", "admin_listen", "gossip_key", "cluster.drain_window", "shutdown_timeout",
		"protection.admission.max_streams", "retention.rules", "auth.api_keys", "telemetry.otlp.endpoint", "cors.allowed_origins"} {
		if !lookupKey(keys, k) {
			t.Errorf("key tree misses %q", k)
		}
	}
	for _, k := range []string{"cluster_drain_window", "cluster.drain", "protection.admission.maxstreams"} {
		if lookupKey(keys, k) {
			t.Errorf("key tree accepts unknown %q", k)
		}
	}
	bad := checkKeys(keys, map[string]any{
		"retention": map[string]any{"rules": []any{map[string]any{"pattern": "a.*", "max_len": 1, "maxage": "1h"}}},
		"auth":      map[string]any{"api_keys": []any{map[string]any{"id": "x", "hash": "h", "tenant": "t"}}},
	}, "")
	if want := []string{"retention.rules[0].maxage"}; !reflect.DeepEqual(bad, want) {
		t.Errorf("checkKeys = %v, want %v", bad, want)
	}
}
