package push

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
)

// Cursor wire format, version 3 (the SSE `id:` of every Herald event):
//
//	base64url-nopad(
//	  u8      version (=3; 2 is the same without the binding, 1 also without the session id)
//	  u16 BE  topic-set hash   (FNV-1a of the sorted topics; binds the cursor to its URL)
//	  u32 BE  epoch check      (FNV-1a over (origin, topic, epoch) of every stream with offset > 0)
//	  u64 BE  session id       (versions 2 and 3; never 0; see ADR 0004)
//	  u32 BE  session binding  (version 3 only: a MAC over session id + principal; see ADR 0014)
//	  u8      number of origins N (1..MaxCursorOrigins)
//	  N times, origins in ascending tag order:
//	    u16 BE  origin tag (FNV-1a of the region name, truncated)
//	    for each topic in sorted order:
//	      uvarint offset
//	      u8      epoch tag (only when offset > 0)
//	)
//
// Topic names are not carried (the connection's URL names them) and neither
// are full epochs: the 32-bit check proves that every stream the reader has
// read from is still in the same epoch; the per-stream 8-bit tags only name
// which stream changed when the check fails. 4 topics × 3 origins with offsets
// below 2^21 encode in at most 99 characters (115 below 2^28).
//
// The session id lets any node recognise a reconnecting stream (takeover,
// trace continuity) without server-side state on the resume path; the
// binding proves that a Herald node issued that session id to the principal
// presenting the cursor (SessionBinder), so a copied id cannot take over
// another principal's session.
//
// Compatibility rule: adding a field means a new version byte, and decoders
// keep accepting every older version. An older cursor resumes its positions
// exactly; what it lacks is only what the newer fields add (a version 1 or 2
// cursor starts a new session). A cursor no version explains is malformed
// (ADR 0014 says what a browser gets then).
const (
	cursorVersion1 = 1
	cursorVersion2 = 2
	cursorVersion3 = 3
	// MaxCursorLen caps the encoded cursor accepted from clients.
	MaxCursorLen = 512
	// MaxCursorOrigins caps the regions in one cursor.
	MaxCursorOrigins = 16
)

// Cursor holds one connection's positions: one per (topic, origin). It is
// owned by a single goroutine. Topics and origins are fixed at construction.
type Cursor struct {
	topics  []string // sorted, unique
	origins []string // sorted by tag
	tags    []uint16
	pos     []Position // index: origin*len(topics) + topic
	tHash   uint16
	session uint64
	binding uint32

	check      uint32
	checkValid bool
}

// NewCursor returns a cursor at offset 0 for every stream of topics × origins.
// Duplicates are removed; order does not matter.
func NewCursor(topics, origins []string) (*Cursor, error) {
	if len(topics) == 0 {
		return nil, fmt.Errorf("%w: cursor needs at least one topic", ErrInvalidTopic)
	}
	if len(origins) == 0 || len(origins) > MaxCursorOrigins {
		return nil, fmt.Errorf("cursor needs 1..%d origins, got %d", MaxCursorOrigins, len(origins))
	}
	c := &Cursor{topics: sortedUnique(topics), origins: sortedUnique(origins)}
	slices.SortFunc(c.origins, func(a, b string) int { return int(originTag(a)) - int(originTag(b)) })
	c.tags = make([]uint16, len(c.origins))
	for i, o := range c.origins {
		c.tags[i] = originTag(o)
		if i > 0 && c.tags[i] == c.tags[i-1] {
			return nil, fmt.Errorf("regions %q and %q collide in the cursor's origin tag; rename one", c.origins[i-1], o)
		}
	}
	c.pos = make([]Position, len(c.topics)*len(c.origins))
	c.tHash = topicSetHash(c.topics)
	return c, nil
}

// Topics returns the sorted topic set (do not modify).
func (c *Cursor) Topics() []string { return c.topics }

// Origins returns the origins in cursor order (do not modify).
func (c *Cursor) Origins() []string { return c.origins }

// Index returns the slot of (topic, origin), or -1.
func (c *Cursor) Index(topic, origin string) int {
	ti, ok := slices.BinarySearch(c.topics, topic)
	if !ok {
		return -1
	}
	for oi, o := range c.origins {
		if o == origin {
			return oi*len(c.topics) + ti
		}
	}
	return -1
}

