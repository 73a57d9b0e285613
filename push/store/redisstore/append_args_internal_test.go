package redisstore

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
)

// appendArgs runs on every publish: its keys and fixed arguments are built
// in a bounded number of allocations (one string holding every name, the
// two slices, and only the boxing that varies per call), whatever the
// retention rules.
func TestAppendArgsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	s, err := New(Config{URL: "redis://127.0.0.1:1", KeyPrefix: "hp", Origin: "eu-1",
		Retention: push.RetentionPolicy{Rules: []push.RetentionRule{{Pattern: "x*", Retention: push.Retention{MaxLen: 5000, MaxAge: time.Minute}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	drafts := []push.Draft{{Type: "tick", Data: []byte(`{"px":1}`), TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	for _, topic := range []string{"topic-1234", "xrule"} {
		got := testing.AllocsPerRun(200, func() { _, _, _ = s.appendArgs(topic, drafts) })
		// names (1), keys and args slices (2), epoch and channel boxed (2),
		// the draft's type, data and traceparent boxed (3).
		if got > 8 {
			t.Errorf("appendArgs(%q): %.0f allocations per call, want at most 8", topic, got)
		}
	}
}

// The arguments appendArgs builds are what the script has always received:
// same keys, same ARGV text (go-redis sends an integer as its decimal text).
func TestAppendArgsValues(t *testing.T) {
	ret := push.Retention{MaxLen: 5000, MaxAge: time.Minute}
	s, err := New(Config{URL: "redis://127.0.0.1:1", KeyPrefix: "hp", Origin: "eu-1", IdempotencyWindow: 10 * time.Minute,
		Retention: push.RetentionPolicy{Rules: []push.RetentionRule{{Pattern: "x*", Retention: ret}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	drafts := []push.Draft{{Data: []byte("a"), TraceParent: "tp"}, {Type: "t2", Data: nil, IdempotencyKey: "k"}}
	for _, tc := range []struct {
		topic string
		ret   push.Retention
	}{{"xa", ret}, {"other", push.DefaultRetention}} {
		keys, args, size := s.appendArgs(tc.topic, drafts)
		tag := "hp:{" + tc.topic + "@eu-1}:"
		if len(keys) != 4 || keys[0] != tag+"s" || keys[1] != tag+"m" || len(keys[2]) != len(tag)+2+32 || keys[2][:len(tag)+2] != tag+"c:" ||
			keys[3] != idemKey(tag, "k") {
			t.Fatalf("%s: keys %q", tc.topic, keys)
		}
		text := make([]string, len(args))
		for i, a := range args {
			switch v := a.(type) {
			case string:
				text[i] = v
			case []byte:
				text[i] = string(v)
			case int:
				text[i] = strconv.Itoa(v)
			case int64:
				text[i] = strconv.FormatInt(v, 10)
			default:
				t.Fatalf("arg %d: %T", i, a)
			}
		}
		gran := max(tc.ret.MaxAge/100, 10*time.Millisecond)
		want := []string{text[0], "hp:n:" + tc.topic + "@eu-1",
			strconv.FormatInt(tc.ret.MaxLen, 10), "0", strconv.FormatInt(tc.ret.MaxAge.Milliseconds(), 10),
			strconv.FormatInt(max(2*tc.ret.MaxAge, MinIdleTTL).Milliseconds(), 10), "600000",
			strconv.FormatInt(gran.Milliseconds(), 10), strconv.Itoa(push.MaxLineage), "2",
			push.DefaultEventType, "a", "tp", "0", "t2", "", "", "4"}
		if tc.ret.MaxLen >= ExactTrimBelow {
			want[3] = "1"
		}
		if len(text[0]) != 16 || !slices.Equal(text, want) {
			t.Fatalf("%s: args\n got %q\nwant %q", tc.topic, text, want)
		}
		if size < 256 {
			t.Fatalf("size %d", size)
		}
	}
}
