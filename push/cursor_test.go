package push

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	topics := []string{"orders", "chat.room-1", "prices:eu", "a"}
	origins := []string{"eu-west", "us-east", "ap-south"}
	c, err := NewCursor(topics, origins)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	epochs := make([]string, c.Len())
	for i := range c.Len() {
		epochs[i] = fmt.Sprintf("%016x", rng.Uint64())
		if i%5 != 4 { // leave some slots at offset 0
			c.SetAt(i, Position{Epoch: epochs[i], Offset: rng.Uint64N(1 << 28)})
		}
	}
	s := c.String()
	// Topics given in another order and with duplicates name the same set.
	p, err := ParseCursor(s, []string{"a", "prices:eu", "orders", "chat.room-1", "a"}, []string{"us-east", "ap-south", "eu-west"})
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	for i := range c.Len() {
		if got, want := p.Offset(i), c.At(i).Offset; got != want {
			t.Errorf("slot %d (%v): offset %d, want %d", i, c.Key(i), got, want)
		}
		if !p.Present(i) {
			t.Errorf("slot %d not present", i)
		}
	}
	for i, ok := range p.Verify(epochs) {
		if !ok {
			t.Errorf("slot %d does not verify against its own epochs", i)
		}
	}
}

func TestCursorSizeBudget(t *testing.T) {
	// ARCHITECTURE.md: under 100 bytes for 4 topics × 3 regions.
	c, err := NewCursor([]string{"t1", "t2", "t3", "t4"}, []string{"eu", "us", "ap"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Len() {
		c.SetAt(i, Position{Epoch: "0123456789abcdef", Offset: 1<<28 - 1})
	}
	if n := len(c.String()); n > 100 {
		t.Fatalf("cursor for 4 topics x 3 origins with offsets < 2^28 is %d bytes, budget 100", n)
	}
	// With a session id and its binding (ADR 0004, ADR 0014) the budget
	// holds for offsets below 2^21, and costs 16 characters more above.
	c.SetSession(^uint64(0), 0xffffffff)
	if n := len(c.String()); n > 115 {
		t.Fatalf("cursor with session, offsets < 2^28: %d bytes, want <= 115", n)
	}
	for i := range c.Len() {
		c.SetAt(i, Position{Epoch: "0123456789abcdef", Offset: 1<<21 - 1})
	}
	if n := len(c.String()); n > 100 {
		t.Fatalf("cursor with session, offsets < 2^21: %d bytes, budget 100", n)
	}
}

func TestCursorSessionRoundTrip(t *testing.T) {
	topics, origins := []string{"a", "b"}, []string{"eu", "us"}
	c, _ := NewCursor(topics, origins)
	c.SetAt(1, Position{Epoch: "e", Offset: 77})
	v1 := c.String()
	c.SetSession(0xdeadbeefcafef00d, 0x01020304)
	v3 := c.String()
	// A version 2 cursor (an older Herald) is a version 3 one without the
	// binding: it still resumes its positions and names its session, but
	// carries no binding.
	raw3, _ := base64.RawURLEncoding.DecodeString(v3)
	raw2 := append([]byte{cursorVersion2}, raw3[1:15]...)
	raw2 = append(raw2, raw3[19:]...)
	v2 := base64.RawURLEncoding.EncodeToString(raw2)
	for _, tc := range []struct {
		s     string
		want  uint64
		bind  uint32
		bound bool
	}{{v1, 0, 0, false}, {v2, 0xdeadbeefcafef00d, 0, false}, {v3, 0xdeadbeefcafef00d, 0x01020304, true}} {
		p, err := ParseCursor(tc.s, topics, origins)
		if err != nil {
			t.Fatalf("parse %q: %v", tc.s, err)
		}
		if p.Session() != tc.want || p.Offset(1) != 77 {
			t.Fatalf("parse %q: session %x offset %d, want %x 77", tc.s, p.Session(), p.Offset(1), tc.want)
		}
		if b, ok := p.Binding(); b != tc.bind || ok != tc.bound {
			t.Fatalf("parse %q: binding %x/%v, want %x/%v", tc.s, b, ok, tc.bind, tc.bound)
		}
		offs, err := DecodeOffsets(tc.s, len(topics), nil)
		if err != nil || len(offs) != 4 || offs[1]+offs[3] != 77 {
			t.Fatalf("DecodeOffsets(%q) = %v, %v", tc.s, offs, err)
		}
	}
	// A cursor with a zero session id is never minted: reject it.
	for _, v := range []string{v2, v3} {
		raw, _ := base64.RawURLEncoding.DecodeString(v)
		for i := 7; i < 15; i++ {
			raw[i] = 0
		}
		if _, err := ParseCursor(base64.RawURLEncoding.EncodeToString(raw), topics, origins); !errors.Is(err, ErrMalformedCursor) {
			t.Fatalf("zero session: err = %v, want ErrMalformedCursor", err)
		}
	}
}

func TestCursorVerifyDetectsEpochChange(t *testing.T) {
	topics, origins := []string{"a", "b", "c"}, []string{"local"}
	c, _ := NewCursor(topics, origins)
	epochs := []string{"e-a", "e-b", "e-c"}
	c.SetAt(0, Position{Epoch: "e-a", Offset: 10})
	c.SetAt(1, Position{Epoch: "e-b", Offset: 20})
	// slot 2 at offset 0: its epoch must not matter.
	p, err := ParseCursor(c.String(), topics, origins)
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Verify([]string{"e-a", "e-b", "totally-new"}); !v[0] || !v[1] || !v[2] {
		t.Fatalf("offset-0 slot's epoch changed, verify = %v, want all true", v)
	}
	changed := []string{"e-a", "e-b2", "e-c"}
	v := p.Verify(changed)
	if !v[0] || v[1] {
		t.Fatalf("epoch of b changed: verify = %v, want [true false …]", v)
	}
	_ = epochs
}

func TestCursorVerifyTagCollisionFailsClosed(t *testing.T) {
	topics, origins := []string{"a", "b"}, []string{"local"}
	c, _ := NewCursor(topics, origins)
	c.SetAt(0, Position{Epoch: "x", Offset: 1})
	c.SetAt(1, Position{Epoch: "y", Offset: 1})
	p, _ := ParseCursor(c.String(), topics, origins)
	// Find a replacement epoch for slot 1 whose 8-bit tag collides with "y".
	var other string
	for i := 0; ; i++ {
		other = fmt.Sprintf("z%d", i)
		if epochTag(other) == epochTag("y") {
			break
		}
	}
	v := p.Verify([]string{"x", other})
	if v[0] || v[1] {
		t.Fatalf("check failed without a pinned slot: verify = %v, want every used slot false", v)
	}
}

// The same collision when the changed stream's lineage begins after the
// client's offset: that slot explains the failed check, and the unchanged
// one verifies (failing it would replay it from its start: duplicates).
func TestCursorVerifyLineagesPinsTheChangeByItsStart(t *testing.T) {
	topics, origins := []string{"r"}, []string{"a", "b"}
	c, _ := NewCursor(topics, origins)
	c.SetAt(0, Position{Epoch: "old-a", Offset: 20}) // (r, a)
	c.SetAt(1, Position{Epoch: "same-b", Offset: 150})
	p, err := ParseCursor(c.String(), topics, origins)
	if err != nil {
		t.Fatal(err)
	}
	var newA string
	for i := 0; ; i++ {
		if newA = fmt.Sprintf("new-a-%d", i); epochTag(newA) == epochTag("old-a") {
			break
		}
	}
	epochs := []string{newA, "same-b"}
	if v := p.Verify(epochs); v[0] || v[1] {
		t.Fatalf("without lineage starts: verify = %v, want both false (fail closed)", v)
	}
	// a's new lineage begins at 21: offset 20 cannot be in it.
	if v, intact := p.VerifyLineages(epochs, []uint64{20, 0}); v[0] || !v[1] || intact {
		t.Fatalf("a's lineage starts after the client's offset: verify = %v, want [false true]", v)
	}
	// A start below the client's offset explains nothing: fail closed.
	if v, _ := p.VerifyLineages(epochs, []uint64{19, 0}); v[0] || v[1] {
		t.Fatalf("nothing pins the change: verify = %v, want both false", v)
	}
	// Unchanged epochs verify whatever the starts.
	if v, intact := p.VerifyLineages([]string{"old-a", "same-b"}, []uint64{20, 0}); !v[0] || !v[1] || !intact {
		t.Fatalf("unchanged: verify = %v intact %v, want both true, intact", v, intact)
	}
}

// collidingEpoch returns an epoch other than e with e's 8-bit tag.
func collidingEpoch(prefix, e string) string {
	for i := 0; ; i++ {
		if c := fmt.Sprintf("%s-%d", prefix, i); c != e && epochTag(c) == epochTag(e) {
			return c
		}
	}
}

// A collision on one stream while another is pinned by its tag: the
// colliding stream is pinned anyway when it has no lineage any more, or when
// its lineage begins at or after the client's offset.
func TestCursorVerifyPinsCollisionsBesideAPinnedStream(t *testing.T) {
	topics, origins := []string{"a", "b", "c"}, []string{"local"}
	c, _ := NewCursor(topics, origins)
	c.SetAt(0, Position{Epoch: "old-a", Offset: 7})
	c.SetAt(1, Position{Epoch: "old-b", Offset: 30})
	c.SetAt(2, Position{Epoch: "same-c", Offset: 4})
	p, err := ParseCursor(c.String(), topics, origins)
	if err != nil {
		t.Fatal(err)
	}
	// a is pinned by its tag; b's new epoch collides.
	newA, newB := "new-a", collidingEpoch("new-b", "old-b")
	if epochTag(newA) == epochTag("old-a") {
		newA = "new-a-other"
	}
	if v, intact := p.VerifyLineages([]string{newA, newB, "same-c"}, []uint64{0, 0, 0}); v[0] || !v[1] || !v[2] || intact {
		t.Fatalf("collision without evidence: verify = %v intact %v, want [false true true] (the residual case) and not intact", v, intact)
	}
	// b's new lineage begins at offset 30: the client's 30 was read elsewhere.
	if v, _ := p.VerifyLineages([]string{newA, newB, "same-c"}, []uint64{0, 30, 0}); v[0] || v[1] || !v[2] {
		t.Fatalf("b's lineage starts at the client's offset: verify = %v, want [false false true]", v)
	}
	// b has no lineage at all, and "" happens to carry old-b's tag: pinned.
	e := collidingEpoch("old-b", "")
	c.SetAt(1, Position{Epoch: e, Offset: 30})
	if p, err = ParseCursor(c.String(), topics, origins); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.VerifyLineages([]string{newA, "", "same-c"}, nil); v[0] || v[1] || !v[2] {
		t.Fatalf("b has no lineage: verify = %v, want [false false true]", v)
	}
}

func TestParseCursorRejects(t *testing.T) {
	topics, origins := []string{"a", "b"}, []string{"local"}
	good, _ := NewCursor(topics, origins)
	good.SetAt(0, Position{Epoch: "e", Offset: 300})
	valid := good.String()
	other, _ := NewCursor([]string{"a", "c"}, origins)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrMalformedCursor},
		{"oversized", strings.Repeat("A", MaxCursorLen+1), ErrMalformedCursor},
		{"not base64", "!!!!", ErrMalformedCursor},
		{"padding", valid + "==", ErrMalformedCursor},
		{"short", "AQID", ErrMalformedCursor},
		{"truncated", valid[:len(valid)-2], ErrMalformedCursor},
		{"trailing", valid + "AA", ErrMalformedCursor},
		{"foreign topic set", other.String(), ErrForeignCursor},
		{"numeric legacy id", "12345", ErrMalformedCursor},
		{"newline", "AQ\nID", ErrMalformedCursor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCursor(tt.in, topics, origins)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseCursor(%q) = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

func TestParseCursorUnknownOriginIgnored(t *testing.T) {
	c, _ := NewCursor([]string{"a"}, []string{"eu", "gone"})
	c.SetAt(c.Index("a", "eu"), Position{Epoch: "e", Offset: 7})
	c.SetAt(c.Index("a", "gone"), Position{Epoch: "g", Offset: 9})
	p, err := ParseCursor(c.String(), []string{"a"}, []string{"eu", "us"})
	if err != nil {
		t.Fatal(err)
	}
	eu, us := p.c.Index("a", "eu"), p.c.Index("a", "us")
	if p.Offset(eu) != 7 || !p.Present(eu) {
		t.Fatalf("eu slot: offset %d present %v", p.Offset(eu), p.Present(eu))
	}
	if p.Present(us) || p.Offset(us) != 0 {
		t.Fatalf("us slot should be absent")
	}
}

func FuzzParseCursor(f *testing.F) {
	c, _ := NewCursor([]string{"a", "b"}, []string{"local", "us"})
	c.SetAt(0, Position{Epoch: "e", Offset: 1})
	c.SetAt(3, Position{Epoch: "f", Offset: 1 << 40})
	f.Add(c.String())
	f.Add("")
	f.Add("AQAAAAAAAAE")
	c.SetSession(42, 7)
	f.Add(c.String())
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseCursor(s, []string{"a", "b"}, []string{"local", "us"})
		if err != nil {
			return
		}
		epochs := make([]string, p.Len())
		_ = p.Verify(epochs)
		// A cursor that parses re-encodes to a cursor that parses to the same offsets.
		re, _ := NewCursor([]string{"a", "b"}, []string{"local", "us"})
		tag, _ := p.Binding()
		re.SetSession(p.Session(), tag)
		for i := range p.Len() {
			re.SetAt(i, Position{Offset: p.Offset(i)})
		}
		q, err := ParseCursor(re.String(), []string{"a", "b"}, []string{"local", "us"})
		if err != nil {
			t.Fatalf("re-encoded cursor does not parse: %v", err)
		}
		if q.Session() != p.Session() {
			t.Fatalf("session %x != %x", q.Session(), p.Session())
		}
		if qt, _ := q.Binding(); p.Session() != 0 && qt != tag {
			t.Fatalf("binding %x != %x", qt, tag)
		}
		for i := range p.Len() {
			if q.Offset(i) != p.Offset(i) {
				t.Fatalf("slot %d: %d != %d", i, q.Offset(i), p.Offset(i))
			}
		}
	})
}

func BenchmarkCursorEncode(b *testing.B) {
	c, _ := NewCursor([]string{"t1", "t2", "t3", "t4"}, []string{"eu", "us", "ap"})
	for i := range c.Len() {
		c.SetAt(i, Position{Epoch: "0123456789abcdef", Offset: 123456})
	}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.SetAt(i%c.Len(), Position{Epoch: "0123456789abcdef", Offset: uint64(123456 + i)})
		buf = c.AppendEncode(buf[:0])
	}
}

