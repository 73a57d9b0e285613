package auth

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxPatternLen bounds a topic pattern; it equals push.MaxTopicLen.
const MaxPatternLen = 128

// Kind says how a Principal authenticated.
type Kind string

// Principal kinds.
const (
	KindJWT    Kind = "jwt"
	KindAPIKey Kind = "apikey"
	// KindDev is the kind of DevPrincipal, used only in explicit dev mode.
	KindDev Kind = "dev"
)

// Principal is an authenticated caller and what it may do. It is immutable
// once returned: the grant sets are unexported and never modified.
type Principal struct {
	// Subject is the JWT `sub` claim, or the ID of the API key entry.
	Subject string
	// Issuer is the JWT `iss` claim ("" for API keys and DevPrincipal).
	Issuer string
	// Tenant is the API key's tenant (or its ID), or the JWT `tenant`
	// claim; those match ValidateTenant's grammar. A token without a
	// `tenant` claim has its `sub` as tenant, which need not.
	Tenant string
	// Kind is KindJWT, KindAPIKey or KindDev.
	Kind Kind
	// KeyID names the credential for logs: the `kid` of the JWT key that
	// verified the token (may be "" for a single unnamed key), or the API key
	// entry's ID. Never secret.
	KeyID string
	// TokenID is the JWT `jti` claim ("" if absent or for API keys), for
	// revocation deny-lists.
	TokenID string
	// Expires is the token's `exp`; zero for API keys and DevPrincipal, which
	// do not expire. Long-lived streams must end by Expires.
	Expires time.Time
	// Admin may use the cluster admin API: list members, look up and
	// disconnect any session.
	Admin bool

	subscribe grants
	publish   grants
}

// NewPrincipal builds a Principal from explicit grants, for custom
// authenticators and for tests of packages that consume principals. The
// patterns must pass ValidatePattern.
func NewPrincipal(kind Kind, subject, tenant string, subscribe, publish []string) (*Principal, error) {
	sub, err := compileGrants(subscribe)
	if err != nil {
		return nil, fmt.Errorf("%w: subscribe: %w", ErrInvalidConfig, err)
	}
	pub, err := compileGrants(publish)
	if err != nil {
		return nil, fmt.Errorf("%w: publish: %w", ErrInvalidConfig, err)
	}
	return &Principal{Subject: subject, Tenant: tenant, Kind: kind, subscribe: sub, publish: pub}, nil
}

// DevPrincipal returns a principal allowed to subscribe and publish to every
// topic. Use it only in explicit dev mode, never as a fallback.
func DevPrincipal() *Principal {
	all := grants{all: true, patterns: []string{"*"}}
	return &Principal{Subject: "dev", Tenant: "dev", Kind: KindDev, Admin: true, subscribe: all, publish: all}
}

// ID names the identity that owns what p creates (sessions, ADR 0014): the
// API key entry, or the JWT's issuer, subject and tenant. Two principals
// with the same ID are the same owner whatever their grants or expiry; the
// parts are length-prefixed so no two different identities share an ID.
func (p *Principal) ID() string {
	if p == nil {
		return ""
	}
	// Appended, not fmt.Sprintf'd: one allocation on every connect (the
	// format is kind:len(issuer):issuer len(subject):subject len(tenant):tenant).
	var b strings.Builder
	b.Grow(len(p.Kind) + len(p.Issuer) + len(p.Subject) + len(p.Tenant) + 16)
	b.WriteString(string(p.Kind))
	b.WriteByte(':')
	for _, part := range [...]string{p.Issuer, p.Subject, p.Tenant} {
		b.WriteString(strconv.Itoa(len(part))) // no allocation below 100
		b.WriteByte(':')
		b.WriteString(part)
	}
	return b.String()
}

// CanSubscribe reports whether p may subscribe to topic. It is false for a
// nil principal and for a topic outside the topic grammar.
func (p *Principal) CanSubscribe(topic string) bool {
	return p != nil && p.subscribe.allows(topic)
}

