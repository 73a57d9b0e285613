package ingest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/heraldpush/herald/push"
)

// Template limits.
const (
	// MaxTemplateFields bounds the placeholders of one template.
	MaxTemplateFields = 8
	// MaxFieldDepth bounds the segments of one placeholder's path
	// ("kubernetes.labels.app" has 3).
	MaxFieldDepth = 4
	// maxFieldNameLen bounds one path segment.
	maxFieldNameLen = 64
)

// Template renders a topic from a line's fields. Its text is literal topic
// characters and placeholders "{path}", where path is a field name or a
// dotted path into nested objects ("{kubernetes.namespace}"). Field names
// are [A-Za-z0-9_@-]; a placeholder is replaced by the field's value when
// it is a string, number or boolean. Build it with ParseTemplate.
type Template struct {
	text  string
	parts []part
	paths [][]string // the distinct field paths, in first-use order
}

type part struct {
	lit  string
	path int // index into paths; -1 for a literal
}

// ParseTemplate checks and compiles a template. A template without
// placeholders is a fixed topic and must be a valid topic itself.
func ParseTemplate(s string) (*Template, error) {
	if s == "" {
		return nil, errors.New("empty topic template")
	}
	if len(s) > push.MaxTopicLen*2 {
		return nil, fmt.Errorf("topic template %q: longer than %d bytes", clip(s), push.MaxTopicLen*2)
	}
	t := &Template{text: s}
	index := map[string]int{}
	rest := s
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			open = len(rest)
		}
		if lit := rest[:open]; lit != "" {
			if strings.IndexByte(lit, '}') >= 0 {
				return nil, fmt.Errorf("topic template %q: '}' without '{'", clip(s))
			}
			if err := checkLiteral(lit, len(t.parts) == 0); err != nil {
				return nil, fmt.Errorf("topic template %q: %w", clip(s), err)
			}
			t.parts = append(t.parts, part{lit: lit, path: -1})
		}
		if open == len(rest) {
			break
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("topic template %q: '{' without '}'", clip(s))
		}
		name := rest[open+1 : open+end]
		path, err := parsePath(name)
		if err != nil {
			return nil, fmt.Errorf("topic template %q: %w", clip(s), err)
		}
		i, ok := index[name]
		if !ok {
			if len(t.paths) == MaxTemplateFields {
				return nil, fmt.Errorf("topic template %q: more than %d fields", clip(s), MaxTemplateFields)
			}
			i = len(t.paths)
			index[name] = i
			t.paths = append(t.paths, path)
		}
		t.parts = append(t.parts, part{path: i})
		rest = rest[open+end+1:]
	}
	if len(t.paths) == 0 {
		if err := push.ValidateTopic(s); err != nil {
			return nil, fmt.Errorf("topic template: %w", err)
		}
	}
	return t, nil
}

// checkLiteral: a literal holds topic characters only; the template's
// first character must be alphanumeric (the topic grammar's first
// character) when it is literal.
func checkLiteral(lit string, first bool) error {
	for i := 0; i < len(lit); i++ {
		c := lit[i]
		if isAlnum(c) || ((i > 0 || !first) && (c == '.' || c == '_' || c == ':' || c == '-')) {
			continue
		}
		return fmt.Errorf("character %q not allowed in a topic", c)
	}
	return nil
}

func parsePath(name string) ([]string, error) {
	if name == "" {
		return nil, errors.New("empty placeholder {}")
	}
	segs := strings.Split(name, ".")
	if len(segs) > MaxFieldDepth {
		return nil, fmt.Errorf("placeholder {%s}: deeper than %d fields", clip(name), MaxFieldDepth)
	}
	for _, seg := range segs {
		if seg == "" || len(seg) > maxFieldNameLen {
			return nil, fmt.Errorf("placeholder {%s}: field names are 1..%d characters", clip(name), maxFieldNameLen)
		}
		for i := 0; i < len(seg); i++ {
			if c := seg[i]; !isAlnum(c) && c != '_' && c != '-' && c != '@' {
				return nil, fmt.Errorf("placeholder {%s}: character %q not allowed in a field name", clip(name), c)
			}
		}
	}
	return segs, nil
}

// String returns the template's text.
func (t *Template) String() string { return t.text }

// Fixed reports whether the template has no placeholders (one topic).
func (t *Template) Fixed() bool { return len(t.paths) == 0 }

// Paths returns the field paths the template reads.
func (t *Template) Paths() [][]string { return t.paths }

// render builds the topic from the values of t.paths (nil: the field is
// absent, null or not a scalar; "" counts as absent). ok is false when a
// field is missing. The caller validates the topic.
func (t *Template) render(vals []*string, buf []byte) (topic []byte, ok bool) {
	buf = buf[:0]
	for _, p := range t.parts {
		if p.path < 0 {
			buf = append(buf, p.lit...)
			continue
		}
		v := vals[p.path]
		if v == nil || *v == "" {
			return buf, false
		}
		buf = append(buf, *v...)
	}
	return buf, true
}

func isAlnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// clip bounds configuration or client text quoted in errors.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
