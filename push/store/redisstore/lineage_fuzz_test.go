package redisstore

import (
	"strconv"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push"
)

// FuzzParseLineage: the meta hash's lineage field never crashes the parser,
// yields at most push.MaxLineage well-formed entries, and round-trips what
// the append script writes.
func FuzzParseLineage(f *testing.F) {
	for _, s := range []string{"", "e1:5", "e2:7;e1:4", "a:1;b:x;c:3", ";;", "e:18446744073709551615", strings.Repeat("e:1;", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := parseLineage(s)
		if len(out) > push.MaxLineage {
			t.Fatalf("%d entries, bound %d", len(out), push.MaxLineage)
		}
		var b strings.Builder
		for i, e := range out {
			if e.Epoch == "" || strings.ContainsAny(e.Epoch, ":;") {
				t.Fatalf("entry %d: %+v from %q", i, e, s)
			}
			if i > 0 {
				b.WriteByte(';')
			}
			b.WriteString(e.Epoch + ":" + strconv.FormatUint(e.At, 10))
		}
		if again := parseLineage(b.String()); len(again) != len(out) {
			t.Fatalf("re-encoded %q parses to %d entries, want %d", b.String(), len(again), len(out))
		}
	})
}