// Key returns the stream of slot i.
func (c *Cursor) Key(i int) StreamKey {
	return StreamKey{Topic: c.topics[i%len(c.topics)], Origin: c.origins[i/len(c.topics)]}
}

// Len is the number of slots (topics × origins).
func (c *Cursor) Len() int { return len(c.pos) }

// At returns the position in slot i.
func (c *Cursor) At(i int) Position { return c.pos[i] }

// SetAt sets the position in slot i.
func (c *Cursor) SetAt(i int, p Position) {
	old := c.pos[i]
	c.pos[i] = p
	if old.Epoch != p.Epoch || (old.Offset == 0) != (p.Offset == 0) {
		c.checkValid = false
	}
}

// Session returns the stream's session id (0: none).
func (c *Cursor) Session() uint64 { return c.session }

// SetSession sets the session id carried in the encoded cursor and its
// binding to the principal (SessionBinder.Bind). Id 0 removes both.
func (c *Cursor) SetSession(id uint64, binding uint32) {
	c.session, c.binding = id, binding
	if id == 0 {
		c.binding = 0
	}
}

// Binding returns the session binding set by SetSession (0: none).
func (c *Cursor) Binding() uint32 { return c.binding }

// Clone returns an independent copy.
func (c *Cursor) Clone() *Cursor {
	d := *c
	d.pos = slices.Clone(c.pos)
	return &d
}

// AppendEncode appends the encoded cursor to dst.
func (c *Cursor) AppendEncode(dst []byte) []byte {
	var raw [256]byte
	b := raw[:0]
	if c.session != 0 {
		b = append(b, cursorVersion3)
	} else {
		b = append(b, cursorVersion1)
	}
	b = binary.BigEndian.AppendUint16(b, c.tHash)
	b = binary.BigEndian.AppendUint32(b, c.epochCheck())
	if c.session != 0 {
		b = binary.BigEndian.AppendUint64(b, c.session)
		b = binary.BigEndian.AppendUint32(b, c.binding)
	}
	b = append(b, byte(len(c.origins)))
	for oi := range c.origins {
		b = binary.BigEndian.AppendUint16(b, c.tags[oi])
		for ti := range c.topics {
			p := c.pos[oi*len(c.topics)+ti]
			b = binary.AppendUvarint(b, p.Offset)
			if p.Offset > 0 {
				b = append(b, epochTag(p.Epoch))
			}
		}
	}
	return base64.RawURLEncoding.AppendEncode(dst, b)
}

// String returns the encoded cursor.
func (c *Cursor) String() string { return string(c.AppendEncode(nil)) }

func (c *Cursor) epochCheck() uint32 {
	if !c.checkValid {
		c.check = epochCheck(c.topics, c.origins, func(i int) (string, bool) {
			return c.pos[i].Epoch, c.pos[i].Offset > 0
		})
		c.checkValid = true
	}
	return c.check
}

// ParsedCursor is a client-supplied cursor decoded against a connection's
// topic set. Offsets are trustworthy only for slots Verify accepts.
type ParsedCursor struct {
	c         *Cursor // slots carry offsets only; epochs unknown
	present   []bool  // origin slot present in the encoded cursor
	epochTags []byte
	check     uint32
	bound     bool // version 3: the binding field is present
}

