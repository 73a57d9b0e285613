package redistest

import (
	"testing"
)

// fakeTB records how requireBinary ends a test; Skipf/Fatalf unwind with a
// panic the way the real ones stop the goroutine.
type fakeTB struct {
	testing.TB
	ended string
}

type stop struct{}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Skipf(string, ...any)  { f.ended = "skip"; panic(stop{}) }
func (f *fakeTB) Fatalf(string, ...any) { f.ended = "fatal"; panic(stop{}) }
func (f *fakeTB) run(fn func(testing.TB)) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stop); !ok {
				panic(r)
			}
		}
	}()
	fn(f)
}

func TestMissingBinarySkipsOrFailsInCI(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no redis-server here
	for _, tc := range []struct{ ci, want string }{{"", "skip"}, {"false", "skip"}, {"true", "fatal"}} {
		t.Setenv("CI", tc.ci)
		f := &fakeTB{}
		f.run(func(tb testing.TB) { requireBinary(tb, serverBinary) })
		if f.ended != tc.want {
			t.Errorf("CI=%q: test ended with %q, want %q", tc.ci, f.ended, tc.want)
		}
	}
}
