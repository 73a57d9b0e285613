package observability

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added by the handler from NewLogHandler.
const (
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
)

// Redacted replaces secrets in log output.
const Redacted = "[redacted]"

// NewLogHandler wraps base so that every record
//
//   - carries trace_id and span_id when its context holds a valid span
//     context (inside the innermost WithGroup group, if any);
//   - has secrets removed: an attribute whose key looks like a secret
//     (token, authorization, cookie, api_key, password, secret, credential,
//     jwt, private_key…, case-insensitive, '-' and '_' ignored) gets the
//     value "[redacted]", and wherever a bearer credential appears in a
//     string — a JWT ("eyJ…" three base64url segments), "Bearer <token>"
//     (token of 8 or more characters), a Herald API key ("hk_…"), or a
//     token-like URL query parameter (access_token=, token=, api_key=…) — it
//     is replaced, in the message, in string
//     values, in errors, in groups, in maps and headers (http.Header), and in
//     any other value by way of its JSON form.
//
// Use it around slog.NewJSONHandler in main; it keeps base's level.
func NewLogHandler(base slog.Handler) slog.Handler {
	return &logHandler{base: base}
}

type logHandler struct {
	base slog.Handler
}

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.base.Enabled(ctx, l)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, scrubString(r.Message), r.PC)
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		out.AddAttrs(slog.String(LogKeyTraceID, sc.TraceID().String()), slog.String(LogKeySpanID, sc.SpanID().String()))
	}
	r.Attrs(func(a slog.Attr) bool {
		ra, _ := redactAttr(a)
		out.AddAttrs(ra)
		return true
	})
	return h.base.Handle(ctx, out)
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i], _ = redactAttr(a)
	}
	return &logHandler{base: h.base.WithAttrs(red)}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{base: h.base.WithGroup(name)}
}

// secretKeyParts are matched against an attribute key lower-cased with '-'
// and '_' removed.
var secretKeyParts = [...]string{
	"token", "authorization", "cookie", "apikey", "password", "passwd", "passphrase",
	"secret", "credential", "jwt", "bearer", "privatekey", "signingkey", "accesskey",
	"sessionkey", "encryptionkey",
}