// CanPublish reports whether p may publish to topic. It is false for a nil
// principal and for a topic outside the topic grammar.
func (p *Principal) CanPublish(topic string) bool {
	return p != nil && p.publish.allows(topic)
}

// CanPublishAny reports whether p may publish to at least one topic: it
// holds any publish grant. Publish endpoints ask it before reading a body,
// so a subscribe-only credential costs the server no body decoding.
func (p *Principal) CanPublishAny() bool {
	return p != nil && (p.publish.all || len(p.publish.exact) > 0 || len(p.publish.globs) > 0)
}

// CanSubscribeAll reports whether p may subscribe to every one of topics (a
// multi-topic stream needs a grant on each). It is false for no topics.
func (p *Principal) CanSubscribeAll(topics []string) bool {
	return p != nil && len(topics) > 0 && !slices.ContainsFunc(topics, func(t string) bool { return !p.subscribe.allows(t) })
}

// CanPublishAll reports whether p may publish to every one of topics. It is
// false for no topics.
func (p *Principal) CanPublishAll(topics []string) bool {
	return p != nil && len(topics) > 0 && !slices.ContainsFunc(topics, func(t string) bool { return !p.publish.allows(t) })
}

// SubscribePatterns returns a copy of p's subscribe patterns.
func (p *Principal) SubscribePatterns() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.subscribe.patterns)
}

// PublishPatterns returns a copy of p's publish patterns.
func (p *Principal) PublishPatterns() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.publish.patterns)
}

// grants is an immutable compiled set of topic patterns. The zero value
// allows nothing.
type grants struct {
	all      bool
	exact    map[string]struct{}
	globs    []string
	patterns []string
}

func compileGrants(patterns []string) (grants, error) {
	var g grants
	for i, p := range patterns {
		if err := ValidatePattern(p); err != nil {
			return grants{}, fmt.Errorf("pattern %d: %w", i, err)
		}
		switch {
		case p == "*":
			g.all = true
		case strings.Contains(p, "*"):
			g.globs = append(g.globs, p)
		default:
			if g.exact == nil {
				g.exact = make(map[string]struct{}, len(patterns))
			}
			g.exact[p] = struct{}{}
		}
	}
	g.patterns = slices.Clone(patterns)
	return g, nil
}

func (g *grants) allows(topic string) bool {
	if !validTopic(topic) {
		return false
	}
	if g.all {
		return true
	}
	if _, ok := g.exact[topic]; ok {
		return true
	}
	for _, p := range g.globs {
		// path.Match is exactly the glob language ValidatePattern admits:
		// without '/', '?', '[' or '\' its only operator is '*', matching
		// any run of characters; it cannot fail on a validated pattern.
		if ok, _ := path.Match(p, topic); ok {
			return true
		}
	}
	return false
}

// ValidatePattern checks a topic pattern. A pattern is an exact topic (the
// grammar of push.ValidateTopic: [A-Za-z0-9][A-Za-z0-9._:-]*), or a glob in
// which each `*` matches any run of topic characters, including none:
// "chat.*", "*.public", "tenant-42:*:events". "*" alone matches every topic.
// Patterns are at most MaxPatternLen bytes; `?`, `[` and `\` have no meaning
// and are rejected.
func ValidatePattern(p string) error {
	if len(p) == 0 || len(p) > MaxPatternLen {
		return fmt.Errorf("pattern %q: length must be 1..%d", clip(p), MaxPatternLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '*' || isAlnum(c) || (i > 0 && isTopicPunct(c)) {
			continue
		}
		return fmt.Errorf("pattern %q: character %d not allowed (topic characters [A-Za-z0-9._:-], not first unless alphanumeric, and '*')", clip(p), i)
	}
	return nil
}

// validTopic mirrors push.ValidateTopic (a test keeps them in step). It is
// duplicated rather than imported so that package push may depend on auth.
func validTopic(t string) bool {
	if len(t) == 0 || len(t) > MaxPatternLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !isAlnum(c) && (i == 0 || !isTopicPunct(c)) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func isTopicPunct(c byte) bool { return c == '.' || c == '_' || c == ':' || c == '-' }
