package auth

import (
	"path"
	"testing"
)

// FuzzGlobMatch checks globMatch against path.Match on the pattern language
// ValidatePattern admits (topic characters and '*', no '/').
func FuzzGlobMatch(f *testing.F) {
	for _, s := range [][2]string{{"*", "a"}, {"chat.*", "chat.1"}, {"a*b*c", "abcbc"}, {"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaa"}, {"**", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if ValidatePattern(pattern) != nil || !validTopic(s) {
			return
		}
		want, err := path.Match(pattern, s)
		if err != nil {
			t.Fatalf("path.Match(%q): %v", pattern, err)
		}
		if got := globMatch(pattern, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, path.Match = %v", pattern, s, got, want)
		}
	})
}
