package redisstore

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeNotification(t *testing.T) {
	ev, err := decodeNotification("1\nabcdef0123456789\n42\n1700000000123\nprice.tick\n00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\nline1\nline2")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Epoch != "abcdef0123456789" || ev.Offset != 42 || !ev.Time.Equal(time.UnixMilli(1700000000123)) ||
		ev.Type != "price.tick" || ev.TraceParent != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" ||
		string(ev.Data) != "line1\nline2" {
		t.Fatalf("%+v", ev)
	}
	ev, err = decodeNotification("1\ne\n1\n0\nt\n\n")
	if err != nil || len(ev.Data) != 0 || ev.TraceParent != "" {
		t.Fatalf("empty data and traceparent: %+v %v", ev, err)
	}
	for _, bad := range []string{"", "2\ne\n1\n0\nt\n\nd", "1\ne\n1\n0\nt", "1\n\n1\n0\nt\n\n", "1\ne\n0\n0\nt\n\n",
		"1\ne\nx\n0\nt\n\n", "1\ne\n1\nx\nt\n\n", "1\ne\n1\n0\n\n\n", strings.Repeat("x", 1000)} {
		if _, err := decodeNotification(bad); err == nil {
			t.Errorf("decodeNotification(%q) accepted", bad)
		}
	}
}

func FuzzDecodeNotification(f *testing.F) {
	f.Add("1\nabcdef0123456789\n42\n1700000000123\nprice.tick\n00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n{\"a\":1}")
	f.Add("1\ne\n1\n0\nt\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		ev, err := decodeNotification(s)
		if err == nil && (ev.Offset == 0 || ev.Epoch == "" || ev.Type == "") {
			t.Fatalf("accepted an incomplete notification %q: %+v", s, ev)
		}
	})
}