// isSecretKey reports whether an attribute or map key names a secret.
func isSecretKey(k string) bool {
	var buf [64]byte
	n := 0
	for i := 0; i < len(k) && n < len(buf); i++ {
		c := k[i]
		switch {
		case c == '-' || c == '_' || c == '.' || c == ' ':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	norm := buf[:n]
	for _, p := range secretKeyParts {
		if bytes.Contains(norm, []byte(p)) {
			return true
		}
	}
	return false
}

// Patterns of credentials inside free text. Compiled regexps are safe for
// concurrent use and never change.
var (
	reJWT    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)
	reBearer = regexp.MustCompile(`(?i)\b(bearer)(\s+|%20|\+)[A-Za-z0-9._~+/=-]{8,}`)
	reAPIKey = regexp.MustCompile(`\bhk_[A-Za-z0-9_-]{8,}`)
	reQuery  = regexp.MustCompile(`(?i)([?&;](?:access_token|id_token|refresh_token|token|api_key|apikey|password|secret)=)[^&\s"'#]+`)
)

// mayHoldSecret is the cheap pre-check that lets clean strings through
// without running the regexps.
func mayHoldSecret(s string) bool {
	return strings.Contains(s, "eyJ") || strings.Contains(s, "hk_") || containsFoldBearer(s) ||
		strings.IndexByte(s, '=') >= 0 && strings.ContainsAny(s, "?&;")
}

func containsFoldBearer(s string) bool {
	for i := 0; i+6 <= len(s); i++ {
		if c := s[i]; (c == 'b' || c == 'B') && strings.EqualFold(s[i:i+6], "bearer") {
			return true
		}
	}
	return false
}

// scrubString removes bearer credentials from s; it returns s itself when
// there is nothing to remove.
func scrubString(s string) string {
	if !mayHoldSecret(s) {
		return s
	}
	s = reJWT.ReplaceAllLiteralString(s, Redacted)
	s = reBearer.ReplaceAllString(s, "${1} "+Redacted)
	s = reAPIKey.ReplaceAllLiteralString(s, Redacted)
	s = reQuery.ReplaceAllString(s, "${1}"+Redacted)
	return s
}

// redactAttr returns a with secrets removed (LogValuers resolved) and
// whether anything was removed.
func redactAttr(a slog.Attr) (slog.Attr, bool) {
	if a.Key != "" && isSecretKey(a.Key) {
		return slog.String(a.Key, Redacted), true
	}
	v, changed := redactValue(a.Value.Resolve())
	return slog.Attr{Key: a.Key, Value: v}, changed
}

// redactValue returns v with secrets removed and whether anything changed.
func redactValue(v slog.Value) (slog.Value, bool) {
	switch v.Kind() {
	case slog.KindString:
		s := v.String()
		if r := scrubString(s); r != s {
			return slog.StringValue(r), true
		}
		return v, false
	case slog.KindGroup:
		as := v.Group()
		out := make([]slog.Attr, len(as))
		changed := false
		for i, a := range as {
			var c bool
			out[i], c = redactAttr(a)
			changed = changed || c
		}
		if !changed {
			return v, false
		}
		return slog.GroupValue(out...), true
	case slog.KindAny:
		return redactAny(v)
	}
	return v, false
}

func redactAny(v slog.Value) (slog.Value, bool) {
	switch x := v.Any().(type) {
	case nil:
		return v, false
	case error:
		s := x.Error()
		if r := scrubString(s); r != s {
			return slog.StringValue(r), true
		}
		return v, false
	case http.Header:
		return redactStringsMap(map[string][]string(x), v)
	case map[string][]string:
		return redactStringsMap(x, v)
	case map[string]string:
		out := make(map[string]string, len(x))
		changed := false
		for k, s := range x {
			r := redactString(k, s)
			changed = changed || r != s
			out[k] = r
		}
		if !changed {
			return v, false
		}
		return slog.AnyValue(out), true
	case []string:
		out := make([]string, len(x))
		changed := false
		for i, s := range x {
			out[i] = scrubString(s)
			changed = changed || out[i] != s
		}
		if !changed {
			return v, false
		}
		return slog.AnyValue(out), true
	}
	// Anything else: look at the JSON form a JSON handler would print, and
	// replace the value by a redacted copy of it when it holds a secret.
	b, err := json.Marshal(v.Any())
	if err != nil || !jsonMayHoldSecret(b) {
		return v, false
	}
	var tree any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return slog.StringValue(Redacted), true
	}
	tree, changed := redactJSON(tree)
	if !changed {
		return v, false
	}
	return slog.AnyValue(tree), true
}

func redactString(key, s string) string {
	if isSecretKey(key) {
		return Redacted
	}
	return scrubString(s)
}

func redactStringsMap(x map[string][]string, v slog.Value) (slog.Value, bool) {
	out := make(map[string][]string, len(x))
	changed := false
	for k, vs := range x {
		rs := make([]string, len(vs))
		for i, s := range vs {
			rs[i] = redactString(k, s)
			changed = changed || rs[i] != s
		}
		out[k] = rs
	}
	if !changed {
		return v, false
	}
	return slog.AnyValue(out), true
}

func jsonMayHoldSecret(b []byte) bool {
	if mayHoldSecret(string(b)) {
		return true
	}
	// Keys: cheap scan of the lower-cased text for the key words.
	low := bytes.ToLower(b)
	low = bytes.ReplaceAll(low, []byte("_"), nil)
	low = bytes.ReplaceAll(low, []byte("-"), nil)
	for _, p := range secretKeyParts {
		if bytes.Contains(low, []byte(p)) {
			return true
		}
	}
	return false
}

// redactJSON walks a decoded JSON tree.
func redactJSON(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		r := scrubString(x)
		return r, r != x
	case []any:
		changed := false
		for i, e := range x {
			var c bool
			x[i], c = redactJSON(e)
			changed = changed || c
		}
		return x, changed
	case map[string]any:
		changed := false
		for k, e := range x {
			if isSecretKey(k) {
				x[k] = Redacted
				changed = true
				continue
			}
			var c bool
			x[k], c = redactJSON(e)
			changed = changed || c
		}
		return x, changed
	}
	return v, false
}
