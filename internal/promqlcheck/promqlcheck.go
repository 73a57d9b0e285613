// Package promqlcheck is a test helper: a small PromQL scanner the drift
// tests (observability, cmd/herald) use to check the dashboard and alert
// rules in deploy/ against the metrics Herald exposes. Only tests import
// it. It is not Prometheus' parser: importing
// github.com/prometheus/prometheus pulls k8s client-go and upgrades shared
// dependencies.
package promqlcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrInvalidPromQL reports an expression the scanner rejects.
var ErrInvalidPromQL = errors.New("observability: invalid PromQL")

// ReferencedMetricNames returns the metric names used by every PromQL
// expression in a Grafana dashboard (panel targets' "expr", and the
// label_values/query_result queries of template variables) and in a
// Prometheus rule file (groups[].rules[].expr), sorted and without
// duplicates. Histogram and summary series are reduced to their family
// name (_bucket, _sum and _count are stripped), which is how a scrape
// parsed with expfmt names them. Either input may be nil.
//
// Expressions are checked by a scanner, not the Prometheus parser: it
// rejects unbalanced brackets, unterminated strings, malformed label
// matchers and range selectors, and characters PromQL does not use. Grafana
// variables ($var, ${var}, $__rate_interval) are accepted where a value or
// duration may stand.
func ReferencedMetricNames(dashboardJSON, alertsYAML []byte) ([]string, error) {
	var exprs []sourcedExpr
	if len(dashboardJSON) > 0 {
		var d any
		if err := json.Unmarshal(dashboardJSON, &d); err != nil {
			return nil, fmt.Errorf("dashboard: %w", err)
		}
		exprs = collectDashboardExprs(d, "", exprs)
	}
	if len(alertsYAML) > 0 {
		var f struct {
			Groups []struct {
				Name  string `yaml:"name"`
				Rules []struct {
					Alert  string `yaml:"alert"`
					Record string `yaml:"record"`
					Expr   string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(alertsYAML, &f); err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				exprs = append(exprs, sourcedExpr{where: "rule " + g.Name + "/" + r.Alert + r.Record, expr: r.Expr})
			}
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range exprs {
		names, err := ExprMetricNames(e.expr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.where, err)
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

type sourcedExpr struct{ where, expr string }

// collectDashboardExprs walks a decoded dashboard; title tracks the nearest
// enclosing panel or variable for error messages.
func collectDashboardExprs(v any, title string, out []sourcedExpr) []sourcedExpr {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["title"].(string); ok {
			title = t
		} else if n, ok := x["name"].(string); ok {
			title = n
		}
		if e, ok := x["expr"].(string); ok {
			out = append(out, sourcedExpr{where: fmt.Sprintf("dashboard %q", title), expr: e})
		}
		if typ, _ := x["type"].(string); typ == "query" {
			q, _ := x["query"].(string)
			if m, ok := x["query"].(map[string]any); ok {
				q, _ = m["query"].(string)
			}
			if e, ok := grafanaQueryExpr(q); ok {
				out = append(out, sourcedExpr{where: fmt.Sprintf("dashboard variable %q", title), expr: e})
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys) // deterministic error messages
		for _, k := range keys {
			if k == "expr" {
				continue
			}
			out = collectDashboardExprs(x[k], title, out)
		}
	case []any:
		for _, e := range x {
			out = collectDashboardExprs(e, title, out)
		}
	}
	return out
}

// grafanaQueryExpr extracts the PromQL of a Prometheus template-variable
// query: label_values(<expr>, <label>) and query_result(<expr>).
// label_values(<label>), label_names() and metrics(<regex>) carry none.
func grafanaQueryExpr(q string) (string, bool) {
	q = strings.TrimSpace(q)
	for _, fn := range []string{"label_values", "query_result"} {
		rest, ok := strings.CutPrefix(q, fn)
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
			return "", false
		}
		inner := rest[1 : len(rest)-1]
		if fn == "query_result" {
			return inner, true
		}
		if i := lastTopLevelComma(inner); i >= 0 {
			return inner[:i], true
		}
		return "", false
	}
	return "", false
}

// lastTopLevelComma returns the index of the last ',' outside brackets and
// quotes, or -1.
func lastTopLevelComma(s string) int {
	depth, last := 0, -1
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '{' || c == '[':
			depth++
		case c == ')' || c == '}' || c == ']':
			depth--
		case c == ',' && depth == 0:
			last = i
		}
	}
	return last
}

// ExprMetricNames returns the metric names one PromQL expression selects,
// sorted, deduplicated and reduced to family names (see
// ReferencedMetricNames).
func ExprMetricNames(expr string) ([]string, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return nil, err
	}
	p := &promScanner{toks: toks}
	if err := p.scan(); err != nil {
		return nil, err
	}
	var out []string
	for _, n := range p.names {
		n = familyName(n)
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// familyName strips the series suffixes of histograms and summaries.
func familyName(n string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(n, suf); ok && b != "" {
			return b
		}
	}
	return n
}

type tokKind int

const (
	tokIdent tokKind = iota
	tokNumber
	tokDuration
	tokString
	tokVar // Grafana variable
	tokPunct
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func (t token) is(p string) bool { return t.kind == tokPunct && t.text == p }

func perr(pos int, format string, args ...any) error {
	return fmt.Errorf("%w: at %d: %s", ErrInvalidPromQL, pos, fmt.Sprintf(format, args...))
}

func isIdentStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c == ':' || '0' <= c && c <= '9' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// lexPromQL splits expr into tokens.
func lexPromQL(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' && s[i] != '\r' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			i++
			for ; i < len(s) && s[i] != c; i++ {
				if s[i] == '\\' && c != '`' {
					i++
				} else if s[i] == '\n' && c != '`' {
					return nil, perr(start, "newline in string")
				}
			}
			if i >= len(s) {
				return nil, perr(start, "unterminated string")
			}
			i++
			toks = append(toks, token{tokString, s[start+1 : i-1], start})
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				end := strings.IndexByte(s[i:], '}')
				if end < 0 {
					return nil, perr(start, "unterminated ${variable}")
				}
				i += end + 1
			} else {
				for i < len(s) && (isIdentStart(s[i]) || isDigit(s[i])) {
					i++
				}
			}
			if i == start+1 {
				return nil, perr(start, "lone '$'")
			}
			toks = append(toks, token{tokVar, s[start:i], start})
		case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]):
			kind := tokNumber
			if c == '0' && i+1 < len(s) && (s[i+1] == 'x' || s[i+1] == 'X') {
				i += 2
				for i < len(s) && strings.IndexByte("0123456789abcdefABCDEF_", s[i]) >= 0 {
					i++
				}
			} else {
				for i < len(s) && (isDigit(s[i]) || s[i] == '.' || s[i] == '_') {
					i++
				}
				if i < len(s) && (s[i] == 'e' || s[i] == 'E') && i+1 < len(s) &&
					(isDigit(s[i+1]) || (s[i+1] == '+' || s[i+1] == '-') && i+2 < len(s) && isDigit(s[i+2])) {
					i += 2
					for i < len(s) && isDigit(s[i]) {
						i++
					}
				}
				// A duration: 5m, 1h30m, 250ms: units separated by digits.
				for i < len(s) && strings.IndexByte("smhdwy", s[i]) >= 0 {
					kind = tokDuration
					if s[i] == 'm' && i+1 < len(s) && s[i+1] == 's' {
						i++
					}
					i++
					if i >= len(s) || !isDigit(s[i]) {
						break
					}
					for i < len(s) && isDigit(s[i]) {
						i++
					}
					if i >= len(s) || strings.IndexByte("smhdwy", s[i]) < 0 {
						return nil, perr(start, "malformed duration %q", s[start:i])
					}
				}
			}
			if i < len(s) && (isIdentStart(s[i]) || isDigit(s[i])) {
				return nil, perr(start, "malformed number or duration %q", s[start:i+1])
			}
			toks = append(toks, token{kind, s[start:i], start})
		case isIdentStart(c) || c == ':':
			// ':' may start a metric name; in a subquery "[1h:5m]" the
			// scanner takes ":5m" apart again.
			for i < len(s) && isIdentChar(s[i]) {
				i++
			}
			toks = append(toks, token{tokIdent, s[start:i], start})
		default:
			two := ""
			if i+1 < len(s) {
				two = s[i : i+2]
			}
			switch two {
			case "==", "!=", "=~", "!~", "<=", ">=":
				toks = append(toks, token{tokPunct, two, start})
				i += 2
				continue
			}
			if strings.IndexByte("=<>+-*/%^(){}[],@:", c) < 0 {
				return nil, perr(start, "unexpected character %q", c)
			}
			toks = append(toks, token{tokPunct, string(c), start})
			i++
		}
	}
	if len(toks) == 0 {
		return nil, perr(0, "empty expression")
	}
	return toks, nil
}

