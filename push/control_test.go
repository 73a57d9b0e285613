package push

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Hello.AppendJSON writes exactly what encoding/json writes for a Hello
// (clients parse it; the hand-written encoder only saves the connect the
// reflection), for plain and awkward strings and nil, empty and full lists.
func TestHelloAppendJSONMatchesEncodingJSON(t *testing.T) {
	odd := []string{"", "plain", `q"uote`, `back\slash`, "<html>&amp;", "tab\tnl\n", "\x00\x1f\x7f", "é ü 日本", "\u2028\u2029", "bad\xffutf8", "a/b"}
	hellos := []Hello{
		{},
		{Session: "0123456789abcdef", Node: "node-a", Origin: "eu", Topics: []string{"t"}, Origins: []string{"eu"},
			Cursor: "AbC-_1", Resumed: true, Durable: true, Trace: "00-0123-01", Alternates: []string{"https://us.example"}},
		{Topics: []string{}, Origins: []string{}, Alternates: []string{}},
	}
	for _, s := range odd {
		hellos = append(hellos, Hello{Session: s, Node: s, Origin: s, Topics: []string{s, s}, Origins: []string{s}, Cursor: s, Trace: s, Alternates: []string{s}})
	}
	for _, h := range hellos {
		want, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.AppendJSON([]byte("x")); !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Errorf("AppendJSON(%+v)\n got %s\nwant %s", h, got, want)
		}
	}
	h := hellos[1]
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf = h.AppendJSON(buf[:0]) }); n != 0 {
		t.Errorf("AppendJSON into a large enough buffer: %.0f allocations, want 0", n)
	}
}
