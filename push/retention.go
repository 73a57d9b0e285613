package push

import (
	"fmt"
	"path"
	"time"
)

// Retention bounds a stream's history. Both bounds apply; zero disables one.
type Retention struct {
	// MaxLen is the number of most recent events kept (approximately: the
	// Redis store trims whole macro-nodes, so it may keep somewhat more).
	MaxLen int64 `koanf:"max_len" json:"max_len"`
	// MaxAge drops events older than this.
	MaxAge time.Duration `koanf:"max_age" json:"max_age"`
}

// RetentionRule applies Retention to topics matching Pattern (path.Match
// syntax: '*' matches any run of characters, since topics contain no '/').
type RetentionRule struct {
	// Pattern selects the topics the rule applies to ('*' matches any run
	// of characters); the first matching rule wins.
	Pattern   string `koanf:"pattern" json:"pattern"`
	Retention `koanf:",squash"`
}

// RetentionPolicy picks a topic's Retention: the first matching rule, else Default.
type RetentionPolicy struct {
	// Default applies to topics no rule matches.
	Default Retention `koanf:"default"`
	// Rules override Default for the topics they match, first match wins.
	Rules []RetentionRule `koanf:"rules"`
}

// DefaultRetention is used when a policy leaves everything zero.
var DefaultRetention = Retention{MaxLen: 100_000, MaxAge: 24 * time.Hour}

// For returns the retention of topic.
func (p RetentionPolicy) For(topic string) Retention {
	for _, r := range p.Rules {
		if ok, _ := path.Match(r.Pattern, topic); ok {
			return r.Retention
		}
	}
	if p.Default == (Retention{}) {
		return DefaultRetention
	}
	return p.Default
}

// Validate reports malformed patterns and negative bounds.
func (p RetentionPolicy) Validate() error {
	check := func(what string, r Retention) error {
		if r.MaxLen < 0 || r.MaxAge < 0 {
			return fmt.Errorf("retention %s: max_len and max_age must not be negative", what)
		}
		return nil
	}
	if err := check("default", p.Default); err != nil {
		return err
	}
	for i, r := range p.Rules {
		if _, err := path.Match(r.Pattern, ""); err != nil {
			return fmt.Errorf("retention rule %d: bad pattern %q: %v", i, r.Pattern, err)
		}
		if err := check(fmt.Sprintf("rule %d (%s)", i, r.Pattern), r.Retention); err != nil {
			return err
		}
	}
	return nil
}
