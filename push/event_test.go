package push

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateTopic(t *testing.T) {
	good := []string{"a", "orders", "chat.room-1", "prices:eu_1", "A9", strings.Repeat("x", MaxTopicLen)}
	bad := []string{"", ".a", "-a", "a b", "a/b", "a{b}", "a@b", "a*", "a\nb", "é", strings.Repeat("x", MaxTopicLen+1), "a\x00"}
	for _, s := range good {
		if err := ValidateTopic(s); err != nil {
			t.Errorf("ValidateTopic(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range bad {
		if err := ValidateTopic(s); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) = %v, want ErrInvalidTopic", s, err)
		}
	}
}

func TestValidateEventTypeAndData(t *testing.T) {
	if err := ValidateEventType("herald.reset"); !errors.Is(err, ErrInvalidEvent) {
		t.Errorf("reserved prefix accepted: %v", err)
	}
	for _, s := range []string{"a\nb", "a\rb", "", "x y"} {
		if err := ValidateEventType(s); err == nil {
			t.Errorf("ValidateEventType(%q) accepted", s)
		}
	}
	if err := ValidateEventType("order.created"); err != nil {
		t.Error(err)
	}
	if err := ValidateData([]byte("ok\r\n\"é\""), 64); err != nil {
		t.Error(err)
	}
	for _, d := range [][]byte{[]byte("a\x00b"), {0xff, 0xfe}, []byte(strings.Repeat("x", 65))} {
		if err := ValidateData(d, 64); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("ValidateData(%q) = %v", d, err)
		}
	}
}

func TestRetentionPolicy(t *testing.T) {
	p := RetentionPolicy{
		Default: Retention{MaxLen: 10},
		Rules:   []RetentionRule{{Pattern: "chat.*", Retention: Retention{MaxLen: 5}}},
	}
	if got := p.For("chat.x").MaxLen; got != 5 {
		t.Errorf("chat.x: %d", got)
	}
	if got := p.For("orders").MaxLen; got != 10 {
		t.Errorf("orders: %d", got)
	}
	if got := (RetentionPolicy{}).For("x"); got != DefaultRetention {
		t.Errorf("empty policy: %+v", got)
	}
	if err := (RetentionPolicy{Rules: []RetentionRule{{Pattern: "["}}}).Validate(); err == nil {
		t.Error("bad pattern accepted")
	}
}
