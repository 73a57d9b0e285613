package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// publishBodySeeds are real and near-real publish bodies.
var publishBodySeeds = []string{
	`{"event":"price","data":"{\"sym\":\"ABC\",\"price\":123.45}"}`,
	`{"data":{"sym":"ABC","px":[1,2,{"a":"}"}]},"event":"tick"}`,
	` { "event" : "t" , "data" : 12.5e3 } ` + "\n",
	`{"data":"plain text"}`, `{"data":true}`, `{"data":null}`, `{}`, `{"event":"x"}`,
	`{"Event":"x","data":1}`, `{"event":"x","event":"y","data":1}`, `{"event":"x","data":1}x`,
	`{"event":"x","data":1,}`, `{"event":"a\u0062","data":"s"}`, `{"event":"x","data":"\ud800"}`,
	`{"event":"x","data":[1,2}`, `{"event":"x","data":tru}`, `{"data":"a\"b"}`, `{"data":{"a":"\\"}}`,
	`{"extra":1,"data":1}`, `[]`, `null`, `{"event":1,"data":1}`, "{\"event\":\"\xff\",\"data\":1}",
	`{"data":-0.5}`, `{"data":01}`, `{"data":"x"}{"data":"y"}`, `{"data":1 }   `,
}

// Whatever parsePublishBody accepts, encoding/json's strict decoding of the
// same body succeeds with the same event and data; and bodies of the usual
// shape are accepted.
func FuzzParsePublishBody(f *testing.F) {
	for _, s := range publishBodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		event, data, ok := parsePublishBody(b)
		if !ok {
			return
		}
		var req publishRequest
		if err := decodeStrict(bytes.NewReader(b), &req); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refused it: %v", b, err)
		}
		if req.Event != string(event) || !bytes.Equal(req.Data, data) || (req.Data == nil) != (data == nil) {
			t.Fatalf("%q: fast path (%q, %q), encoding/json (%q, %q)", b, event, data, req.Event, req.Data)
		}
	})
}

func TestParsePublishBody(t *testing.T) {
	for _, tc := range []struct {
		body        string
		ok          bool
		event, data string
	}{
		{`{"event":"price","data":"{\"sym\":1}"}`, true, "price", `"{\"sym\":1}"`},
		{` {"data" : {"a":[1,"]"]} ,"event":"t"} ` + "\r\n", true, "t", `{"a":[1,"]"]}`},
		{`{"data":12}`, true, "", "12"},
		{`{}`, true, "", ""},
		{`{"data":null}`, false, "", ""},             // encoding/json decides
		{`{"Event":"x","data":1}`, false, "", ""},    // case-folded name
		{`{"event":"x","event":"y"}`, false, "", ""}, // repeated member
		{`{"event":"a\u0062"}`, false, "", ""},       // escape
		{`{"data":1}x`, false, "", ""},               // trailing data
		{`{"data":tru}`, false, "", ""},              // invalid value
		{`{"extra":1}`, false, "", ""},               // unknown field
	} {
		event, data, ok := parsePublishBody([]byte(tc.body))
		if ok != tc.ok || (ok && (string(event) != tc.event || string(data) != tc.data)) {
			t.Errorf("parsePublishBody(%q) = %q, %q, %v; want %q, %q, %v", tc.body, event, data, ok, tc.event, tc.data, tc.ok)
		}
	}
}

// A body read whole and replayed with its read error decodes as the
// streaming decoder decoded it: a body over the limit is 413 however
// malformed, as before; an early syntax error inside the limit is 400.
func TestDecodeStrictReplaysReadError(t *testing.T) {
	tooBig := &http.MaxBytesError{Limit: 10}
	for _, tc := range []struct {
		body string
		err  error
		want func(error) bool
	}{
		{`{"data":"aaaaaaaa`, tooBig, func(err error) bool { var m *http.MaxBytesError; return errors.As(err, &m) }},
		{`{"data":"a"}`, nil, func(err error) bool { return err == nil }},
		{`{"data" x`, tooBig, func(err error) bool { var a *apiError; return errors.As(err, &a) && a.Status == 400 }},
	} {
		var req publishRequest
		r := io.Reader(strings.NewReader(tc.body))
		if tc.err != nil {
			r = &errAfter{b: []byte(tc.body), err: tc.err}
		}
		if err := decodeStrict(r, &req); !tc.want(err) {
			t.Errorf("%q then %v: %v", tc.body, tc.err, err)
		}
	}
}

// The usual publish body parses without an allocation.
func TestParsePublishBodyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	b := []byte(`{"event":"price","data":"{\"sym\":\"ABC\",\"price\":123.45}"}`)
	if n := testing.AllocsPerRun(100, func() { _, _, _ = parsePublishBody(b) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
	var req publishRequest
	if n := testing.AllocsPerRun(100, func() { _ = decodeStrict(bytes.NewReader(b), &req) }); n < 3 {
		t.Errorf("encoding/json's strict decoding: %v allocations (the fast path's reason)", n)
	}
}
