package observability

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func newJSONLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(NewLogHandler(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	t.Parallel()
	tel, _ := mustTestTelemetry(t, Config{})
	var buf bytes.Buffer
	log := newJSONLogger(&buf)
	ctx, span := tel.StartPublish(context.Background(), "t")
	log.InfoContext(ctx, "published", "topic", "t")
	span.End()
	log.InfoContext(context.Background(), "no span")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec[LogKeyTraceID] != span.SpanContext().TraceID().String() || rec[LogKeySpanID] != span.SpanContext().SpanID().String() {
		t.Errorf("record %v lacks the span's ids %v", rec, span.SpanContext())
	}
	if rec["topic"] != "t" || rec["msg"] != "published" {
		t.Errorf("record lost its own fields: %v", rec)
	}
	if strings.Contains(lines[1], LogKeyTraceID) {
		t.Errorf("record without span has a trace id: %s", lines[1])
	}
}

type credentials struct {
	User     string
	Password string
	Nested   struct{ Note string }
}

type tokenValuer struct{ tok string }

func (v tokenValuer) LogValue() slog.Value { return slog.StringValue("auth " + v.tok) }

func TestLogHandlerRedactsSecrets(t *testing.T) {
	t.Parallel()
	const (
		jwt    = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwiZXhwIjoxOTAwMDAwMDAwfQ.MEUCIQDx3sig_nature-Part"
		opaque = "s3cr3t-opaque-token-value"
		apiKey = "hk_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo"
		cookie = "herald_session=abc123cookievalue"
		pass   = "hunter2-password-value"
	)
	h := http.Header{}
	h.Set("Authorization", "Bearer "+opaque)
	h.Set("Cookie", cookie)
	h.Set("X-Request-Id", "req-1")
	var c credentials
	c.User, c.Password, c.Nested.Note = "bob", pass, "see Bearer "+opaque

	var buf bytes.Buffer
	log := newJSONLogger(&buf).With("api_key", apiKey, "component", "test")
	log.Info("token as attr", "token", opaque)
	log.Info("jwt inside a string", "detail", "client sent "+jwt+" at connect")
	log.Info("bearer in message: Bearer "+opaque, "n", 1)
	log.Info("headers", "headers", h)
	log.Info("header value", "Authorization", "Bearer "+opaque, "Set-Cookie", cookie)
	log.Info("error", "err", fmt.Errorf("auth failed for %s: %w", jwt, errors.New("expired")))
	log.Info("group", slog.Group("req", "cookie", cookie, "url", "/v1/stream?access_token="+jwt))
	log.Info("struct", "creds", c)
	log.Info("map", "cfg", map[string]string{"otlp_headers": "x", "secret_key": pass})
	log.Info("slice", "args", []string{"--token", "Bearer " + opaque})
	log.Info("valuer", "v", tokenValuer{jwt})
	log.Info("query", "url", "https://h/v1/stream?topic=a&token="+opaque+"&x=1")
	log.Info("api key in text", "line", "curl -H 'X-API-Key: "+apiKey+"'")
	log.WithGroup("g").Info("grouped", "password", pass)

	out := buf.String()
	for _, secret := range []string{jwt, opaque, apiKey, "abc123cookievalue", pass, "eyJ"} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q leaked:\n%s", secret, out)
		}
	}
	for _, keep := range []string{`"component":"test"`, `"X-Request-Id":["req-1"]`, `"User":"bob"`, `"n":1`, "Bearer " + Redacted, `"otlp_headers":"x"`, "topic=a&token=" + Redacted + "&x=1"} {
		if !strings.Contains(out, keep) {
			t.Errorf("output lost %s:\n%s", keep, out)
		}
	}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("line %d is not JSON: %s", i, line)
		}
	}
}

func TestIsSecretKey(t *testing.T) {
	t.Parallel()
	for k, want := range map[string]bool{
		"token": true, "Access-Token": true, "authorization": true, "Proxy-Authorization": true,
		"cookie": true, "Set-Cookie": true, "api_key": true, "X-API-Key": true, "apiKey": true,
		"password": true, "db.password": true, "client_secret": true, "SecretKey": true, "jwt": true,
		"private_key": true, "topic": false, "key": false, "idempotency_key": false, "session_id": false,
		"node": false, "redis_key": false, "": false,
	} {
		if got := isSecretKey(k); got != want {
			t.Errorf("isSecretKey(%q) = %v, want %v", k, got, want)
		}
	}
}

func TestScrubStringLeavesCleanTextAlone(t *testing.T) {
	for _, s := range []string{"", "hello", "bearer", "a bearer of news", "the key is eyJ", "hk_"} {
		if got := scrubString(s); got != s {
			t.Errorf("scrubString(%q) = %q", s, got)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _ = scrubString("a plain log message about topic orders") }); a != 0 {
		t.Errorf("clean string: %v allocs", a)
	}
}

func BenchmarkLogHandler(b *testing.B) {
	var buf bytes.Buffer
	log := newJSONLogger(&buf)
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		log.Info("stream closed", "session", "s-1", "topic", "orders", "reason", "client", "n", 3)
	}
}
