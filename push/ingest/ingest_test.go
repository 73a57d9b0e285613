package ingest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push/ingest"
)

func mustProfiles(t *testing.T, c ingest.Config) *ingest.Profiles {
	t.Helper()
	ps, err := c.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

type got struct {
	num         int
	data, topic string
	key         string
	err         error
}

func decodeAll(t *testing.T, p *ingest.Parser, body string) ([]got, int, error) {
	t.Helper()
	var out []got
	n, err := p.Decode(strings.NewReader(body), func(l *ingest.Line) {
		out = append(out, got{num: l.Number, data: string(l.Data), topic: l.Topic, key: l.DedupKey, err: l.Err})
	})
	return out, n, err
}

func TestParseTemplate(t *testing.T) {
	good := []string{"logs.{app}.{level}", "logs", "{app}", "{a.b.c.d}-x", "k8s:{kubernetes.namespace}_{@timestamp}", "{a}{a}"}
	for _, s := range good {
		if _, err := ingest.ParseTemplate(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := map[string]string{
		"":                            "empty",
		"logs.{app":                   "without '}'",
		"logs.app}":                   "without '{'",
		"logs.{}":                     "empty placeholder",
		"logs.{a..b}":                 "field names",
		"logs/{app}":                  "not allowed in a topic",
		".{app}":                      "not allowed in a topic",
		"logs.{a b}":                  "not allowed in a field name",
		"{a.b.c.d.e}":                 "deeper than",
		"{a}{b}{c}{d}{e}{f}{g}{h}{i}": "more than 8",
		"logs.x y":                    "not allowed",
	}
	for s, want := range bad {
		_, err := ingest.ParseTemplate(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want it to contain %q", s, err, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []struct {
		c    ingest.Config
		want string
	}{
		{ingest.Config{MaxLines: 1001}, "max_lines"},
		{ingest.Config{MaxBodyBytes: 10}, "max_body_bytes"},
		{ingest.Config{Profiles: []ingest.ProfileConfig{{Topic: "logs"}}}, "api_key is required"},
		{ingest.Config{Profiles: []ingest.ProfileConfig{{APIKey: "k", Topic: "logs.{x"}}}, `ingest.profiles[0] (api_key "k"): topic`},
		{ingest.Config{Profiles: []ingest.ProfileConfig{{APIKey: "k", DefaultTopic: "logs"}}}, "default_topic needs topic"},
		{ingest.Config{Profiles: []ingest.ProfileConfig{{APIKey: "k", Topic: "{a}", DefaultTopic: "bad topic"}}}, "default_topic"},
		{ingest.Config{Profiles: []ingest.ProfileConfig{{APIKey: "k", Event: "herald.x"}}}, "event"},
		{ingest.Config{Profiles: []ingest.ProfileConfig{{APIKey: "k", Dedup: "maybe"}}}, "want none, hash or field"},
		{ingest.Config{Profiles: []ingest.ProfileConfig{{APIKey: "k", Dedup: "field"}}}, "dedup_field"},
		{ingest.Config{Profiles: []ingest.ProfileConfig{{APIKey: "k", Dedup: "hash", DedupField: "id"}}}, "dedup_field needs"},
		{ingest.Config{Profiles: []ingest.ProfileConfig{{APIKey: "k"}, {APIKey: "k"}}}, "second profile"},
		{ingest.Config{Profiles: []ingest.ProfileConfig{{APIKey: "*"}, {APIKey: "*"}}}, `second "*"`},
	}
	for _, tt := range bad {
		err := tt.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err %v, want it to contain %q", tt.c, err, tt.want)
		}
	}
	if err := (ingest.Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
}

func TestProfilesFor(t *testing.T) {
	ps := mustProfiles(t, ingest.Config{Profiles: []ingest.ProfileConfig{
		{APIKey: "shipper", Topic: "logs.{app}", Event: "line"},
		{APIKey: "*", Topic: "misc"},
	}})
	if p := ps.For("shipper", true); p == nil || p.Event != "line" {
		t.Errorf("shipper: %+v", p)
	}
	if p := ps.For("shipper", false); p == nil || p.Topic.String() != "misc" {
		t.Errorf("a token whose subject is an API key's id must not get that key's profile: %+v", p)
	}
	if p := ps.For("other", true); p == nil || p.Topic.String() != "misc" {
		t.Errorf("other: %+v", p)
	}
	if p := (*ingest.Profiles)(nil).For("x", true); p != nil {
		t.Errorf("nil profiles: %+v", p)
	}
}

func TestDecodeTemplate(t *testing.T) {
	ps := mustProfiles(t, ingest.Config{Profiles: []ingest.ProfileConfig{
		{APIKey: "k", Topic: "logs.{app}.{level}", DefaultTopic: "logs.other"},
		{APIKey: "strict", Topic: "logs.{k8s.ns}.{level}"},
	}})
	p := ingest.NewParser(ps.For("k", true), "", 100, 64)
	body := strings.Join([]string{
		`{"app":"api","level":"info","msg":"hello"}`,
		``,
		`  {"level":"error","app":"db","n":1}  `,
		`{"app":"api"}`,
		`{"app":"api","level":null}`,
		`{"app":"api","level":""}`,
		`{"app":"api","level":{"x":1}}`,
		`{"app":7,"level":true}`,
		`{"app":"a b","level":"info"}`,
		`[1,2]`,
		`"just a string"`,
		`{"app":"api","level":"info"`,
		`{"app":"api","app":"db","level":"info"}`,
		`{"a":1} {"b":2}`,
		`{"msg":"` + strings.Repeat("x", 80) + `"}`,
		"{\"app\":\"api\",\r\"level\":\"info\"}\r",
		"\xff",
		`{"app":"api","level":"warn"}`, // no final newline
	}, "\n")
	lines, n, err := decodeAll(t, p, body)
	if err != nil || n != 17 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	want := []struct {
		num   int
		topic string
		err   error
		data  string
	}{
		{1, "logs.api.info", nil, `{"app":"api","level":"info","msg":"hello"}`},
		{3, "logs.db.error", nil, `{"level":"error","app":"db","n":1}`},
		{4, "logs.other", nil, ""},
		{5, "logs.other", nil, ""},
		{6, "logs.other", nil, ""},
		{7, "logs.other", nil, ""},
		{8, "logs.7.true", nil, ""},
		{9, "", errors.New("invalid topic"), ""},
		{10, "logs.other", nil, "[1,2]"},
		{11, "logs.other", nil, ""},
		{12, "", ingest.ErrInvalidJSON, ""},
		{13, "", ingest.ErrInvalidJSON, ""},
		{14, "", ingest.ErrInvalidJSON, ""},
		{15, "", ingest.ErrLineTooLong, ""},
		{16, "logs.api.info", nil, `{"app":"api","level":"info"}`},
		{17, "", ingest.ErrInvalidJSON, ""},
		{18, "logs.api.warn", nil, ""},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d: %+v", len(lines), len(want), lines)
	}
	for i, w := range want {
		g := lines[i]
		if g.num != w.num || g.topic != w.topic {
			t.Errorf("line %d: got number %d topic %q (err %v), want %d %q", i, g.num, g.topic, g.err, w.num, w.topic)
		}
		switch {
		case w.err == nil && g.err != nil:
			t.Errorf("line %d: unexpected error %v", w.num, g.err)
		case w.err != nil && g.err == nil:
			t.Errorf("line %d: accepted %q, want error %v", w.num, g.data, w.err)
		case w.err != nil && !errors.Is(g.err, w.err) && !strings.Contains(g.err.Error(), w.err.Error()):
			t.Errorf("line %d: error %v, want %v", w.num, g.err, w.err)
		}
		if w.data != "" && g.data != w.data {
			t.Errorf("line %d: data %q, want %q", w.num, g.data, w.data)
		}
	}

	// Without a default topic, a line lacking a field is refused.
	p = ingest.NewParser(ps.For("strict", true), "", 100, 1024)
	lines, _, _ = decodeAll(t, p, `{"k8s":{"ns":"prod","x":[1]},"level":"info"}`+"\n"+`{"k8s":"prod","level":"info"}`+"\n")
	if lines[0].topic != "logs.prod.info" || lines[0].err != nil {
		t.Errorf("nested path: %+v", lines[0])
	}
	if !errors.Is(lines[1].err, ingest.ErrNoTopic) {
		t.Errorf("missing nested field: %+v", lines[1])
	}
}

func TestDecodeFixedTopicAndLimits(t *testing.T) {
	p := ingest.NewParser(nil, "logs.fixed", 3, 1024)
	lines, n, err := decodeAll(t, p, "1\n\"two\"\n{}\n")
	if err != nil || n != 3 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	for _, l := range lines {
		if l.topic != "logs.fixed" || l.err != nil || l.key != "" {
			t.Errorf("%+v", l)
		}
	}
	if p.Event() != ingest.DefaultEventType {
		t.Errorf("event %q", p.Event())
	}
	// A fourth non-blank line refuses the body; blank ones do not count.
	p = ingest.NewParser(nil, "logs.fixed", 3, 1024)
	_, _, err = decodeAll(t, p, "1\n\n\n2\n3\n   \n")
	if err != nil {
		t.Errorf("blank lines counted: %v", err)
	}
	_, _, err = decodeAll(t, p, "1\n2\n3\n4\n")
	if !errors.Is(err, ingest.ErrTooManyLines) {
		t.Errorf("err %v, want ErrTooManyLines", err)
	}
	// No topic anywhere: every line says so.
	p = ingest.NewParser(nil, "", 10, 1024)
	lines, _, _ = decodeAll(t, p, "{}\n")
	if !errors.Is(lines[0].err, ingest.ErrNoTopic) {
		t.Errorf("%+v", lines[0])
	}
}

// A line far longer than the reader's buffer is refused as one line, and
// the lines after it still decode.
func TestDecodeLongLine(t *testing.T) {
	p := ingest.NewParser(nil, "t", 10, 100)
	body := "{\"a\":\"" + strings.Repeat("x", 300<<10) + "\"}\n{\"b\":1}\n"
	lines, n, err := decodeAll(t, p, body)
	if err != nil || n != 2 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if !errors.Is(lines[0].err, ingest.ErrLineTooLong) || lines[1].err != nil || lines[1].data != `{"b":1}` || lines[1].num != 2 {
		t.Errorf("%+v", lines)
	}
}

func TestDedupKeys(t *testing.T) {
	ps := mustProfiles(t, ingest.Config{Profiles: []ingest.ProfileConfig{
		{APIKey: "hash", Dedup: "hash"},
		{APIKey: "field", Dedup: "field", DedupField: "meta.id"},
	}})
	keys := func(key, body string) []string {
		p := ingest.NewParser(ps.For(key, true), "t", 10, 1024)
		lines, _, err := decodeAll(t, p, body)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range lines {
			if l.err != nil {
				t.Fatal(l.err)
			}
			out = append(out, l.key)
		}
		return out
	}
	k := keys("hash", "{\"a\":1}\n{\"a\":2}\n  {\"a\":1}\r\n")
	if k[0] == "" || k[0] == k[1] || k[0] != k[2] || !strings.HasPrefix(k[0], "ingest:") || len(k[0]) > 128 {
		t.Errorf("hash keys %q", k)
	}
	k = keys("field", `{"meta":{"id":"x1"},"v":1}`+"\n"+`{"meta":{"id":"x1"},"v":2}`+"\n"+`{"meta":{"id":"x2"}}`+"\n"+`{"v":1}`+"\n"+`{"v":1}`+"\n")
	if k[0] != k[1] || k[0] == k[2] || k[3] != k[4] || k[3] == k[0] {
		t.Errorf("field keys %q", k)
	}
	// The field value x1 and a line whose bytes are x1 never collide.
	if h := keys("hash", `"x1"`+"\n"); h[0] == k[0] {
		t.Errorf("field and hash keys collide")
	}
	// Scopes (tenants) never share keys.
	a := ingest.NewParser(ps.For("hash", true), "t", 10, 1024)
	a.SetDedupScope("1:a/")
	b := ingest.NewParser(ps.For("hash", true), "t", 10, 1024)
	b.SetDedupScope("1:b/")
	la, _, _ := decodeAll(t, a, "{}\n")
	lb, _, _ := decodeAll(t, b, "{}\n")
	if la[0].key == lb[0].key {
		t.Errorf("two scopes share key %q", la[0].key)
	}
}

func BenchmarkDecode(b *testing.B) {
	ps, err := ingest.Config{Profiles: []ingest.ProfileConfig{{APIKey: "k", Topic: "logs.{app}.{level}", DefaultTopic: "logs.other", Dedup: "hash"}}}.Compile()
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&sb, `{"ts":"2026-12-07T06:00:00.%06dZ","app":"api","level":"info","host":"web-1","msg":"GET /v1/items/%d 200 3ms","seq":%d}`+"\n", i, i, i)
	}
	body := sb.String()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		p := ingest.NewParser(ps.For("k", true), "", 1000, 64<<10)
		if _, err := p.Decode(strings.NewReader(body), func(l *ingest.Line) {
			if l.Err != nil {
				b.Fatal(l.Err)
			}
		}); err != nil {
			b.Fatal(err)
		}
	}
}