// isKeyword reports whether the identifier at p.i (lower-cased as low) is
// a PromQL keyword here rather than a metric name. PromQL's keywords are
// contextual: "sum", "by" or "and" alone are valid metric names.
func (p *promScanner) isKeyword(low string) bool {
	next, hasNext := p.peek(1)
	nextIs := func(s string) bool { return hasNext && next.is(s) }
	var prev token
	hasPrev := p.i > 0
	if hasPrev {
		prev = p.toks[p.i-1]
	}
	// afterOperand: the previous token ends an operand, so a binary
	// operator may follow.
	afterOperand := hasPrev && (prev.kind != tokPunct || prev.is(")") || prev.is("}") || prev.is("]"))
	switch low {
	case "inf", "nan":
		return true
	case "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
		"bottomk", "topk", "quantile", "limitk", "limit_ratio":
		return nextIs("(") || hasNext && next.kind == tokIdent &&
			(strings.EqualFold(next.text, "by") || strings.EqualFold(next.text, "without"))
	case "by", "without", "on", "ignoring":
		return nextIs("(")
	case "group_left", "group_right":
		return nextIs("(") || hasPrev && prev.is(")")
	case "and", "or", "unless", "atan2":
		return afterOperand
	case "bool":
		return hasPrev && prev.kind == tokPunct && slices.Contains([]string{"==", "!=", ">", "<", ">=", "<="}, prev.text)
	case "offset":
		return afterOperand
	}
	return false
}

