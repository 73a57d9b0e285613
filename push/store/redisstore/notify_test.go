package redisstore

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeNotification(t *testing.T) {
	evs, err := decodeNotification("1\nabcdef0123456789\n42\n1700000000123\nprice.tick\n00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\nline1\nline2")
	if err != nil || len(evs) != 1 {
		t.Fatal(evs, err)
	}
	ev := evs[0]
	if ev.Epoch != "abcdef0123456789" || ev.Offset != 42 || !ev.Time.Equal(time.UnixMilli(1700000000123)) ||
		ev.Type != "price.tick" || ev.TraceParent != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" ||
		string(ev.Data) != "line1\nline2" {
		t.Fatalf("%+v", ev)
	}
	evs, err = decodeNotification("1\ne\n1\n0\nt\n\n")
	if err != nil || len(evs) != 1 || len(evs[0].Data) != 0 || evs[0].TraceParent != "" {
		t.Fatalf("empty data and traceparent: %+v %v", evs, err)
	}
	for _, bad := range []string{"", "3\ne\n1\n0\nt\n\nd", "1\ne\n1\n0\nt",
		"2\ne\n0\n1\n5\nt\n\n1\nx", "2\ne\n0\n2\n5\nt\n\n1\nx\n5\nt\n\n1\ny", "2\ne\n0\n2\n5\nt\n\n1\nx\n6\nt\n\n2\ny",
		"2\ne\n0\n2\n5\nt\n\n1\nxx6\nt\n\n1\ny", "2\ne\n0\n2\n5\nt\n\n1\nx\n6\nt\n\n1\nyz", "2\n\n0\n2\n5\nt\n\n1\nx\n6\nt\n\n1\ny", "1\n\n1\n0\nt\n\n", "1\ne\n0\n0\nt\n\n",
		"1\ne\nx\n0\nt\n\n", "1\ne\n1\nx\nt\n\n", "1\ne\n1\n0\n\n\n", strings.Repeat("x", 1000)} {
		if _, err := decodeNotification(bad); err == nil {
			t.Errorf("decodeNotification(%q) accepted", bad)
		}
	}
}

// Version 2 carries several events, data length-prefixed (a data may hold
// newlines and look like a header).
func TestDecodeNotificationBatch(t *testing.T) {
	evs, err := decodeNotification("2\nep\n1700000000123\n3\n7\nlog\ntp\n3\na\nb\n8\nlog\n\n0\n\n9\nx\n\n5\n1\ne\n1")
	if err != nil || len(evs) != 3 {
		t.Fatalf("%v %v", evs, err)
	}
	want := []struct {
		off        uint64
		typ, tp, d string
	}{{7, "log", "tp", "a\nb"}, {8, "log", "", ""}, {9, "x", "", "1\ne\n1"}}
	for i, w := range want {
		e := evs[i]
		if e.Epoch != "ep" || e.Offset != w.off || e.Type != w.typ || e.TraceParent != w.tp || string(e.Data) != w.d || !e.Time.Equal(time.UnixMilli(1700000000123)) {
			t.Errorf("event %d: %+v", i, e)
		}
	}
}

func FuzzDecodeNotification(f *testing.F) {
	f.Add("1\nabcdef0123456789\n42\n1700000000123\nprice.tick\n00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n{\"a\":1}")
	f.Add("1\ne\n1\n0\nt\n\n")
	f.Add("2\nep\n1700000000123\n3\n7\nlog\ntp\n3\na\nb\n8\nlog\n\n0\n\n9\nx\n\n5\n1\ne\n1")
	f.Fuzz(func(t *testing.T, s string) {
		evs, err := decodeNotification(s)
		if err != nil {
			return
		}
		if len(evs) == 0 || len(evs) > maxNotified {
			t.Fatalf("accepted %d events from %q", len(evs), s)
		}
		var last uint64
		for _, ev := range evs {
			if ev.Offset <= last || ev.Epoch == "" || ev.Type == "" {
				t.Fatalf("accepted an incomplete or unordered notification %q: %+v", s, ev)
			}
			last = ev.Offset
		}
	})
}
