package wire_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/heraldpush/herald/push/wire"
)

// sseData is what an SSE client receives for data: line breaks as LF.
func sseData(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

func TestAppendFrameDecodesAsSSEData(t *testing.T) {
	for _, data := range []string{
		"", "plain", `{"a":1,"b":"x\"y"}`, "two\nlines", "crlf\r\nlines\r\n", "lone\rcr", "tab\tand \x01 control",
		"unicode é 漢字 \u2028 \u2029 😀", `back\slash`, "</script>",
	} {
		b := wire.AppendFrame(nil, []byte("CUR"), "price", "orders", []byte(data))
		var f wire.Frame
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("%q: frame %s is not JSON: %v", data, b, err)
		}
		if f != (wire.Frame{ID: "CUR", Event: "price", Topic: "orders", Data: sseData(data)}) {
			t.Fatalf("%q: decoded %+v", data, f)
		}
	}
	b := wire.AppendFrame(nil, nil, "herald.hello", "", []byte(`{"x":1}`))
	if string(b) != `{"event":"herald.hello","data":"{\"x\":1}"}` {
		t.Fatalf("control frame %s", b)
	}
}

func TestEncodeZeroAlloc(t *testing.T) {
	buf := make([]byte, 0, 1024)
	data := []byte(`{"sym":"ABC","price":123.45}`)
	if n := testing.AllocsPerRun(100, func() { buf = wire.AppendFrame(buf[:0], []byte("CUR"), "price", "orders", data) }); n != 0 {
		t.Fatalf("AppendFrame allocates %.0f times", n)
	}
}

func FuzzAppendFrame(f *testing.F) {
	for _, s := range []string{"", "a\r\nb", "\r", "é\u2028", "\x00\x1f\"\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		if !utf8.ValidString(data) {
			return // the store holds only valid UTF-8
		}
		var fr wire.Frame
		if err := json.Unmarshal(wire.AppendFrame(nil, []byte("id"), "t", "x", []byte(data)), &fr); err != nil {
			t.Fatalf("%q: not JSON: %v", data, err)
		}
		if fr.Data != sseData(data) {
			t.Fatalf("%q: data %q, want %q", data, fr.Data, sseData(data))
		}
	})
}

func TestParseRequest(t *testing.T) {
	ok := []string{
		`{"type":"auth","token":"k"}`,
		`{"type":"subscribe","topics":["a","b"]}`,
		`{"type":"subscribe","topics":["a"],"cursor":"abc","ref":"1"}`,
		`{"type":"unsubscribe","topics":["a"]}`,
		`{"type":"publish","ref":"r1","topic":"a","event":"e","data":{"x":1},"idempotency_key":"k1"}`,
		`{"type":"publish","topic":"a","data":"text"}`,
	}
	for _, m := range ok {
		if _, err := wire.ParseRequest([]byte(m), 4); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	bad := []string{
		``, `null`, `[]`, `{}`, `{"type":"nope"}`, `{"type":"auth"}`, `{"type":"auth","token":"k","topics":["a"]}`,
		`{"type":"subscribe"}`, `{"type":"subscribe","topics":["a","b","c","d","e"]}`,
		`{"type":"unsubscribe","topics":["a"],"cursor":"c"}`, `{"type":"publish","data":1}`,
		`{"type":"publish","topic":"a","topics":["b"]}`, `{"type":"auth","token":"k"}{"type":"auth","token":"k"}`,
		`{"type":"auth","token":"k","extra":1}`, `{"type":"publish","topic":"a","ref":"` + strings.Repeat("r", 65) + `"}`,
		`{"type":"publish","topic":"a","ref":"\n"}`,
	}
	for _, m := range bad {
		if _, err := wire.ParseRequest([]byte(m), 4); !errors.Is(err, wire.ErrInvalidRequest) {
			t.Errorf("%s: err %v, want ErrInvalidRequest", m, err)
		}
	}
}

// FuzzParseRequest: any message is refused with ErrInvalidRequest or
// accepted as a request of a known type that re-encodes to an accepted
// message; nothing panics.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"type":"auth","token":"k"}`, `{"type":"subscribe","topics":["a"],"cursor":"x"}`,
		`{"type":"unsubscribe","topics":["a"]}`, `{"type":"publish","ref":"1","topic":"a","event":"e","data":{"x":[1,2]},"idempotency_key":"k"}`,
		`{"type":"publish","topic":"a","data":"a\nb"}`, `{"type":1}`, `{"type":"auth","token":"k"} x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := wire.ParseRequest(msg, 8)
		if err != nil {
			if !errors.Is(err, wire.ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
			return
		}
		switch r.Type {
		case wire.TypeAuth, wire.TypeSubscribe, wire.TypeUnsubscribe, wire.TypePublish:
		default:
			t.Fatalf("accepted type %q", r.Type)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wire.ParseRequest(again, 8); err != nil {
			t.Fatalf("accepted %q, re-encoded %s refused: %v", msg, again, err)
		}
	})
}

// A publish's answer is written by PublishResult.AppendJSON: byte for byte
// what json.Marshal writes, or a refusal that sends the caller to Marshal.
func TestPublishResultAppendJSONIsMarshal(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 4, 5, 678_900_000, time.UTC)
	cases := []wire.PublishResult{
		{Topic: "orders.eu-1", Origin: "local", Epoch: "3f2a9c1d7e5b4a60", Offset: 1, Time: at},
		{Topic: "t", Origin: "eu-west", Epoch: "e", Offset: 1<<64 - 1, Time: at.Truncate(time.Second), Duplicate: true},
		{Topic: "a:b_c-d", Origin: "x", Epoch: "0000000000000000", Time: at.In(time.FixedZone("", 5*3600+30*60))},
		{Topic: "t", Origin: "o", Epoch: "ep", Time: time.Time{}},
		{Topic: `q"uote`, Origin: "o", Epoch: "e", Time: at},
		{Topic: "t", Origin: "<o>", Epoch: "e&", Time: at},
		{Topic: "t", Origin: "o", Epoch: "é\x01", Time: at},
		{Topic: "t", Origin: "o", Epoch: "e", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, r := range cases {
		want, merr := json.Marshal(r)
		got, ok := r.AppendJSON([]byte("prefix"))
		if !ok {
			if string(got) != "prefix" {
				t.Errorf("%+v: refused but wrote %q", r, got)
			}
			continue
		}
		if merr != nil {
			t.Errorf("%+v: AppendJSON wrote %q where Marshal fails: %v", r, got, merr)
			continue
		}
		if string(got) != "prefix"+string(want) {
			t.Errorf("%+v:\n got %s\nwant prefix%s", r, got, want)
		}
	}
	// The ordinary answer never falls back.
	if _, ok := cases[0].AppendJSON(nil); !ok {
		t.Fatal("a plain result fell back to Marshal")
	}
}