// ParseCursor decodes s for a connection on topics with the given known
// origins. It never panics: malformed input yields ErrMalformedCursor and a
// cursor minted for another topic set yields ErrForeignCursor. Origins in s
// that are not known are ignored; known origins absent from s are reported by
// Present as false.
func ParseCursor(s string, topics, origins []string) (*ParsedCursor, error) {
	c, err := NewCursor(topics, origins)
	if err != nil {
		return nil, err
	}
	if len(s) == 0 || len(s) > MaxCursorLen {
		return nil, fmt.Errorf("%w: length %d not in 1..%d", ErrMalformedCursor, len(s), MaxCursorLen)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url", ErrMalformedCursor)
	}
	hdr, err := cursorHeaderLen(b)
	if err != nil {
		return nil, err
	}
	// A cursor minted for another topic set cannot be parsed against this
	// one (its slot count differs); the topic-set hash says so up front.
	if binary.BigEndian.Uint16(b[1:]) != c.tHash {
		return nil, ErrForeignCursor
	}
	p := &ParsedCursor{
		c:         c,
		present:   make([]bool, len(c.origins)),
		epochTags: make([]byte, len(c.pos)),
		check:     binary.BigEndian.Uint32(b[3:]),
	}
	if b[0] >= cursorVersion2 {
		c.session = binary.BigEndian.Uint64(b[7:])
		if c.session == 0 {
			return nil, fmt.Errorf("%w: zero session id", ErrMalformedCursor)
		}
	}
	if b[0] == cursorVersion3 {
		c.binding = binary.BigEndian.Uint32(b[15:])
		p.bound = true
	}
	n := int(b[hdr-1])
	if n == 0 || n > MaxCursorOrigins {
		return nil, fmt.Errorf("%w: %d origins", ErrMalformedCursor, n)
	}
	b = b[hdr:]
	var prevTag int = -1
	for range n {
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: truncated", ErrMalformedCursor)
		}
		tag := binary.BigEndian.Uint16(b)
		b = b[2:]
		if int(tag) <= prevTag {
			return nil, fmt.Errorf("%w: origins out of order", ErrMalformedCursor)
		}
		prevTag = int(tag)
		oi := slices.Index(c.tags, tag)
		for ti := range c.topics {
			off, k := binary.Uvarint(b)
			if k <= 0 {
				return nil, fmt.Errorf("%w: bad offset", ErrMalformedCursor)
			}
			b = b[k:]
			var et byte
			if off > 0 {
				if len(b) < 1 {
					return nil, fmt.Errorf("%w: truncated", ErrMalformedCursor)
				}
				et = b[0]
				b = b[1:]
			}
			if oi >= 0 {
				i := oi*len(c.topics) + ti
				c.pos[i].Offset = off
				p.epochTags[i] = et
			}
		}
		if oi >= 0 {
			p.present[oi] = true
		}
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformedCursor, len(b))
	}
	return p, nil
}

// cursorHeaderLen validates the version byte and returns the length of the
// fixed header, including the origin count byte.
func cursorHeaderLen(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: too short", ErrMalformedCursor)
	}
	n := 0
	switch b[0] {
	case cursorVersion1:
		n = 8
	case cursorVersion2:
		n = 16
	case cursorVersion3:
		n = 20
	default:
		return 0, fmt.Errorf("%w: unknown version %d", ErrMalformedCursor, b[0])
	}
	if len(b) < n {
		return 0, fmt.Errorf("%w: too short", ErrMalformedCursor)
	}
	return n, nil
}

// Session returns the session id the cursor carries (0: none, e.g. a
// version 1 cursor). It is the client's claim: trust it only after
// SessionBinder.Verify accepts Binding for the presenting principal.
func (p *ParsedCursor) Session() uint64 { return p.c.session }

// Binding returns the session binding the cursor carries; ok is false for
// cursors older than version 3, which carry none.
func (p *ParsedCursor) Binding() (tag uint32, ok bool) { return p.c.binding, p.bound }

// Len is the number of slots; slot indexes match NewCursor's for the same sets.
func (p *ParsedCursor) Len() int { return len(p.c.pos) }

// Key returns the stream of slot i.
func (p *ParsedCursor) Key(i int) StreamKey { return p.c.Key(i) }

// Offset returns the client's offset in slot i.
func (p *ParsedCursor) Offset(i int) uint64 { return p.c.pos[i].Offset }

// Present reports whether slot i's origin appeared in the encoded cursor.
func (p *ParsedCursor) Present(i int) bool { return p.present[i/len(p.c.topics)] }

// Verify checks the cursor against the streams' current epochs (indexed like
// the slots) and reports, per slot, whether the client's offset belongs to
// the current epoch. Slots at offset 0 (the client has read nothing there) and
// slots of absent origins always verify. When the 32-bit check fails but no
// slot is pinned down as changed, every slot with an offset fails: a silent
// skip would need a 32-bit collision.
func (p *ParsedCursor) Verify(epochs []string) []bool {
	ok, _ := p.VerifyLineages(epochs, nil)
	return ok
}