// isLabelListKeyword reports keywords followed by a parenthesised list of
// label names.
func isLabelListKeyword(low string) bool {
	switch low {
	case "by", "without", "on", "ignoring", "group_left", "group_right":
		return true
	}
	return false
}

// promScanner checks bracket structure and collects selector names.
type promScanner struct {
	toks  []token
	i     int
	names []string
}

func (p *promScanner) peek(off int) (token, bool) {
	if p.i+off < len(p.toks) {
		return p.toks[p.i+off], true
	}
	return token{}, false
}

func (p *promScanner) scan() error {
	var stack []token // open '(' only; {} and [] are consumed whole
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		switch {
		case t.kind == tokIdent:
			if p.isKeyword(strings.ToLower(t.text)) {
				next, hasNext := p.peek(1)
				p.i++
				if hasNext && next.is("(") && isLabelListKeyword(strings.ToLower(t.text)) {
					if err := p.labelList(); err != nil {
						return err
					}
				}
				continue
			}
			if next, ok := p.peek(1); !ok || !next.is("(") {
				p.names = append(p.names, t.text) // not a function call: a series
			}
			p.i++
		case t.is("{"):
			if err := p.matchers(); err != nil {
				return err
			}
		case t.is("["):
			if err := p.rangeSelector(); err != nil {
				return err
			}
		case t.is("("):
			stack = append(stack, t)
			p.i++
		case t.is(")"):
			if len(stack) == 0 {
				return perr(t.pos, "unbalanced ')'")
			}
			stack = stack[:len(stack)-1]
			p.i++
		case t.is("}") || t.is("]"):
			return perr(t.pos, "unbalanced %q", t.text)
		default:
			p.i++
		}
	}
	if len(stack) > 0 {
		return perr(stack[len(stack)-1].pos, "unclosed '('")
	}
	return nil
}

