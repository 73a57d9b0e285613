package push

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// cursorVectorsFile is read by the JS client's tests (ADR 0025): the
// cursors Go encodes, with the offsets the JS decoder must find in them.
var cursorVectorsFile = filepath.Join("client", "js", "test", "testdata", "cursors.json")

type cursorVector struct {
	Topics  []string `json:"topics"`  // sorted
	Origins []string `json:"origins"` // cursor order
	// Offsets: per origin in cursor order, per topic in sorted order.
	Offsets [][]uint64 `json:"offsets"`
	Session string     `json:"session"` // 16 hex digits or ""
	ID      string     `json:"id"`
}

func cursorVectors(t *testing.T) []cursorVector {
	t.Helper()
	cases := []struct {
		topics, origins []string
		offsets         []uint64 // per slot, NewCursor's slot order
		session         uint64
	}{
		{[]string{"a"}, []string{"eu"}, []uint64{0}, 0},
		{[]string{"a"}, []string{"eu"}, []uint64{1}, 0x0123456789abcdef},
		{[]string{"b", "a"}, []string{"eu"}, []uint64{5, 127}, 1},
		{[]string{"orders", "chat.room-1", "logs.api.error"}, []string{"us-east", "eu-west"},
			[]uint64{128, 0, 300, 1 << 21, 1<<28 + 5, 1<<40 + 1}, 0xfeedface},
		{[]string{"t1", "t2", "t3", "t4"}, []string{"a", "b", "c"},
			[]uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1<<53 - 1}, 42},
	}
	var out []cursorVector
	for _, c := range cases {
		cur, err := NewCursor(c.topics, c.origins)
		if err != nil {
			t.Fatal(err)
		}
		for i, off := range c.offsets {
			cur.SetAt(i, Position{Epoch: "e" + cur.Key(i).Origin, Offset: off})
		}
		cur.SetSession(c.session, 7)
		v := cursorVector{Topics: cur.Topics(), Origins: cur.Origins(), ID: cur.String()}
		if c.session != 0 {
			v.Session = string(appendHex16(nil, c.session))
		}
		for oi := range cur.Origins() {
			row := make([]uint64, len(cur.Topics()))
			for ti := range cur.Topics() {
				row[ti] = cur.At(oi*len(cur.Topics()) + ti).Offset
			}
			v.Offsets = append(v.Offsets, row)
		}
		out = append(out, v)
	}
	return out
}

func appendHex16(dst []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		dst = append(dst, digits[(v>>(4*uint(i)))&0xf])
	}
	return dst
}

// TestCursorVectorsForJS keeps the JS client's cursor fixtures equal to
// what this codec encodes: a change of layout fails here until the
// fixtures (and so the JS decoder's test) are regenerated with
// HERALD_UPDATE_VECTORS=1.
func TestCursorVectorsForJS(t *testing.T) {
	want, err := json.MarshalIndent(cursorVectors(t), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if os.Getenv("HERALD_UPDATE_VECTORS") == "1" {
		if err := os.MkdirAll(filepath.Dir(cursorVectorsFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cursorVectorsFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(cursorVectorsFile)
	if err != nil {
		t.Fatalf("%v (regenerate with HERALD_UPDATE_VECTORS=1 go test -run TestCursorVectorsForJS ./push)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: regenerate with HERALD_UPDATE_VECTORS=1 go test -run TestCursorVectorsForJS ./push", cursorVectorsFile)
	}
}
