package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push/auth"
)

func TestGrants(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		allow    []string
		deny     []string
	}{
		{"no patterns denies everything", nil, nil, []string{"a", "chat.1", "*"}},
		{"exact", []string{"news"}, []string{"news"}, []string{"news2", "new", "News", "news.x"}},
		{"suffix glob", []string{"chat.*"}, []string{"chat.", "chat.1", "chat.a.b.c"}, []string{"chat", "chatx", "xchat.1"}},
		{"prefix glob", []string{"*.public"}, []string{"a.public", "x.y.public"}, []string{"public", "a.public.x"}},
		{"inner glob", []string{"tenant-*:events"}, []string{"tenant-42:events", "tenant-:events"}, []string{"tenant-42:event", "tenant-42:events.x"}},
		{"two stars", []string{"a*b*c"}, []string{"abc", "aXbYc", "abbbc", "abcbc"}, []string{"ab", "acb", "abcd"}},
		{"star matches all", []string{"*"}, []string{"a", "chat.1", "Z-9", strings.Repeat("t", 128)}, []string{"", "-a", "a/b", "a b", "a*", strings.Repeat("t", 129)}},
		{"several patterns", []string{"news", "chat.*", "*.alerts"}, []string{"news", "chat.x", "ops.alerts"}, []string{"sports", "alerts"}},
		{"invalid topics never match", []string{"a*"}, []string{"a", "a.b"}, []string{"a/b", "a\n", "a b", "a\x00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := auth.NewPrincipal(auth.KindJWT, "s", "t", tt.patterns, tt.patterns)
			if err != nil {
				t.Fatal(err)
			}
			for _, topic := range tt.allow {
				if !p.CanSubscribe(topic) || !p.CanPublish(topic) {
					t.Errorf("%q denied", topic)
				}
			}
			for _, topic := range tt.deny {
				if p.CanSubscribe(topic) || p.CanPublish(topic) {
					t.Errorf("%q allowed", topic)
				}
			}
		})
	}
}

func TestGrantsDirectionsAndMultiTopic(t *testing.T) {
	p, err := auth.NewPrincipal(auth.KindJWT, "s", "t", []string{"chat.*", "news"}, []string{"chat.room1"})
	if err != nil {
		t.Fatal(err)
	}
	if p.CanPublish("news") || !p.CanSubscribe("news") {
		t.Error("subscribe grant leaked into publish or was lost")
	}
	if !p.CanSubscribeAll([]string{"chat.a", "chat.b", "news"}) {
		t.Error("multi-topic subscribe with every topic granted was denied")
	}
	if p.CanSubscribeAll([]string{"chat.a", "sports", "news"}) {
		t.Error("multi-topic subscribe with one ungranted topic was allowed")
	}
	if p.CanSubscribeAll(nil) || p.CanPublishAll(nil) {
		t.Error("empty topic list allowed")
	}
	if !p.CanPublishAll([]string{"chat.room1"}) || p.CanPublishAll([]string{"chat.room1", "chat.room2"}) {
		t.Error("CanPublishAll wrong")
	}
	if got := p.SubscribePatterns(); len(got) != 2 || got[0] != "chat.*" {
		t.Errorf("SubscribePatterns = %q", got)
	} else {
		got[0] = "*"
		if p.CanSubscribe("sports") {
			t.Error("SubscribePatterns exposed internal state")
		}
	}

	if !p.CanPublishAny() {
		t.Error("CanPublishAny false with a publish grant")
	}
	for _, pub := range [][]string{{"*"}, {"orders"}, {"orders.*"}} {
		q, err := auth.NewPrincipal(auth.KindAPIKey, "s", "t", nil, pub)
		if err != nil || !q.CanPublishAny() {
			t.Errorf("CanPublishAny false for publish grants %q (%v)", pub, err)
		}
	}
	subOnly, err := auth.NewPrincipal(auth.KindJWT, "s", "t", []string{"*"}, nil)
	if err != nil || subOnly.CanPublishAny() {
		t.Errorf("CanPublishAny true for a subscribe-only principal (%v)", err)
	}

	var nilP *auth.Principal
	if nilP.CanPublishAny() {
		t.Error("nil principal can publish")
	}
	if nilP.CanSubscribe("a") || nilP.CanPublish("a") || nilP.CanSubscribeAll([]string{"a"}) {
		t.Error("nil principal allowed something")
	}

	dev := auth.DevPrincipal()
	if dev.Kind != auth.KindDev || !dev.CanSubscribe("x") || !dev.CanPublish("y.z") || !dev.CanSubscribeAll([]string{"a", "b"}) {
		t.Errorf("DevPrincipal = %+v not allowed everything", dev)
	}
	if !dev.CanPublishAny() {
		t.Error("DevPrincipal cannot publish")
	}
	if dev.CanPublish("bad topic") {
		t.Error("DevPrincipal allowed an invalid topic")
	}

	if _, err := auth.NewPrincipal(auth.KindJWT, "s", "t", []string{"ok", "bad/one"}, nil); !errors.Is(err, auth.ErrInvalidConfig) {
		t.Errorf("NewPrincipal with bad pattern: err = %v", err)
	}
}

func TestValidatePattern(t *testing.T) {
	valid := []string{"*", "a", "chat.*", "*.x", "a*b*c", "**", "T:1_2-3.x", strings.Repeat("a", 128), "*-x"}
	invalid := []string{"", "-a", ".a", "a/b", "a?", "a[bc]", `a\*`, "a b", "é", "a\n", "a\x00", strings.Repeat("a", 129), "chat/*"}
	for _, p := range valid {
		if err := auth.ValidatePattern(p); err != nil {
			t.Errorf("ValidatePattern(%q) = %v", p, err)
		}
	}
	for _, p := range invalid {
		if err := auth.ValidatePattern(p); err == nil {
			t.Errorf("ValidatePattern(%q) accepted", p)
		}
	}
}