// labelList consumes "(a, b, …)" after a grouping keyword.
func (p *promScanner) labelList() error {
	open := p.toks[p.i]
	p.i++
	wantName := true
	for ; p.i < len(p.toks); p.i++ {
		t := p.toks[p.i]
		switch {
		case t.is(")"):
			p.i++
			return nil
		case wantName && (t.kind == tokIdent || t.kind == tokString):
			wantName = false
		case !wantName && t.is(","):
			wantName = true
		default:
			return perr(t.pos, "unexpected %q in label list", t.text)
		}
	}
	return perr(open.pos, "unclosed label list")
}

// matchers consumes "{name op "value", …}"; a bare quoted string is a
// metric name, and __name__="x" names metric x.
func (p *promScanner) matchers() error {
	open := p.toks[p.i]
	p.i++
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		if t.is("}") {
			p.i++
			return nil
		}
		switch {
		case t.kind == tokString && p.i+1 < len(p.toks) && (p.toks[p.i+1].is(",") || p.toks[p.i+1].is("}")):
			if t.text == "" {
				return perr(t.pos, "empty metric name")
			}
			p.names = append(p.names, t.text)
			p.i++
		case t.kind == tokIdent || t.kind == tokString:
			if p.i+2 >= len(p.toks) {
				return perr(t.pos, "incomplete label matcher")
			}
			op, val := p.toks[p.i+1], p.toks[p.i+2]
			if !(op.is("=") || op.is("!=") || op.is("=~") || op.is("!~")) {
				return perr(op.pos, "want a matcher operator after label %q, got %q", t.text, op.text)
			}
			if val.kind != tokString {
				return perr(val.pos, "label %q: want a quoted value, got %q", t.text, val.text)
			}
			if t.text == "__name__" && op.is("=") {
				if val.text == "" { // selects unnamed series: no metric
					return perr(val.pos, "empty metric name")
				}
				p.names = append(p.names, val.text)
			}
			p.i += 3
		default:
			return perr(t.pos, "unexpected %q in label matchers", t.text)
		}
		if p.i < len(p.toks) && p.toks[p.i].is(",") {
			p.i++
		} else if p.i < len(p.toks) && !p.toks[p.i].is("}") {
			return perr(p.toks[p.i].pos, "want ',' or '}' in label matchers, got %q", p.toks[p.i].text)
		}
	}
	return perr(open.pos, "unclosed '{'")
}

// rangeSelector consumes "[5m]", "[$__rate_interval]" or a subquery
// "[1h:5m]" / "[1h:]".
func (p *promScanner) rangeSelector() error {
	open := p.toks[p.i]
	p.i++
	isValue := func(t token) bool {
		return t.kind == tokDuration || t.kind == tokNumber || t.kind == tokVar
	}
	if p.i >= len(p.toks) || !isValue(p.toks[p.i]) {
		return perr(open.pos, "want a duration in '[…]'")
	}
	p.i++
	// Subquery step: the lexer reads ":5m" or ":" as an identifier.
	if p.i < len(p.toks) && p.toks[p.i].kind == tokIdent && strings.HasPrefix(p.toks[p.i].text, ":") {
		step := p.toks[p.i].text[1:]
		p.i++
		if step != "" {
			if ts, err := lexPromQL(step); err != nil || len(ts) != 1 || !isValue(ts[0]) {
				return perr(open.pos, "malformed subquery step %q", step)
			}
		} else if p.i < len(p.toks) && isValue(p.toks[p.i]) {
			p.i++
		}
	}
	if p.i >= len(p.toks) || !p.toks[p.i].is("]") {
		return perr(open.pos, "unclosed or malformed '[…]'")
	}
	p.i++
	return nil
}
