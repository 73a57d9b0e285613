package sse

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAppendBody(t *testing.T) {
	tests := []struct {
		name, typ, data, want string
	}{
		{"plain", "", "hello", "data: hello\n"},
		{"message type omitted", "message", "hello", "data: hello\n"},
		{"typed", "add", "x", "event: add\ndata: x\n"},
		{"empty data", "add", "", "event: add\ndata: \n"},
		{"LF", "", "a\nb", "data: a\ndata: b\n"},
		{"CRLF", "", "a\r\nb", "data: a\ndata: b\n"},
		{"bare CR", "", "a\rb", "data: a\ndata: b\n"},
		{"trailing LF", "", "a\n", "data: a\ndata: \n"},
		{"trailing CR", "", "a\r", "data: a\ndata: \n"},
		{"only LF", "", "\n", "data: \ndata: \n"},
		{"CR CRLF", "", "\r\r\n", "data: \ndata: \ndata: \n"},
		{"LF CR is two breaks", "", "a\n\rb", "data: a\ndata: \ndata: b\n"},
		{"leading space kept", "", " x", "data:  x\n"},
		{"colon in data", "", "a: b", "data: a: b\n"},
		{"many CR few LF", "", "1\r2\r3\n4\r5", "data: 1\ndata: 2\ndata: 3\ndata: 4\ndata: 5\n"},
		{"type with line break", "a\r\nb", "x", "event: a  b\ndata: x\n"},
		{"unicode", "", "é😀\n日本", "data: é😀\ndata: 日本\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendBody([]byte("PREFIX"), tt.typ, []byte(tt.data)))
			if got != "PREFIX"+tt.want {
				t.Fatalf("AppendBody(%q, %q) = %q, want %q", tt.typ, tt.data, got, "PREFIX"+tt.want)
			}
		})
	}
}

func TestAppendEvent(t *testing.T) {
	tests := []struct {
		id, typ, data, want string
	}{
		{"1", "", "x", "id: 1\ndata: x\n\n"},
		{"", "", "x", "data: x\n\n"},
		{"AQID-_x", "herald.hello", `{"a":1}`, "id: AQID-_x\nevent: herald.hello\ndata: {\"a\":1}\n\n"},
		{"bad\nid\x00", "", "", "id: bad id \ndata: \n\n"},
	}
	for _, tt := range tests {
		if got := string(AppendEvent(nil, tt.id, tt.typ, []byte(tt.data))); got != tt.want {
			t.Errorf("AppendEvent(%q, %q, %q) = %q, want %q", tt.id, tt.typ, tt.data, got, tt.want)
		}
	}
}

func TestAppendRetryAndComment(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{string(AppendRetry(nil, 1500*time.Millisecond)), "retry: 1500\n\n"},
		{string(AppendRetry(nil, 0)), "retry: 0\n\n"},
		{string(AppendRetry(nil, -time.Second)), "retry: 0\n\n"},
		{string(AppendRetry(nil, 500*time.Microsecond)), "retry: 1\n\n"},
		{string(AppendRetry(nil, 1999*time.Microsecond)), "retry: 1\n\n"},
		{string(AppendComment(nil, "")), ":\n\n"},
		{string(AppendComment(nil, "ping")), ": ping\n\n"},
		{string(AppendComment(nil, "a\r\nb\rc\nd")), ": a  b c d\n\n"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("case %d: got %q, want %q", i, tt.got, tt.want)
		}
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"", true},
		{"AQIDBA", true},
		{"1-2-3 x:y", true},
		{"é", true},
		{"a\nb", false},
		{"a\rb", false},
		{"a\x00b", false},
		{"\xff", false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestEncodeZeroAlloc(t *testing.T) {
	buf := make([]byte, 0, 4096)
	data := []byte("line one\r\nline two\rline three\n{\"k\":\"v\"}")
	allocs := testing.AllocsPerRun(100, func() {
		b := AppendEvent(buf[:0], "AQIDBAUGBwgJ", "update", data)
		b = AppendRetry(b, 3*time.Second)
		b = AppendComment(b, "keep-alive")
		_ = AppendBody(b, "x", data)
	})
	if allocs != 0 {
		t.Fatalf("encoding allocated %v times per run, want 0", allocs)
	}
}

// The encoder scans each byte a bounded number of times, whatever the mix of
// line breaks; this guards the cached CR/LF positions in appendData.
func TestAppendBodyManyLines(t *testing.T) {
	data := []byte(strings.Repeat("x\n", 50_000) + "\r")
	got := string(AppendBody(nil, "", data))
	if want := strings.Repeat("data: x\n", 50_000) + "data: \ndata: \n"; got != want {
		t.Fatalf("len = %d, want %d", len(got), len(want))
	}
}

func benchmarkAppendEvent(b *testing.B, size int, lines int) {
	line := strings.Repeat("x", max(size/lines-1, 0))
	data := []byte(strings.TrimSuffix(strings.Repeat(line+"\n", lines), "\n"))
	buf := make([]byte, 0, 2*size+128)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		buf = AppendEvent(buf[:0], "AQIDBAUGBwgJCgsMDQ4PEA", "update", data)
	}
}

func BenchmarkAppendEvent(b *testing.B) {
	for _, size := range []int{64, 1024, 16 << 10} {
		for _, lines := range []int{1, 16} {
			b.Run(fmt.Sprintf("size=%d/lines=%d", size, lines), func(b *testing.B) {
				benchmarkAppendEvent(b, size, lines)
			})
		}
	}
}
