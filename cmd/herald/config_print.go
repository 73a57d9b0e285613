package main

import (
	"bytes"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// secretKeys are the keys whose values checkconfig --print replaces with
// redacted (paths with list indexes as "[]"; a map key covers its values).
// Every other string is still passed through redactURLSecrets, which hides
// URL passwords (redis, remote_redis, OTLP endpoints) wherever they are.
// The JWT keys themselves live in files (auth.keys[].file, a path): the
// configuration never holds them.
var secretKeys = map[string]bool{
	"gossip_key":               true,
	"gossip_old_keys":          true,
	"wan_key":                  true,
	"session_key":              true,
	"session_old_keys":         true,
	"auth.api_keys[].hash":     true, // not the key, but nothing to share either
	"telemetry.otlp.headers":   true, // typically a backend's API key
	"telemetry.otlp.headers.*": true,
}

const redacted = "<redacted>"

// queryPassword matches password-carrying query parameters of a URL
// (sentinel_password=…, password=…).
var queryPassword = regexp.MustCompile(`([?&][A-Za-z_]*password=)[^&\s]*`)

// redactURLSecrets hides URL userinfo passwords and password query
// parameters in s.
func redactURLSecrets(s string) string {
	return queryPassword.ReplaceAllString(redactPassword(s), "${1}xxxxx")
}

// isSecretKey reports whether path (with indexes) names a secret.
func isSecretKey(path string) bool {
	return secretKeys[listIndex.ReplaceAllString(path, "[]")]
}

var listIndex = regexp.MustCompile(`\[\d+\]`)

// printConfig renders cfg as YAML in key-tree order, secrets redacted,
// durations as Go duration strings: a file the loader accepts (apart from
// the redacted values).
func printConfig(cfg Config) ([]byte, error) {
	n, err := renderNode(reflect.ValueOf(cfg), configKeys(), "")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func renderNode(v reflect.Value, n *keyNode, path string) (*yaml.Node, error) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
		}
		v = v.Elem()
	}
	switch n.kind {
	case kindSection:
		out := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range n.fields {
			p := joinKey(path, f.name)
			val, err := renderNode(v.FieldByIndex(f.index), f.node, p)
			if err != nil {
				return nil, err
			}
			out.Content = append(out.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: f.name}, val)
		}
		return out, nil
	case kindMap:
		out := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			p := path + "." + fmt.Sprint(k)
			val, err := renderNode(v.MapIndex(k), n.elem, p)
			if err != nil {
				return nil, err
			}
			out.Content = append(out.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: fmt.Sprint(k)}, val)
		}
		if isSecretKey(path) {
			for i := 1; i < len(out.Content); i += 2 {
				out.Content[i] = &yaml.Node{Kind: yaml.ScalarNode, Value: redacted}
			}
		}
		return out, nil
	case kindList:
		out := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			val, err := renderNode(v.Index(i), n.elem, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out.Content = append(out.Content, val)
		}
		return out, nil
	}
	return renderValue(v, path)
}

func renderValue(v reflect.Value, path string) (*yaml.Node, error) {
	secret := isSecretKey(path)
	scrub := func(s string) string {
		if secret && s != "" {
			return redacted
		}
		return redactURLSecrets(s)
	}
	var out yaml.Node
	switch {
	case v.Type() == durationType:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: time.Duration(v.Int()).String()}, nil
	case v.Kind() == reflect.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Style: quoteStyle(v.String()), Value: scrub(v.String())}, nil
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		out.Kind, out.Style = yaml.SequenceNode, yaml.FlowStyle
		for i := range v.Len() {
			s := v.Index(i).String()
			out.Content = append(out.Content, &yaml.Node{Kind: yaml.ScalarNode, Style: quoteStyle(s), Value: scrub(s)})
		}
		return &out, nil
	}
	if err := out.Encode(v.Interface()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &out, nil
}

// quoteStyle double-quotes empty strings so that `key: ""` reads as set.
func quoteStyle(s string) yaml.Style {
	if s == "" {
		return yaml.DoubleQuotedStyle
	}
	return 0
}

// problemList formats LoadConfig's error as a numbered list of every
// problem, for serve and checkconfig.
func problemList(source string, err error) error {
	errs := leafErrors(err)
	var b strings.Builder
	fmt.Fprintf(&b, "configuration %s: %d problem(s):", source, len(errs))
	for _, e := range errs {
		b.WriteString("\n  - ")
		b.WriteString(strings.ReplaceAll(e.Error(), "\n", "\n    "))
	}
	return fmt.Errorf("%s", b.String())
}

// configSource names where the configuration came from, for messages.
func configSource(fs *pflag.FlagSet, environ func() []string) string {
	if p := configPath(fs, environ); p != "" {
		return p
	}
	return "(defaults, environment and flags; no file)"
}
