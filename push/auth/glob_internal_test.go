package auth

import (
	"regexp"
	"strings"
	"testing"
)

// FuzzGrantsMatchTheirGrammar checks the compiled grants (path.Match for
// globs, a set for exact topics) against the documented meaning of a
// pattern, written as a regular expression: every '*' matches any run of
// topic characters, including none; every other character matches itself.
func FuzzGrantsMatchTheirGrammar(f *testing.F) {
	for _, s := range [][2]string{{"*", "a"}, {"chat.*", "chat.1"}, {"a*b*c", "abcbc"}, {"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaa"}, {"**", "x"}, {"x", "x"}, {"a*", "b"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		if ValidatePattern(pattern) != nil || !validTopic(topic) {
			return
		}
		g, err := compileGrants([]string{pattern})
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		want := regexp.MustCompile("^" + strings.Join(parts, "[A-Za-z0-9._:-]*") + "$").MatchString(topic)
		if got := g.allows(topic); got != want {
			t.Fatalf("pattern %q, topic %q: allows = %v, grammar says %v", pattern, topic, got, want)
		}
	})
}
