package ingest

import (
	"errors"
	"fmt"

	"github.com/heraldpush/herald/push"
)

// Defaults and bounds of Config.
const (
	// DefaultMaxLines is Config.MaxLines when zero.
	DefaultMaxLines = 1000
	// MaxMaxLines is the largest Config.MaxLines: the most events one store
	// append carries.
	MaxMaxLines = 1000
	// DefaultMaxBodyBytes is Config.MaxBodyBytes when zero.
	DefaultMaxBodyBytes = 4 << 20
	// MaxMaxBodyBytes is the largest Config.MaxBodyBytes.
	MaxMaxBodyBytes = 64 << 20
	// DefaultEventType is the event type of ingested lines unless a
	// profile names another.
	DefaultEventType = "log"
	// AnyKey is the ProfileConfig.APIKey of the profile that applies to
	// callers without one of their own.
	AnyKey = "*"
)

// Dedup modes of ProfileConfig.Dedup.
const (
	// DedupNone publishes every line, retried or not (at-least-once).
	DedupNone = "none"
	// DedupHash keys each line by the SHA-256 of its bytes: a retried
	// line is recognised, and so is a second identical line.
	DedupHash = "hash"
	// DedupField keys each line by the value of DedupField (a line
	// without it falls back to the hash of the line).
	DedupField = "field"
)

// Config configures NDJSON ingest (POST /v1/ingest and
// POST /v1/topics/{topic}/ingest). The zero Config is valid: the default
// limits and no profiles (callers must then name the topic in the URL).
type Config struct {
	// MaxLines caps the events (non-blank lines) of one request
	// (1..1000); a longer body is refused with 413 before anything is
	// appended. Zero means DefaultMaxLines (1000).
	MaxLines int `koanf:"max_lines"`
	// MaxBodyBytes caps one request body (1024..67108864 bytes); the
	// lines of one request are held in memory until they are appended.
	// Zero means DefaultMaxBodyBytes (4 MiB).
	MaxBodyBytes int `koanf:"max_body_bytes"`
	// Profiles configure ingest per API key: the topic template, the
	// default topic, the event type and deduplication.
	Profiles []ProfileConfig `koanf:"profiles"`
}

// ProfileConfig is the ingest configuration of one API key.
type ProfileConfig struct {
	// APIKey is the id of the auth.api_keys entry the profile applies
	// to, or "*" for every caller (API key or token) without a profile of
	// its own.
	APIKey string `koanf:"api_key"`
	// Topic is the topic template of POST /v1/ingest: literal topic
	// characters and placeholders over the line's fields, e.g.
	// "logs.{app}.{level}" or "k8s.{kubernetes.namespace}". Empty means
	// the key must name the topic in the URL.
	Topic string `koanf:"topic"`
	// DefaultTopic takes the lines that lack a field of Topic (absent,
	// null, empty, an object or an array) or are not JSON objects. Empty
	// means such lines are refused (reported per line).
	DefaultTopic string `koanf:"default_topic"`
	// Event is the SSE event type of the key's lines. Empty means "log".
	Event string `koanf:"event"`
	// Dedup is "none" (the default), "hash" (a retried line is
	// recognised by the SHA-256 of its bytes) or "field" (by the value of
	// DedupField; lines without it by their hash). A recognised line
	// within idempotency_window is answered as a duplicate and not
	// published again.
	Dedup string `koanf:"dedup"`
	// DedupField is the field (a name or dotted path) holding each
	// line's unique id, with Dedup "field".
	DedupField string `koanf:"dedup_field"`
}

// Profile is a compiled ProfileConfig.
type Profile struct {
	// Topic renders each line's topic; nil when the URL must name it.
	Topic *Template
	// DefaultTopic takes lines Topic cannot render ("" = refuse them).
	DefaultTopic string
	// Event is the lines' event type.
	Event string
	// Dedup is the dedup mode (DedupNone, DedupHash or DedupField).
	Dedup string
	// DedupPath is the dedup field's path with DedupField.
	DedupPath []string
}

// Profiles are the compiled profiles by API key id.
type Profiles struct {
	byKey map[string]*Profile
	any   *Profile
}

