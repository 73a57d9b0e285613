package ingest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/ingest"
)

// FuzzDecode: whatever the body, Decode neither panics nor accepts a line
// that is not one valid JSON value (by encoding/json's reading too), fits
// the size limit, holds no CR or LF (it becomes SSE data) and has a valid
// topic; it never reports more lines than the limit, and line numbers
// grow.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"app":"api","level":"info","msg":"hello"}` + "\n" + `{"app":"db","level":"error"}`,
		"\n\n  \r\n{}\r\n[1,2]\n\"s\"\n12\ntrue\nnull\n",
		`{"app":"api","app":"x"}`,
		`{"k8s":{"ns":"prod"},"level":"warn","id":"abc"}`,
		"{\"a\":\r1}\r\n",
		`{"a":"\u0000\ud800"}`,
		`{"app":"a b","level":"info"}`,
		"\xef\xbb\xbf{}",
		`{"a":1} {"b":2}`,
		`{"a":[[[[[[[[[[]]]]]]]]]]}`,
		strings.Repeat("x", 200),
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(2))
	}
	ps, err := ingest.Config{Profiles: []ingest.ProfileConfig{
		{APIKey: "tmpl", Topic: "logs.{app}.{level}", DefaultTopic: "logs.other", Dedup: "hash"},
		{APIKey: "nested", Topic: "k8s.{k8s.ns}", Dedup: "field", DedupField: "id"},
	}}.Compile()
	if err != nil {
		f.Fatal(err)
	}
	const maxLines, maxData = 8, 128
	f.Fuzz(func(t *testing.T, body []byte, mode uint8) {
		var p *ingest.Parser
		switch mode % 3 {
		case 0:
			p = ingest.NewParser(nil, "fixed", maxLines, maxData)
		case 1:
			p = ingest.NewParser(ps.For("tmpl", true), "", maxLines, maxData)
		default:
			p = ingest.NewParser(ps.For("nested", true), "", maxLines, maxData)
		}
		last, calls := 0, 0
		n, err := p.Decode(bytes.NewReader(body), func(l *ingest.Line) {
			calls++
			if l.Number <= last {
				t.Fatalf("line number %d after %d", l.Number, last)
			}
			last = l.Number
			if l.Err != nil {
				if l.Data != nil || l.Topic != "" {
					t.Fatalf("refused line carries data %q topic %q", l.Data, l.Topic)
				}
				return
			}
			if !json.Valid(l.Data) {
				t.Fatalf("accepted invalid JSON %q", l.Data)
			}
			if len(l.Data) > maxData || bytes.ContainsAny(l.Data, "\r\n") {
				t.Fatalf("accepted data %q (len %d)", l.Data, len(l.Data))
			}
			if err := push.ValidateData(l.Data, maxData); err != nil {
				t.Fatalf("accepted data the store refuses: %v", err)
			}
			if err := push.ValidateTopic(l.Topic); err != nil {
				t.Fatalf("accepted topic: %v", err)
			}
			if mode%3 != 0 && (len(l.DedupKey) == 0 || push.ValidateIdempotencyKey(l.DedupKey) != nil) {
				t.Fatalf("dedup key %q", l.DedupKey)
			}
		})
		if err != nil && !errors.Is(err, ingest.ErrTooManyLines) {
			t.Fatalf("body error from an in-memory body: %v", err)
		}
		if n != calls || n > maxLines {
			t.Fatalf("n=%d calls=%d", n, calls)
		}
	})
}
