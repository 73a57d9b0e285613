// Package probe has one fuzz target the fuzzer breaks within a second and
// one that holds, for TestFuzzScriptFailsLoudly.
package probe

import "testing"

func FuzzBreaks(f *testing.F) {
	f.Add([]byte("ab"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4 {
			t.Fatalf("input of %d bytes", len(b))
		}
	})
}

func FuzzHolds(f *testing.F) {
	f.Add(1)
	f.Fuzz(func(t *testing.T, n int) {})
}
