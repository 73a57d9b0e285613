package auth_test

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/auth"
)

// TestTopicGrammarMatchesPush keeps auth's copy of the topic grammar in step
// with push.ValidateTopic: a star-free pattern is valid exactly when it is a
// valid topic, and the catch-all "*" grants exactly the valid topics.
func TestTopicGrammarMatchesPush(t *testing.T) {
	if auth.MaxPatternLen != push.MaxTopicLen {
		t.Fatalf("MaxPatternLen %d != push.MaxTopicLen %d", auth.MaxPatternLen, push.MaxTopicLen)
	}
	all := auth.DevPrincipal()
	corpus := []string{"", "a", "A", "0", "-", ".", "_", ":", "a-", "a.b", "a/b", "a b", "a@b", "{a}", "ä",
		strings.Repeat("x", push.MaxTopicLen), strings.Repeat("x", push.MaxTopicLen+1)}
	const alphabet = "aZ09._:-/ @{}*?\x00\n"
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		b := make([]byte, 1+rng.IntN(6))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		corpus = append(corpus, string(b))
	}
	for _, s := range corpus {
		valid := push.ValidateTopic(s) == nil
		if all.CanSubscribe(s) != valid {
			t.Errorf("topic %q: push valid=%v, auth grants=%v", s, valid, !valid)
		}
		if !strings.Contains(s, "*") && (auth.ValidatePattern(s) == nil) != valid {
			t.Errorf("pattern %q: push valid=%v, ValidatePattern disagrees", s, valid)
		}
	}
}

func TestValidateTenant(t *testing.T) {
	for _, ok := range []string{"a", "acme", "tenant-42", "A.b_c-9", ".", strings.Repeat("t", auth.MaxTenantLen)} {
		if err := auth.ValidateTenant(ok); err != nil {
			t.Errorf("ValidateTenant(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ta/x", "a:b", "a@b", "a b", "é", "a\n", "a\x00", strings.Repeat("t", auth.MaxTenantLen+1)} {
		err := auth.ValidateTenant(bad)
		if err == nil {
			t.Errorf("ValidateTenant(%q) accepted", bad)
			continue
		}
		if want := strconv.Quote(bad); len(bad) <= 64 && !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateTenant(%q) = %q, want it to name the value", bad, err)
		}
	}
}