// For returns the profile of an API key id (isAPIKey false: the caller
// used another kind of credential), else the "*" profile, else nil.
func (ps *Profiles) For(keyID string, isAPIKey bool) *Profile {
	if ps == nil {
		return nil
	}
	if isAPIKey {
		if p, ok := ps.byKey[keyID]; ok {
			return p
		}
	}
	return ps.any
}

// Validate reports every problem of the configuration, naming the entry.
func (c Config) Validate() error {
	_, err := c.Compile()
	return err
}

// Limits returns MaxLines and MaxBodyBytes with the defaults filled in.
func (c Config) Limits() (maxLines, maxBody int) {
	maxLines, maxBody = c.MaxLines, c.MaxBodyBytes
	if maxLines == 0 {
		maxLines = DefaultMaxLines
	}
	if maxBody == 0 {
		maxBody = DefaultMaxBodyBytes
	}
	return maxLines, maxBody
}

// Compile validates the configuration and builds its profiles.
func (c Config) Compile() (*Profiles, error) {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.MaxLines < 0 || c.MaxLines > MaxMaxLines {
		fail("ingest.max_lines %d: want 1..%d (0 means %d)", c.MaxLines, MaxMaxLines, DefaultMaxLines)
	}
	if c.MaxBodyBytes != 0 && (c.MaxBodyBytes < 1024 || c.MaxBodyBytes > MaxMaxBodyBytes) {
		fail("ingest.max_body_bytes %d: want 1024..%d (0 means %d)", c.MaxBodyBytes, MaxMaxBodyBytes, DefaultMaxBodyBytes)
	}
	ps := &Profiles{byKey: map[string]*Profile{}}
	for i, pc := range c.Profiles {
		name := fmt.Sprintf("ingest.profiles[%d] (api_key %q)", i, clip(pc.APIKey))
		p, err := pc.compile()
		if err != nil {
			fail("%s: %w", name, err)
			continue
		}
		switch {
		case pc.APIKey == AnyKey:
			if ps.any != nil {
				fail("%s: a second \"*\" profile", name)
			}
			ps.any = p
		default:
			if _, dup := ps.byKey[pc.APIKey]; dup {
				fail("%s: a second profile for this key", name)
			}
			ps.byKey[pc.APIKey] = p
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ps, nil
}

// KeyIDs returns the API key ids profiles name (not "*"), for checks
// against the configured keys.
func (c Config) KeyIDs() []string {
	var ids []string
	for _, p := range c.Profiles {
		if p.APIKey != AnyKey {
			ids = append(ids, p.APIKey)
		}
	}
	return ids
}

func (pc ProfileConfig) compile() (*Profile, error) {
	if pc.APIKey == "" {
		return nil, errors.New("api_key is required (an auth.api_keys id, or \"*\")")
	}
	p := &Profile{Event: pc.Event, Dedup: pc.Dedup, DefaultTopic: pc.DefaultTopic}
	if pc.Topic != "" {
		t, err := ParseTemplate(pc.Topic)
		if err != nil {
			return nil, fmt.Errorf("topic: %w", err)
		}
		p.Topic = t
	}
	if pc.DefaultTopic != "" {
		if err := push.ValidateTopic(pc.DefaultTopic); err != nil {
			return nil, fmt.Errorf("default_topic: %w", err)
		}
		if p.Topic == nil {
			return nil, errors.New("default_topic needs topic (a template)")
		}
	}
	if p.Event == "" {
		p.Event = DefaultEventType
	}
	if err := push.ValidateEventType(p.Event); err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	switch pc.Dedup {
	case "", DedupNone:
		p.Dedup = DedupNone
		if pc.DedupField != "" {
			return nil, errors.New(`dedup_field needs dedup: "field"`)
		}
	case DedupHash:
		if pc.DedupField != "" {
			return nil, errors.New(`dedup_field needs dedup: "field"`)
		}
	case DedupField:
		path, err := parsePath(pc.DedupField)
		if err != nil {
			return nil, fmt.Errorf("dedup_field: %w", err)
		}
		p.DedupPath = path
	default:
		return nil, fmt.Errorf("dedup %q: want none, hash or field", clip(pc.Dedup))
	}
	return p, nil
}