// VerifyLineages is Verify knowing, per slot, where each stream's current
// epoch begins: starts[i] is the offset before its first event (0 when
// unknown; nil for none). intact reports that the 32-bit check held: no
// stream the client has read changed epoch.
//
// When the check fails, a slot the client has read is pinned as changed when
// its 8-bit tag differs, when its stream has no lineage at all (epoch ""),
// or when its current epoch began at or after the client's offset (the
// client cannot have read that offset in it, whatever the tag says). Pinned
// slots fail and the others verify: resetting streams that did not change
// would replay them (duplicates). An unpinned slot can still have changed
// when its new tag collides with the old one (1 in 256) and another slot
// explains the check; the caller's head comparison (a client ahead of its
// stream's head after a failed check) catches most of those. Only when no
// slot is pinned does every slot with an offset fail.
func (p *ParsedCursor) VerifyLineages(epochs []string, starts []uint64) (ok []bool, intact bool) {
	ok = make([]bool, len(p.c.pos))
	read := func(i int) bool { return p.c.pos[i].Offset > 0 && p.Present(i) }
	check := epochCheck(p.c.topics, p.c.origins, func(i int) (string, bool) {
		return epochs[i], read(i)
	})
	if check == p.check {
		for i := range ok {
			ok[i] = true
		}
		return ok, true
	}
	pinned := false
	for i := range ok {
		switch {
		case !read(i):
			ok[i] = true
		case epochs[i] == "", epochTag(epochs[i]) != p.epochTags[i],
			i < len(starts) && p.c.pos[i].Offset <= starts[i]:
			pinned = true
		default:
			ok[i] = true
		}
	}
	if !pinned {
		for i := range ok {
			ok[i] = !read(i)
		}
	}
	return ok, false
}

// fnv32a without allocation.
const (
	fnvOffset32 = 2166136261
	fnvPrime32  = 16777619
)

func fnvAdd(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= fnvPrime32
	}
	return h
}

func fnvSep(h uint32) uint32 { h ^= 0; return h * fnvPrime32 }

func originTag(o string) uint16 {
	h := fnvAdd(fnvOffset32, o)
	return uint16(h>>16) ^ uint16(h)
}

func epochTag(e string) byte {
	h := fnvAdd(fnvOffset32, e)
	return byte(h>>24) ^ byte(h>>16) ^ byte(h>>8) ^ byte(h)
}

func topicSetHash(topics []string) uint16 {
	h := uint32(fnvOffset32)
	for _, t := range topics {
		h = fnvSep(fnvAdd(h, t))
	}
	return uint16(h>>16) ^ uint16(h)
}

func epochCheck(topics, origins []string, epoch func(i int) (string, bool)) uint32 {
	h := uint32(fnvOffset32)
	for oi, o := range origins {
		for ti, t := range topics {
			e, use := epoch(oi*len(topics) + ti)
			if !use {
				continue
			}
			h = fnvSep(fnvAdd(h, o))
			h = fnvSep(fnvAdd(h, t))
			h = fnvSep(fnvAdd(h, e))
		}
	}
	return h
}

func sortedUnique(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

// DecodeOffsets extracts a cursor's offsets without checking them against
// a topic set or epochs. A client that knows its stream's topic count uses it
// to learn which stream an event advanced (by comparing with the previous
// id) without allocating. It appends, per origin in cursor order and per
// topic in sorted order, the offset to dst. Servers use ParseCursor.
func DecodeOffsets(s string, topics int, dst []uint64) ([]uint64, error) {
	if len(s) == 0 || len(s) > MaxCursorLen || topics <= 0 {
		return dst, ErrMalformedCursor
	}
	var raw [MaxCursorLen]byte
	n, err := base64.RawURLEncoding.Decode(raw[:], []byte(s))
	if err != nil {
		return dst, ErrMalformedCursor
	}
	hdr, err := cursorHeaderLen(raw[:n])
	if err != nil {
		return dst, ErrMalformedCursor
	}
	b := raw[hdr:n]
	for range int(raw[hdr-1]) {
		if len(b) < 2 {
			return dst, ErrMalformedCursor
		}
		b = b[2:]
		for range topics {
			off, k := binary.Uvarint(b)
			if k <= 0 {
				return dst, ErrMalformedCursor
			}
			b = b[k:]
			if off > 0 {
				if len(b) < 1 {
					return dst, ErrMalformedCursor
				}
				b = b[1:]
			}
			dst = append(dst, off)
		}
	}
	if len(b) != 0 {
		return dst, ErrMalformedCursor
	}
	return dst, nil
}