func BenchmarkCursorParse(b *testing.B) {
	topics, origins := []string{"t1", "t2", "t3", "t4"}, []string{"eu", "us", "ap"}
	c, _ := NewCursor(topics, origins)
	for i := range c.Len() {
		c.SetAt(i, Position{Epoch: "0123456789abcdef", Offset: 123456})
	}
	s := c.String()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCursor(s, topics, origins); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeOffsets(t *testing.T) {
	topics, origins := []string{"b", "a", "c"}, []string{"eu", "us"}
	c, _ := NewCursor(topics, origins)
	for i := range c.Len() {
		c.SetAt(i, Position{Epoch: "e", Offset: uint64(i * 1000)})
	}
	got, err := DecodeOffsets(c.String(), 3, nil)
	if err != nil || len(got) != c.Len() {
		t.Fatalf("DecodeOffsets = %v, %v", got, err)
	}
	for i := range got {
		if got[i] != c.At(i).Offset {
			t.Fatalf("slot %d: %d want %d", i, got[i], c.At(i).Offset)
		}
	}
	if _, err := DecodeOffsets(c.String(), 2, nil); err == nil {
		t.Fatal("wrong topic count accepted")
	}
	id := c.String()
	if n := testing.AllocsPerRun(100, func() { got, _ = DecodeOffsets(id, 3, got[:0]) }); n > 0 {
		t.Fatalf("DecodeOffsets allocates %v times", n)
	}
}
